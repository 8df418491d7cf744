"""``describe_database``: everything ``vectorknobs inspect`` prints, as data.

It adds to :func:`vk.inspect_vectors` (extension, vector columns, vector indexes) the full-text
indexes this package made, which vector columns carry the embedded-column companions
(``<column>_model`` / ``<column>_hash``), and the outbox depth per mirror::

    report = vk.describe_database(engine)
    for depth in report.outbox:
        print(depth.mirror, depth.pending, depth.dead)
    print(json.dumps(report.as_dict(), indent=2))
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from . import dialects
from .inspection import VectorInventory, inspect_vectors

__all__ = ["DatabaseReport", "FullTextIndexInfo", "OutboxDepth", "describe_database", "outbox_depth"]


@dataclass(frozen=True)
class FullTextIndexInfo:
    """One full-text index made by ``vk.FullTextIndex`` (GIN on PostgreSQL, FTS5 on SQLite)."""

    table: str
    name: str
    columns: list[str]
    config: str
    definition: str


@dataclass(frozen=True)
class OutboxDepth:
    """Outbox rows of one mirror: ``pending`` (waiting for ``vk.drain``) and ``dead`` (given up)."""

    mirror: str
    pending: int
    dead: int
    oldest_pending_at: float | None = None


@dataclass(frozen=True)
class DatabaseReport:
    """The report of :func:`describe_database`."""

    url: str
    inventory: VectorInventory
    fulltext: list[FullTextIndexInfo] = field(default_factory=list)
    embedded: list[str] = field(default_factory=list)
    outbox: list[OutboxDepth] | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain data (for JSON)."""
        return dataclasses.asdict(self)


def outbox_depth(bind: Engine | Connection) -> list[OutboxDepth] | None:
    """Pending and dead ``vk_outbox`` rows per mirror, or None when there is no outbox table."""
    from .sync.outbox import OUTBOX_TABLE, outbox_table

    if isinstance(bind, Engine):
        with bind.connect() as conn:
            return outbox_depth(conn)
    if not sa.inspect(bind).has_table(OUTBOX_TABLE):
        return None
    t = outbox_table
    pending = sa.case((t.c.dead == 0, 1), else_=0)
    q = (
        sa.select(
            t.c.mirror,
            sa.func.sum(pending),
            sa.func.sum(1 - pending),
            sa.func.min(sa.case((t.c.dead == 0, t.c.created_at), else_=None)),
        )
        .group_by(t.c.mirror)
        .order_by(t.c.mirror)
    )
    return [OutboxDepth(m, int(p), int(d), None if oldest is None else float(oldest)) for m, p, d, oldest in bind.execute(q)]


def describe_database(bind: Engine | Connection) -> DatabaseReport:
    """Extension version, vector columns and indexes, full-text indexes, embedded columns, outbox depth."""
    if isinstance(bind, Engine):
        with bind.connect() as conn:
            return describe_database(conn)
    inventory = inspect_vectors(bind)
    support = dialects.for_dialect(bind.dialect)
    insp = sa.inspect(bind)
    columns_of: dict[tuple[str | None, str], set[str]] = {}
    fulltext = []
    for col in inventory.columns:
        key = (col.schema, col.table)
        if key not in columns_of:
            schema = None if col.schema in (None, insp.default_schema_name) else col.schema
            columns_of[key] = {c["name"] for c in insp.get_columns(col.table, schema=schema)}
            for name, info in support.fulltext_indexes(bind, col.table, schema).items():
                fulltext.append(FullTextIndexInfo(col.table, name, list(info["columns"]), str(info["config"]), str(info["definition"])))
    embedded = [
        f"{c.table}.{c.column}"
        for c in inventory.columns
        if {f"{c.column}_model", f"{c.column}_hash"} <= columns_of[(c.schema, c.table)]
    ]
    return DatabaseReport(
        url=bind.engine.url.render_as_string(hide_password=True),
        inventory=inventory,
        fulltext=fulltext,
        embedded=embedded,
        outbox=outbox_depth(bind),
    )
