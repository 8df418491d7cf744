"""SQLite vector aggregates: ``vk_avg`` / ``vk_sum`` registered on every connection, and their SQL.

sqlite-vec has no aggregates and SQLite's own ``avg``/``sum`` read a BLOB as the number 0, so
``avg(Vector)`` and ``sum(Vector)`` render as ``vk_avg(x)`` / ``vk_sum(x)`` (``vk_avg(x, 'halfvec')``
for a HalfVector), Python aggregate functions :func:`register` adds to each connection. They
compute what pgvector does: NULLs are skipped, no rows (or only NULLs) give NULL, ``sum`` adds in
the column's precision row by row (float32; float16 for halfvec), ``avg`` adds in float64 and
divides once, and a result beyond the type's range is an error rather than infinity.

SQLite reports an error raised inside an aggregate only as "user-defined aggregate's 'step'
method raised error"; :func:`install` makes the engine raise the aggregate's own error instead
(a :class:`~sqlalchemy_vectorknobs.DimensionMismatchError` for vectors of different sizes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
from sqlalchemy import event
from sqlalchemy.engine import Engine

from ..codec import HALF_MAX, Kind
from ..exc import DimensionMismatchError, InvalidVectorError, VectorKnobsError, VectorTypeError

__all__ = ["install", "register", "registrations", "render"]

_FLOAT32_MAX = float(np.finfo(np.float32).max)
#: The error an aggregate raised, by the id of its connection, until the engine reports it.
_FAILURES: dict[int, VectorKnobsError] = {}


class _VectorAggregate:
    """step/finalize over float32 vector BLOBs; ``precision`` is 'halfvec' for HalfVector columns."""

    sql_name: ClassVar[str]
    what: ClassVar[str]
    connection_key: ClassVar[int] = 0

    def __init__(self) -> None:
        self.total: np.ndarray | None = None
        self.count = 0
        self.half = False
        self.failed = False

    def step(self, value: Any, precision: str | None = None) -> None:
        if value is None or self.failed:
            return
        try:
            self.half = precision == "halfvec"
            self.add(self.vector(value))
            self.count += 1
        except VectorKnobsError as err:
            self.fail(err)

    def finalize(self) -> bytes | None:
        if self.failed or self.total is None:
            return None
        try:
            return self.result().astype("<f4").tobytes()
        except VectorKnobsError as err:
            self.fail(err)
            return None  # (not reached: fail raises)

    def fail(self, err: VectorKnobsError) -> None:
        self.failed = True
        _FAILURES[self.connection_key] = err
        raise err

    def vector(self, value: Any) -> np.ndarray:
        if not isinstance(value, (bytes, memoryview)):
            raise VectorTypeError(
                f"{self.what} got a {type(value).__name__} value; it takes the float32 BLOBs of Vector and HalfVector columns."
            )
        if len(value) == 0 or len(value) % 4:
            raise InvalidVectorError(
                f"{self.what} got a BLOB of {len(value)} bytes; a float32 vector BLOB has a positive multiple of 4 bytes."
            )
        arr = np.frombuffer(value, dtype="<f4")
        if self.total is not None and arr.shape[0] != self.total.shape[0]:
            raise DimensionMismatchError(
                f"{self.what} got a vector of {arr.shape[0]} dimensions after vectors of {self.total.shape[0]}; "
                "the vectors it adds up must all have the same number of dimensions."
            )
        return arr

    def check_range(self, values: np.ndarray) -> np.ndarray:
        limit, name = (HALF_MAX, "half precision") if self.half else (_FLOAT32_MAX, "float32")
        with np.errstate(over="ignore", invalid="ignore"):
            bad = np.flatnonzero(~(np.abs(values) <= limit))
        if bad.size:
            i = int(bad[0])
            raise InvalidVectorError(
                f"{self.what} overflows {name} at index {i} ({float(values[i])!r}); its values must stay within ±{limit:g}."
            )
        return values

    def add(self, arr: np.ndarray) -> None:
        raise NotImplementedError

    def result(self) -> np.ndarray:
        raise NotImplementedError


class _Sum(_VectorAggregate):
    sql_name = "vk_sum"
    what = "The vector sum (vk_sum)"

    def add(self, arr: np.ndarray) -> None:
        # Row by row in the column's precision, as pgvector's vector_add / halfvec_add.
        with np.errstate(over="ignore"):  # an overflow is reported by check_range
            total = arr.astype(np.float32) if self.total is None else self.total + arr
            if self.half:
                total = total.astype(np.float16).astype(np.float32)
        self.total = self.check_range(total)

    def result(self) -> np.ndarray:
        assert self.total is not None
        return self.total


class _Avg(_VectorAggregate):
    sql_name = "vk_avg"
    what = "The vector average (vk_avg)"

    def add(self, arr: np.ndarray) -> None:
        # A float64 running sum divided once at the end, as pgvector's vector_accum / vector_avg.
        self.total = arr.astype(np.float64) if self.total is None else self.total + arr

    def result(self) -> np.ndarray:
        assert self.total is not None
        mean = self.total / self.count
        with np.errstate(over="ignore"):
            out = mean.astype(np.float16 if self.half else np.float32).astype(np.float32)
        return self.check_range(out)


def registrations(connection_key: int) -> list[tuple[str, int, type]]:
    """(name, number of arguments, aggregate class) for one connection's ``create_aggregate``."""
    out: list[tuple[str, int, type]] = []
    for base in (_Avg, _Sum):
        cls = type(base.__name__, (base,), {"connection_key": connection_key})
        out += [(base.sql_name, 1, cls), (base.sql_name, 2, cls)]
    return out


