"""``VectorIndex``: an approximate-nearest-neighbour index declared like any ``sqlalchemy.Index``.

    class Doc(Base):
        __tablename__ = "doc"
        id: Mapped[int] = mapped_column(primary_key=True)
        category: Mapped[str] = mapped_column(String(20))
        embedding = mapped_column(vk.Vector(384))
        __table_args__ = (
            vk.VectorIndex("doc_embedding_idx", "embedding", distance="cosine", m=16,
                           metadata_columns=["category"]),
        )

It is created by ``metadata.create_all`` and seen by Alembic. On PostgreSQL it is an HNSW or
IVFFlat index with the operator class derived from (column type, distance, precision); on SQLite
a sqlite-vec ``vec0`` virtual table named like the index, kept in step by triggers. The
parameters are checked against pgvector's limits when the index is declared.

Importing this module registers a compile hook on ``CreateIndex`` / ``DropIndex`` (the one
global registration the package makes): a ``VectorIndex`` (or a ``FullTextIndex``) is rendered by
the dialect module, every other index exactly as SQLAlchemy renders it (tested).

A copy of the table under its own name (``Table.to_metadata`` / ``tometadata``, Alembic's copies of
a model table) gets a copy of the index, knobs and all: SQLAlchemy would copy it as a plain
``Index``, so the index is flagged like the indexes ``Column(index=True)`` makes, which copies
skip, and the copy of its column brings it back (:func:`follow_table_copies`).
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Index, Table, event, text
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import CreateIndex, DropIndex
from sqlalchemy.sql import visitors
from sqlalchemy.sql.ddl import SchemaDropper
from sqlalchemy.sql.elements import ClauseElement

from . import dialects
from .codec import Kind
from .distance import Distance
from .exc import InvalidIndexError

__all__ = ["METHODS", "PRECISIONS", "VectorIndex", "VectorIndexOptions", "check_index_name", "follow_table_copies"]

METHODS = ("hnsw", "ivfflat", "auto")
#: HNSW ef_construction when none is declared (pgvector's is 64). On 100k x 384 clustered vectors
#: 128 measured recall@10 1.000 unfiltered and 0.943 at 1 % filter selectivity, against 0.985-0.995
#: and 0.91 at 64, for a 1.5x longer build (docs/guide.md, "Vector indexes").
DEFAULT_EF_CONSTRUCTION = 128
PRECISIONS = (None, "halfvec", "binary")
_declared = itertools.count()


def check_index_name(name: Any, what: str) -> None:
    """Refuse index names no database can store (a NUL byte, empty) before any DDL runs.

    Every other character is quoted when the name is written into SQL.
    """
    if name is None:
        return  # a naming convention names it
    if not isinstance(name, str) or not name or "\x00" in name:
        raise InvalidIndexError(f"{what} name {name!r} is not valid; give a non-empty string without NUL characters.")


def follow_table_copies(index: Index, column: Any) -> None:
    """Have every copy of ``index``'s table under the same name get a copy of ``index``.

    The index is skipped by ``Table.to_metadata`` and Alembic's batch copies (``_column_flag``,
    as for the indexes ``Column(index=True)`` makes); a listener that travels with copies of
    ``column`` adds ``index._copy_to(table)`` once the copied table is complete. Copies under
    another name (declarative mixins, Alembic's ``_alembic_tmp_`` tables) get nothing.
    """
    index._column_flag = True
    listener = index.__dict__.get("_vk_follow")
    if listener is None:
        listener = index.__dict__["_vk_follow"] = functools.partial(_column_copied, index)
    if not event.contains(column, "after_parent_attach", listener):
        event.listen(column, "after_parent_attach", listener, propagate=True)


def follow_unattached(index: Index, *expressions: Any) -> None:
    """:func:`follow_table_copies` now, for the columns among ``expressions`` (``Column``,
    ``mapped_column()``) that no table holds yet. SQLAlchemy attaches the index to the table from
    inside such a column's own ``after_parent_attach`` event, where adding a listener to that
    column would change the listeners being called ("deque mutated during iteration")."""
    for expression in expressions:
        column = expression if isinstance(expression, Column) else getattr(expression, "column", None)
        if isinstance(column, Column) and getattr(column, "table", None) is None:
            follow_table_copies(index, column)


def _column_copied(index: Any, column: Any, table: Any) -> None:
    source = index.table
    if not isinstance(table, Table) or source is None or table is source or table.name != source.name:
        return
    if index not in source.indexes:
        return  # removed from its table since
    event.listen(table, "after_parent_attach", lambda target, parent: index._copy_to(target), once=True)


def onto_table(clause: Any, source: Any, table: Any) -> Any:
    """``clause`` with the columns of ``source`` replaced by the same-named columns of ``table``."""
    if clause is None:
        return None

    def swap(element: Any) -> Any:
        return table.c[element.key] if isinstance(element, Column) and element.table is source else None

    traverse: Any = visitors.replacement_traverse
    return traverse(clause, {}, swap)


def _check_range(name: str, value: int | None, low: int, high: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidIndexError(f"VectorIndex {name}={value!r} is out of range; pgvector accepts whole numbers {low} to {high}.")


@dataclass(frozen=True)
class VectorIndexOptions:
    """The validated knobs of a :class:`VectorIndex` (dialect-independent checks)."""

    distance: Distance
    method: str = "hnsw"
    m: int | None = None
    ef_construction: int | None = None
    lists: int | None = None
    precision: str | None = None
    where: ClauseElement | None = None
    concurrently: bool = False
    metadata_columns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InvalidIndexError(f"VectorIndex method {self.method!r} is not known; use one of 'hnsw', 'ivfflat' or 'auto'.")
        if self.precision not in PRECISIONS:
            raise InvalidIndexError(
                f"VectorIndex precision {self.precision!r} is not known; use None, 'halfvec' or 'binary'."
            )
        _check_range("m", self.m, 2, 100)
        _check_range("ef_construction", self.ef_construction, 4, 1000)
        _check_range("lists", self.lists, 1, 32768)
        if self.method == "ivfflat" and (self.m is not None or self.ef_construction is not None):
            raise InvalidIndexError("VectorIndex m and ef_construction apply to HNSW indexes, not to method='ivfflat'.")
        if self.method == "hnsw" and self.lists is not None:
            raise InvalidIndexError("VectorIndex lists applies to IVFFlat indexes, not to method='hnsw'.")
        m = 16 if self.m is None else self.m
        if self.ef_construction is not None and self.ef_construction < 2 * m:
            raise InvalidIndexError(
                f"VectorIndex ef_construction={self.ef_construction} is below 2 * m = {2 * m}; pgvector requires "
                "ef_construction >= 2 * m."
            )

    @property
    def hnsw_ef_construction(self) -> int:
        """``ef_construction`` an HNSW build uses: the declared one, else :data:`DEFAULT_EF_CONSTRUCTION`
        (at least ``2 * m``, as pgvector requires)."""
        if self.ef_construction is not None:
            return self.ef_construction
        return max(DEFAULT_EF_CONSTRUCTION, 2 * (16 if self.m is None else self.m))

    @property
    def index_distance(self) -> Distance:
        """The metric the index itself is built for (Hamming for binary quantization)."""
        return Distance.HAMMING if self.precision == "binary" else self.distance


class VectorIndex(Index):
    """A vector index; a real ``sqlalchemy.Index`` carrying :class:`VectorIndexOptions`.

    ``column`` is a column, mapped attribute or column name, as for ``sqlalchemy.Index``.
    ``precision="halfvec"`` indexes the half-precision cast of the column; ``precision="binary"``
    indexes ``binary_quantize(column)`` and queries re-rank its candidates by ``distance``.
    ``metadata_columns`` become sqlite-vec metadata columns that filters can use inside the KNN
    search on SQLite (they must be NOT NULL); PostgreSQL filters any column without them.
    ``method="auto"`` picks HNSW, or IVFFlat from :data:`AUTO_IVFFLAT_ROWS` rows on, when the
    index is created.
    """

    def __init__(
        self,
        name: str,
        column: Any,
        *,
        distance: Distance | str = "cosine",
        method: str = "hnsw",
        m: int | None = None,
        ef_construction: int | None = None,
        lists: int | None = None,
        precision: str | None = None,
        where: ClauseElement | str | None = None,
        concurrently: bool = False,
        metadata_columns: tuple[str, ...] | list[str] = (),
        **kw: Any,
    ) -> None:
        check_index_name(name, "VectorIndex")
        where_clause = text(where) if isinstance(where, str) else where
        self.vector_options = VectorIndexOptions(
            Distance.parse(distance),
            method,
            m,
            ef_construction,
            lists,
            precision,
            where_clause,
            bool(concurrently),
            tuple(metadata_columns),
        )
        #: what ``method="auto"`` (and IVFFlat's default ``lists``) resolved to at CREATE time
        self.resolved: dict[str, Any] = {}
        #: declaration order: with several indexes on one column, searches that name no distance
        #: use the first declared (``query.find_index``); a table's indexes are a set
        self.declared = next(_declared)
        super().__init__(name, column, **kw)
        follow_unattached(self, column)
        event.listen(self, "before_create", _before_create)
        event.listen(self, "after_create", _after_create)
        event.listen(self, "after_drop", _after_drop)

    @property
    def vector_column(self) -> Any:
        """The indexed column (available once the index is attached to its table)."""
        return next(iter(self.columns))

    @property
    def vector_type(self) -> Any:
        return self.vector_column.type

    @property
    def dim(self) -> int | None:
        return getattr(self.vector_type, "dim", None)

    @property
    def storage_kind(self) -> Kind:
        """The kind of vector the index stores once precision is applied."""
        kind: Kind = self.vector_type.kind
        if self.vector_options.precision == "binary":
            return Kind.BIT
        if self.vector_options.precision == "halfvec":
            return Kind.FLOAT16
        return kind

    def _set_parent(self, parent: Any, **kw: Any) -> None:
        super()._set_parent(parent, **kw)
        self._check_declaration()
        if not event.contains(parent, "after_drop", _after_table_drop):
            event.listen(parent, "after_drop", _after_table_drop)
        follow_table_copies(self, self.vector_column)

    def _copy_to(self, table: Any) -> VectorIndex | None:
        """This index, declared on ``table`` (a copy of its table), unless ``table`` has one of that name."""
        if any(ix.name == self.name for ix in table.indexes):
            return None
        o = self.vector_options
        copy = VectorIndex(
            str(self.name),
            table.c[self.vector_column.key],
            distance=o.distance,
            method=o.method,
            m=o.m,
            ef_construction=o.ef_construction,
            lists=o.lists,
            precision=o.precision,
            where=onto_table(o.where, self.table, table),
            concurrently=o.concurrently,
            metadata_columns=o.metadata_columns,
            **self.dialect_kwargs,
        )
        copy.declared = self.declared
        return copy

    def _check_declaration(self) -> None:
        from .types import VectorType

        opts = self.vector_options
        if len(self.columns) != 1:
            raise InvalidIndexError(f"VectorIndex '{self.name}' must index exactly one column, got {len(self.columns)}.")
        col = self.vector_column
        where = f"VectorIndex '{self.name}' on '{col.table.name}.{col.name}'"
        type_ = col.type
        if not isinstance(type_, VectorType):
            raise InvalidIndexError(f"{where} indexes a {type_!r} column; VectorIndex needs a vk vector column.")
        if type_.dim is None:
            raise InvalidIndexError(f"{where} needs a column with a declared dimension, e.g. vk.Vector(384).")
        if opts.distance not in type_.metrics:
            allowed = ", ".join(sorted(m.value for m in type_.metrics))
            raise InvalidIndexError(f"{where} cannot use {opts.distance.value} distance on {type_!r}; use one of {allowed}.")
        if opts.precision == "halfvec" and type_.kind is not Kind.FLOAT32 and type_.kind is not Kind.FLOAT16:
            raise InvalidIndexError(f"{where} cannot use precision='halfvec' on {type_!r}; it applies to Vector columns.")
        if opts.precision == "binary" and type_.kind not in (Kind.FLOAT32, Kind.FLOAT16):
            raise InvalidIndexError(
                f"{where} cannot use precision='binary' on {type_!r}; it applies to Vector and HalfVector columns."
            )
        table_columns = col.table.columns
        for name in opts.metadata_columns:
            if name not in table_columns:
                raise InvalidIndexError(f"{where} names metadata column '{name}', which the table does not have.")
            if table_columns[name].nullable:
                raise InvalidIndexError(
                    f"{where} names metadata column '{name}', which is nullable; sqlite-vec metadata columns must be NOT NULL."
                )
        for name in dialects.SUPPORTED:
            dialects.get(name).check_vector_index(self)


#: From this many rows on, ``method="auto"`` builds IVFFlat (faster to build) instead of HNSW.
AUTO_IVFFLAT_ROWS = 1_000_000


def _before_create(index: VectorIndex, connection: Any, **kw: Any) -> None:
    dialects.for_dialect(connection.dialect).before_create_vector_index(index, connection)


def _after_create(index: VectorIndex, connection: Any, **kw: Any) -> None:
    dialects.for_dialect(connection.dialect).after_create_vector_index(index, connection)


def _after_drop(index: VectorIndex, connection: Any, **kw: Any) -> None:
    dialects.for_dialect(connection.dialect).after_drop_vector_index(index, connection)


def _after_table_drop(table: Any, connection: Any, **kw: Any) -> None:
    if not isinstance(kw.get("_ddl_runner"), SchemaDropper):
        return  # a migration tool's drop (Alembic: an op names what it drops; its table copies are alembic_ext's)
    support = dialects.for_dialect(connection.dialect)
    for index in table.indexes:
        if isinstance(index, VectorIndex):
            support.after_drop_vector_index(index, connection)


@compiles(CreateIndex)
def _compile_create_index(element: CreateIndex, compiler: Any, **kw: Any) -> str:
    if isinstance(element.element, VectorIndex):
        return dialects.for_dialect(compiler.dialect).render_create_vector_index(compiler, element, **kw)
    if hasattr(element.element, "render_create"):  # FullTextIndex (fulltext.py)
        return str(element.element.render_create(compiler, element, **kw))
    return str(compiler.visit_create_index(element, **kw))


@compiles(DropIndex)
def _compile_drop_index(element: DropIndex, compiler: Any, **kw: Any) -> str:
    if isinstance(element.element, VectorIndex):
        return dialects.for_dialect(compiler.dialect).render_drop_vector_index(compiler, element, **kw)
    if hasattr(element.element, "render_drop"):  # FullTextIndex (fulltext.py)
        return str(element.element.render_drop(compiler, element, **kw))
    return str(compiler.visit_drop_index(element, **kw))
