"""Column types ``Vector``, ``HalfVector``, ``BitVector``, ``SparseVector`` (dialect-agnostic).

Each type validates values at bind time through :mod:`.codec` and returns a 1-D ``numpy.ndarray``
on every dialect and driver. The SQL a dialect needs (column spec, wire format, output wrapper)
comes from :mod:`.dialects`::

    from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
    import sqlalchemy_vectorknobs as vk

    class Base(DeclarativeBase):
        pass

    class Doc(Base):
        __tablename__ = "doc"
        id: Mapped[int] = mapped_column(primary_key=True)
        embedding = mapped_column(vk.Vector(3))
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
from sqlalchemy import event
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.sql.base import SchemaEventTarget
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import UserDefinedType

from . import codec, dialects
from .codec import Kind
from .comparator import VectorBind, VectorComparator, VectorOutput
from .distance import Distance
from .exc import InvalidVectorError

__all__ = ["BitVector", "HalfVector", "SparseVector", "Vector", "VectorType"]

_FLOAT_METRICS = frozenset({Distance.L2, Distance.COSINE, Distance.INNER_PRODUCT, Distance.L1})
_BIT_METRICS = frozenset({Distance.HAMMING, Distance.JACCARD})


class VectorType(SchemaEventTarget, UserDefinedType[np.ndarray]):
    """Base of the vector column types; ``dim=None`` accepts any dimension."""

    kind: ClassVar[Kind]
    metrics: ClassVar[frozenset[Distance]] = _FLOAT_METRICS
    cache_ok = True
    comparator_factory = VectorComparator

    def __init__(self, dim: int | str | None = None) -> None:
        if dim is not None:
            try:
                dim = int(dim)
            except (TypeError, ValueError):
                raise InvalidVectorError(
                    f"{type(self).__name__} dimension {dim!r} is not an integer; pass a positive whole number."
                ) from None
            if dim < 1:
                raise InvalidVectorError(f"{type(self).__name__} dimension {dim} is not positive; pass a whole number of at least 1.")
        self.dim: int | None = dim
        self._column_ref: weakref.ref[Any] | None = None

    # ------------------------------------------------------------------ naming for errors

    def __repr__(self) -> str:
        return f"{type(self).__name__}({'' if self.dim is None else self.dim})"

    @property
    def python_type(self) -> type:
        return np.ndarray

    @property
    def subject(self) -> str:
        """How error messages name this type's values: the column when it is known."""
        col = self._column_ref() if self._column_ref is not None else None
        table = getattr(col, "table", None)
        if col is not None and table is not None:
            return f"Column '{table.name}.{col.name}'"
        if col is not None and col.name:
            return f"Column '{col.name}'"
        return f"{self!r} value"

    def describe(self) -> str:
        """:attr:`subject` as a method, handed to the codec so messages are built only on error."""
        return self.subject

    def copy(self, **kw: Any) -> VectorType:
        new = super().copy(**kw)
        new._column_ref = None
        return new

    def adapt(self, cls: type[Any], **kw: Any) -> Any:
        # The dialect-level copy does the binding, so it must still know its column.
        new = super().adapt(cls, **kw)
        new._column_ref = self._column_ref
        return new

    def _set_parent(self, parent: Any, **kw: Any) -> None:
        current = self._column_ref() if self._column_ref is not None else None
        if current is not None and current is not parent:
            if getattr(parent, "type", None) is not self:
                return  # the element type of a container (ARRAY(vk.Vector(3)) on two columns): keep it
            # One instance declared on two columns: this column gets its own copy, so each
            # column's errors name that column.
            own = self.copy()
            parent.type = own
            own._set_parent(parent)
            return
        self._column_ref = weakref.ref(parent)
        event.listen(parent, "after_parent_attach", _on_column_attached)

    # ------------------------------------------------------------------ processing

    def check(self, value: Any) -> Any:
        """Validate ``value`` for this column and return the canonical numpy value."""
        return codec.check(self.kind, value, self.dim, self.describe)

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        return dialects.for_dialect(dialect).bind_processor(self, dialect)

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], Any] | None:
        return dialects.for_dialect(dialect).result_processor(self, dialect)

    def literal_processor(self, dialect: Dialect) -> Callable[[Any], str] | None:
        return dialects.for_dialect(dialect).literal_processor(self, dialect)

    def bind_expression(self, bindvalue: Any) -> ColumnElement[Any]:
        # The dialect decides whether a parameter needs a cast to be typed (asyncpg, text drivers).
        return VectorBind(bindvalue, self)

    def column_expression(self, colexpr: ColumnElement[Any]) -> ColumnElement[Any]:
        # The dialect decides how the column travels back (PostgreSQL: its binary send form).
        return VectorOutput(colexpr, self)

    def compare_values(self, x: Any, y: Any) -> bool:
        if x is None or y is None:
            return x is y
        return bool(np.array_equal(np.asarray(x), np.asarray(y)))



def _on_column_attached(column: Any, table: Any) -> None:
    if not event.contains(table, "before_create", _before_create):
        event.listen(table, "before_create", _before_create)


def _before_create(table: Any, connection: Any, **kw: Any) -> None:
    if getattr(kw.get("_ddl_runner"), "as_sql", False):
        return  # offline SQL (Alembic --sql): the migration's own create_vector_extension covers it
    dialects.for_dialect(connection.dialect).before_create_table(table, connection)


class Vector(VectorType):
    """Dense float32 vector: PostgreSQL ``vector(dim)``, SQLite sqlite-vec float32 BLOB."""

    kind = Kind.FLOAT32
    cache_ok = True


class HalfVector(VectorType):
    """Half-precision vector: PostgreSQL ``halfvec(dim)``; SQLite stores float32 of the
    float16-rounded values, so both dialects hold (and return) the same float16 numbers."""

    kind = Kind.FLOAT16
    cache_ok = True


class BitVector(VectorType):
    """Binary vector: PostgreSQL ``bit(dim)``, SQLite sqlite-vec bit BLOB; returns a bool array."""

    kind = Kind.BIT
    cache_ok = True
    metrics = _BIT_METRICS


class SparseVector(VectorType):
    """Sparse vector: PostgreSQL ``sparsevec(dim)``; SQLite refuses it at DDL time.

    Binds ``{index: value}`` dicts (0-based), scipy sparse vectors, pgvector ``SparseVector``
    or dense sequences; returns the dense float32 array.
    """

    kind = Kind.SPARSE
    cache_ok = True


dialects.register_type_compilation(VectorType, (Vector, HalfVector, BitVector, SparseVector))
