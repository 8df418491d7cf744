"""``bulk_load``: the fastest way to put many vector rows into a table.

PostgreSQL (psycopg 3): ``COPY ... FROM STDIN (FORMAT BINARY)`` with pgvector's binary encoding;
asyncpg: its binary ``copy_records_to_table``; other drivers: batched INSERTs. SQLite: batched
``executemany`` of sqlite-vec BLOBs. Every row is validated before anything is written, and the
rows go into the caller's transaction (a Session's or Connection's; an Engine gets its own)::

    n = vk.bulk_load(session, Doc, [{"id": i, "embedding": v} for i, v in enumerate(vectors)])
"""

from __future__ import annotations

from typing import Any, Iterable, Optional, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from . import dialects
from .exc import InvalidVectorError, VectorKnobsError
from .types import VectorType

__all__ = ["bulk_load"]


def _table_of(model_or_table: Any) -> sa.Table:
    table = getattr(model_or_table, "__table__", model_or_table)
    if not isinstance(table, sa.Table):
        raise InvalidVectorError(f"bulk_load needs a mapped class or a Table, got {type(model_or_table).__name__}.")
    return table


def _checked_rows(
    table: sa.Table, rows: Iterable[Any], columns: Optional[Sequence[str]]
) -> tuple[list[str], list[tuple[Any, ...]]]:
    names: Optional[list[str]] = list(columns) if columns is not None else None
    out: list[tuple[Any, ...]] = []
    checks: list[Any] = []
    for i, row in enumerate(rows):
        if isinstance(row, dict):
            if names is None:
                names = list(row)
            if len(row) != len(names) or any(n not in row for n in names):
                raise InvalidVectorError(f"bulk_load row {i} has keys {sorted(row)}, but the first row had {sorted(names)}.")
            values = tuple(row[n] for n in names)
        else:
            if names is None:
                names = [c.key for c in table.columns]
            values = tuple(row)
            if len(values) != len(names):
                raise InvalidVectorError(f"bulk_load row {i} has {len(values)} values for the {len(names)} columns {names}.")
        if not checks:
            for n in names:
                if n not in table.c:
                    raise InvalidVectorError(f"bulk_load got column '{n}', which table '{table.name}' does not have.")
            checks = [c.type.check if isinstance(c.type, VectorType) else None for c in (table.c[n] for n in names)]
        try:
            out.append(tuple(v if check is None or v is None else check(v) for check, v in zip(checks, values)))
        except VectorKnobsError as err:
            raise type(err)(f"{str(err).rstrip('.')} (bulk_load row {i}); nothing was written.") from None
    return names or [], out


def bulk_load(target: Any, model_or_table: Any, rows: Iterable[Any], *, columns: Optional[Sequence[str]] = None) -> int:
    """Insert ``rows`` (dicts, or tuples in ``columns``/table order) and return how many were written.

    ``target`` is a Session, Connection or Engine. Vectors may be numpy arrays or anything the
    column type accepts; they are all validated first, so a bad row writes nothing.
    """
    table = _table_of(model_or_table)
    names, checked = _checked_rows(table, rows, columns)
    if not checked:
        return 0
    if isinstance(target, Engine):
        with target.begin() as conn:
            return _load(conn, table, names, checked)
    conn = target.connection() if not isinstance(target, Connection) else target
    return _load(conn, table, names, checked)


def _load(conn: Connection, table: sa.Table, names: list[str], rows: list[tuple[Any, ...]]) -> int:
    count: int = dialects.for_dialect(conn.dialect).bulk_load(conn, table, names, rows)
    return count
