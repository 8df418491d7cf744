"""``inspect_vectors``: what vector machinery a database has (extension, columns, indexes)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.engine import Connection, Engine

from . import dialects
from .exc import ReadOnlyDatabaseError

__all__ = ["VectorColumnInfo", "VectorIndexInfo", "VectorInventory", "inspect_vectors", "refuse_read_only"]


@dataclass(frozen=True)
class VectorColumnInfo:
    """One vector column: where it is, its ``vk`` type name and dimension (None if unconstrained)."""

    schema: str | None
    table: str
    column: str
    type: str
    dim: int | None


@dataclass(frozen=True)
class VectorIndexInfo:
    """One vector index with its access method, indexed expression, operator class and options."""

    schema: str | None
    table: str
    name: str
    method: str
    expression: str
    opclass: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    where: str | None = None
    definition: str | None = None


@dataclass(frozen=True)
class VectorInventory:
    """The report of :func:`inspect_vectors`."""

    dialect: str
    extension: str
    extension_version: str | None
    columns: list[VectorColumnInfo]
    indexes: list[VectorIndexInfo]


def inspect_vectors(bind: Engine | Connection) -> VectorInventory:
    """Report the vector extension version, vector columns and vector indexes of a database.

    Works with an ``Engine`` or a ``Connection``; for an ``AsyncEngine`` use
    ``await conn.run_sync(vk.inspect_vectors)``::

        report = vk.inspect_vectors(engine)
        print(report.extension, report.extension_version)
        for col in report.columns:
            print(col.table, col.column, col.type, col.dim)
    """
    if isinstance(bind, Engine):
        with bind.connect() as conn:
            return inspect_vectors(conn)
    result: VectorInventory = dialects.for_dialect(bind.dialect).inspect(bind)
    return result


def refuse_read_only(bind: Engine | Connection, what: str) -> None:
    """Raise :class:`~sqlalchemy_vectorknobs.exc.ReadOnlyDatabaseError` if ``bind`` cannot be
    written to (a PostgreSQL hot standby), before ``what`` does any work::

        vk.inspection.refuse_read_only(engine, "vectorknobs backfill")
    """
    if isinstance(bind, Engine):
        with bind.connect() as conn:
            refuse_read_only(conn, what)
            return
    reason = dialects.for_dialect(bind.dialect).read_only_reason(bind)
    if reason is not None:
        raise ReadOnlyDatabaseError(
            f"{what} writes, and {bind.engine.url.render_as_string(hide_password=True)} is {reason}; point it at the primary."
        )