def register(raw: Any) -> None:
    """Add ``vk_avg`` and ``vk_sum`` to a sqlite3-compatible connection (pysqlite3, sqlean, sqlite3)."""
    for name, nargs, cls in registrations(id(raw)):
        raw.create_aggregate(name, nargs, cls)


async def register_async(conn: Any) -> None:
    """:func:`register` for an aiosqlite connection, in the thread that owns its sqlite3 connection
    (aiosqlite wraps ``create_function`` that way but has no ``create_aggregate``)."""
    for name, nargs, cls in registrations(id(conn)):
        await conn._execute(conn._conn.create_aggregate, name, nargs, cls)


# --------------------------------------------------------------------------- SQL


def render(compiler: Any, fn: Any, **kw: Any) -> str | None:
    """``vk_avg(x)`` / ``vk_sum(x)`` for ``avg`` / ``sum`` of one Vector or HalfVector expression;
    None for any other function, which then renders as SQLAlchemy renders it."""
    name = str(getattr(fn, "name", "")).lower()
    if name not in ("avg", "sum") or getattr(fn, "packagenames", None):
        return None
    clauses = list(fn.clauses)
    if len(clauses) != 1:
        return None
    kind = getattr(clauses[0].type, "kind", None)
    if kind not in (Kind.FLOAT32, Kind.FLOAT16):
        return None
    add_to_result_map = kw.pop("add_to_result_map", None)
    if add_to_result_map is not None:  # what visit_function reports for a function column
        add_to_result_map(fn.name, fn.name, (fn.name,), fn.type)
    arg = compiler.process(clauses[0], **kw)
    return f"vk_{name}({arg}, 'halfvec')" if kind is Kind.FLOAT16 else f"vk_{name}({arg})"


def _translate_error(context: Any) -> BaseException | None:
    """The error a vector aggregate raised, in place of SQLite's "user-defined aggregate's ...
    raised error"."""
    if "user-defined aggregate" not in str(context.original_exception):
        return None
    connection = context.connection
    if connection is None:
        return None
    return _FAILURES.pop(id(connection.connection.driver_connection), None)


def install(engine: Engine) -> None:
    """Per engine: report the aggregates' errors as they were raised. (The engine's statement
    compiler renders ``sum``/``avg`` of vectors with :func:`render`: ``sqlite._compiler_class``.)"""
    handler: Callable[[Any], BaseException | None] = _translate_error
    event.listen(engine, "handle_error", handler)
