"""``vectorknobs inspect``: extension, vector columns, vector and full-text indexes, outbox depth (``vk.describe_database``)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._common import open_engine

__all__ = ["register"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "inspect",
        help="show the vector extension, vector columns, indexes with parameters and the outbox depth",
        description="Report what a database holds, by reflection (no models needed).",
        epilog="example:\n  vectorknobs inspect --database sqlite:///docs.db --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--database", "-d", required=True, help="SQLAlchemy URL, e.g. sqlite:///docs.db")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(run=run)


def _where(schema: str | None, table: str) -> str:
    return table if schema in (None, "public") else f"{schema}.{table}"


def render(report: Any) -> str:
    """The text form of a ``DatabaseReport``."""
    inv = report.inventory
    lines = [f"database: {report.url}", f"extension: {inv.extension} {inv.extension_version or '(not installed)'}"]
    embedded = set(report.embedded)
    lines.append(f"vector columns: {len(inv.columns)}")
    for c in inv.columns:
        name = f"{_where(c.schema, c.table)}.{c.column}"
        extra = "  (embedded: has _model/_hash)" if f"{c.table}.{c.column}" in embedded else ""
        lines.append(f"  {name}  {c.type}({c.dim if c.dim is not None else ''}){extra}")
    lines.append(f"vector indexes: {len(inv.indexes)}")
    for i in inv.indexes:
        opts = ", ".join(f"{k}={v}" for k, v in sorted(i.options.items()))
        parts = [f"  {i.name} on {_where(i.schema, i.table)}: {i.method}", f"({i.expression}"]
        if i.opclass:
            parts[-1] += f" {i.opclass}"
        parts[-1] += ")"
        if opts:
            parts.append(f"[{opts}]")
        if i.where:
            parts.append(f"WHERE {i.where}")
        lines.append(" ".join(parts))
    lines.append(f"full-text indexes: {len(report.fulltext)}")
    for f in report.fulltext:
        lines.append(f"  {f.name} on {f.table}: ({', '.join(f.columns)}) config={f.config}")
    if report.outbox is None:
        lines.append("outbox: none (no vk_outbox table)")
    else:
        total = sum(o.pending for o in report.outbox)
        dead = sum(o.dead for o in report.outbox)
        lines.append(f"outbox: {total} pending, {dead} dead")
        for o in report.outbox:
            lines.append(f"  mirror {o.mirror}: {o.pending} pending, {o.dead} dead")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import sqlalchemy_vectorknobs as vk

    engine = open_engine(args.database)
    report = vk.describe_database(engine)
    print(json.dumps(report.as_dict(), indent=2, default=str) if args.json else render(report))
    return 0
