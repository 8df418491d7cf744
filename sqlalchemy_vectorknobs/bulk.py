"""``bulk_load``: the fastest way to put many vector rows into a table.

PostgreSQL (psycopg 3): ``COPY ... FROM STDIN (FORMAT BINARY)`` with pgvector's binary encoding;
asyncpg: its binary ``copy_records_to_table``; other drivers: batched INSERTs. SQLite: batched
``executemany`` of sqlite-vec BLOBs. Every row is validated before anything is written, and the
rows go into the caller's transaction (a Session's or Connection's; an Engine gets its own).
A vector column whose values are all float numpy arrays is checked as one matrix (a few numpy
calls for the whole load) rather than row by row::

    n = vk.bulk_load(session, Doc, [{"id": i, "embedding": v} for i, v in enumerate(vectors)])
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from operator import attrgetter, itemgetter
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from . import dialects
from .codec import Kind
from .exc import DimensionMismatchError, InvalidVectorError, VectorKnobsError
from .types import VectorType

__all__ = ["bulk_load"]


def _table_of(model_or_table: Any) -> sa.Table:
    table = getattr(model_or_table, "__table__", model_or_table)
    if not isinstance(table, sa.Table):
        raise InvalidVectorError(f"bulk_load needs a mapped class or a Table, got {type(model_or_table).__name__}.")
    return table


def _rows_to_columns(
    table: sa.Table, rows: Iterable[Any], columns: Sequence[str] | None
) -> tuple[list[str], list[Sequence[Any]], list[Any] | None]:
    """Column names, one sequence of values per column, and the rows themselves when they are
    tuples of the right width in that column order (dict rows or tuples in column order)."""
    materialized = rows if isinstance(rows, list) else list(rows)
    if not materialized:
        return list(columns or []), [], None
    first = materialized[0]
    names = list(columns) if columns is not None else (list(first) if isinstance(first, dict) else [c.key for c in table.columns])
    for n in names:
        if n not in table.c:
            raise InvalidVectorError(f"bulk_load got column '{n}', which table '{table.name}' does not have.")
    width = len(names)
    # Tuples of the right width (the common case) are checked at C speed; anything else row by row.
    if isinstance(first, dict) or set(map(len, materialized)) != {width}:
        for i, row in enumerate(materialized):
            if len(row) != width or (isinstance(row, dict) and any(n not in row for n in names)):
                what = f"keys {sorted(row)}" if isinstance(row, dict) else f"{len(row)} values"
                raise InvalidVectorError(f"bulk_load row {i} has {what}, but the columns are {names}.")
    if isinstance(first, dict):
        return names, [[row[n] for row in materialized] for n in names], None
    tuples = materialized if set(map(type, materialized)) == {tuple} else None
    return names, [list(map(itemgetter(i), materialized)) for i in range(width)], tuples


#: The layout SQLite (sqlite-vec) stores a float32 vector in, which numpy arrays can be bound as directly.
_F32_LE = np.dtype("<f4")


def _check_column(type_: VectorType, values: Sequence[Any], *, keep_arrays: bool) -> Any:
    """Validated values of one vector column: ``values`` itself when ``keep_arrays`` and they are
    little-endian float32 1-D arrays (a driver binds their buffers as they are), else a 2-D float32
    matrix when the rows allow it, else a list checked row by row."""
    if type_.kind is Kind.FLOAT32 and values and set(map(type, values)) == {np.ndarray}:
        shapes = set(map(attrgetter("shape"), values))
        if len(shapes) == 1 and len(shape := next(iter(shapes))) == 1 and shape[0]:
            if type_.dim is not None and shape[0] != type_.dim:
                raise DimensionMismatchError(
                    f"{type_.subject} expects {type_.dim} dimensions, got {shape[0]} (bulk_load row 0); nothing was written."
                )
            as_is = (
                keep_arrays
                and set(map(attrgetter("dtype"), values)) == {_F32_LE}
                and set(map(attrgetter("strides"), values)) == {(4,)}
            )
            if as_is and _finite_base(values):
                return values
            # One C-level concatenate of the rows (np.stack pays ~10 us a row in Python).
            matrix = np.concatenate(values).reshape(len(values), -1)
            if matrix.dtype.kind == "f":
                with np.errstate(over="ignore", invalid="ignore"):
                    matrix = matrix.astype(np.float32, copy=False)
                    if _finite(matrix):
                        return values if as_is else matrix
    # Anything else (or a bad value) row by row, which names the bad row.
    out = []
    for i, value in enumerate(values):
        try:
            out.append(None if value is None else type_.check(value))
        except VectorKnobsError as err:
            raise type(err)(f"{str(err).rstrip('.')} (bulk_load row {i}); nothing was written.") from None
    return out


def _finite(matrix: np.ndarray) -> bool:
    # max/min propagate NaN and show an infinity: two reductions, no temporary array.
    return bool(np.isfinite(matrix.max()) and np.isfinite(matrix.min()))


def _finite_base(values: Sequence[np.ndarray]) -> bool:
    """Whether float32 rows are all views of one finite float32 array (``list(matrix)``, rows of a
    matrix): then that array is checked in place instead of copying the rows into a new one. A
    non-finite value anywhere in it answers False and the rows are checked by themselves."""
    bases = set(map(id, map(attrgetter("base"), values)))
    base = values[0].base
    return len(bases) == 1 and isinstance(base, np.ndarray) and base.dtype == _F32_LE and base.size > 0 and _finite(base)


def bulk_load(target: Any, model_or_table: Any, rows: Iterable[Any], *, columns: Sequence[str] | None = None) -> int:
    """Insert ``rows`` (dicts, or tuples in ``columns``/table order) and return how many were written.

    ``target`` is a Session, Connection or Engine. Vectors may be numpy arrays or anything the
    column type accepts; they are all validated first, so a bad row writes nothing.
    """
    table = _table_of(model_or_table)
    names, values, tuples = _rows_to_columns(table, rows, columns)
    if not values:
        return 0
    if isinstance(target, (Engine, Connection)):
        dialect = target.dialect
    else:
        dialect = target.get_bind(clause=table).dialect
    # The caller's tuples go to the driver unchanged when the dialect binds float32 arrays as they
    # are and every vector column passed its checks as given.
    keep_arrays = tuples is not None and dialects.for_dialect(dialect).bulk_binds_arrays
    checked: list[Any] = []
    for name, column in zip(names, values):
        type_ = table.c[name].type
        checked.append(_check_column(type_, column, keep_arrays=keep_arrays) if isinstance(type_, VectorType) else column)
    as_given = tuples if keep_arrays and all(c is v for c, v in zip(checked, values)) else None
    if isinstance(target, Engine):
        with target.begin() as conn:
            return _load(conn, table, names, checked, as_given)
    conn = target.connection() if not isinstance(target, Connection) else target
    return _load(conn, table, names, checked, as_given)


def _load(conn: Connection, table: sa.Table, names: list[str], columns: list[Any], rows: list[Any] | None) -> int:
    count: int = dialects.for_dialect(conn.dialect).bulk_load(conn, table, names, columns, rows=rows)
    return count
