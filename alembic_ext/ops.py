"""Alembic operations for vectors: ``op.create_vector_index`` and friends, each reversible.

Importing ``alembic_ext`` registers them (generated migrations import it). Each operation is a
``MigrateOperation`` with ``reverse()`` and ``to_diff_tuple()`` (what ``alembic check`` and
``compare_metadata()`` report: a kind, the table, the object and a readable description); the DDL
comes from :mod:`alembic_ext.impl`, which asks the dialect modules of ``sqlalchemy_vectorknobs``::

    import alembic_ext  # noqa: F401  (registers the ops)

    def upgrade():
        op.create_vector_extension()
        op.create_vector_index("doc_embedding_idx", "doc", "embedding", distance="cosine", m=16,
                               column_type=sqlalchemy_vectorknobs.Vector(384))
"""

from __future__ import annotations

from typing import Any, cast

from alembic.operations import BatchOperations, MigrateOperation, Operations

from sqlalchemy_vectorknobs import VectorIndex
from sqlalchemy_vectorknobs.fulltext import FullTextIndex
from sqlalchemy_vectorknobs.types import VectorType

__all__ = [
    "INDEX_KNOBS",
    "AlterVectorColumnOp",
    "CreateFullTextIndexOp",
    "CreateVectorExtensionOp",
    "CreateVectorIndexOp",
    "DropFullTextIndexOp",
    "DropVectorExtensionOp",
    "DropVectorIndexOp",
    "ReindexVectorIndexOp",
]

#: VectorIndex keyword arguments an index op carries, with their defaults
INDEX_KNOBS: dict[str, Any] = {
    "distance": "cosine",
    "method": "hnsw",
    "m": None,
    "ef_construction": None,
    "lists": None,
    "precision": None,
    "where": None,
    "concurrently": False,
    "metadata_columns": (),
}


def _table(table_name: str, schema: str | None) -> str:
    return f"{schema}.{table_name}" if schema else table_name


def _knob_text(key: str, value: Any) -> str:
    if key == "where" and value is not None and not isinstance(value, str):
        return f"where={str(value)!r}"
    if hasattr(value, "value") and not isinstance(value, (str, int)):
        value = value.value  # Distance
    if isinstance(value, tuple):
        value = list(value)
    return f"{key}={value!r}"


class _ExtensionOp(MigrateOperation):
    _kind = ""

    def __init__(self, schema: str | None = None) -> None:
        self.schema = schema

    def to_diff_tuple(self) -> tuple[Any, ...]:
        """``(kind, extension)`` as ``alembic check`` / ``compare_metadata()`` report it."""
        return (self._kind, "vector" + (f" in schema {self.schema}" if self.schema else ""))


@Operations.register_operation("create_vector_extension")
class CreateVectorExtensionOp(_ExtensionOp):
    """``CREATE EXTENSION IF NOT EXISTS vector`` (PostgreSQL; nothing on SQLite)."""

    _kind = "add_vector_extension"

    @classmethod
    def create_vector_extension(cls, operations: Operations, schema: str | None = None) -> None:
        """Install pgvector in the database (``schema`` to choose where its types live)."""
        operations.invoke(cls(schema=schema))

    def reverse(self) -> DropVectorExtensionOp:
        return DropVectorExtensionOp(schema=self.schema)


@Operations.register_operation("drop_vector_extension")
class DropVectorExtensionOp(_ExtensionOp):
    """``DROP EXTENSION IF EXISTS vector`` (PostgreSQL; nothing on SQLite)."""

    _kind = "remove_vector_extension"

    @classmethod
    def drop_vector_extension(cls, operations: Operations, schema: str | None = None) -> None:
        """Remove pgvector from the database (fails while vector columns exist)."""
        operations.invoke(cls(schema=schema))

    def reverse(self) -> CreateVectorExtensionOp:
        return CreateVectorExtensionOp(schema=self.schema)


@Operations.register_operation("create_vector_index")
@BatchOperations.register_operation("create_vector_index", "batch_create_vector_index")
class CreateVectorIndexOp(MigrateOperation):
    """Create a vector index with the knobs of :class:`sqlalchemy_vectorknobs.VectorIndex`.

    ``column_type`` (e.g. ``Vector(384)``) is needed for offline ``--sql`` runs, where the
    column cannot be looked up; online it is read from the database when omitted.
    """

    def __init__(
        self,
        index_name: str,
        table_name: str,
        column_name: str,
        *,
        schema: str | None = None,
        column_type: VectorType | None = None,
        **knobs: Any,
    ) -> None:
        unknown = set(knobs) - set(INDEX_KNOBS)
        if unknown:
            raise TypeError(f"create_vector_index got unknown arguments {sorted(unknown)}; it takes {sorted(INDEX_KNOBS)}.")
        self.index_name = index_name
        self.table_name = table_name
        self.column_name = column_name
        self.schema = schema
        self.column_type = column_type
        self.knobs = {**INDEX_KNOBS, **knobs}
        #: knobs autogenerate took from the model because the database does not record them
        self.assumed: tuple[str, ...] = ()

    @classmethod
    def create_vector_index(
        cls,
        operations: Operations,
        index_name: str,
        table_name: str,
        column_name: str,
        *,
        schema: str | None = None,
        column_type: VectorType | None = None,
        **knobs: Any,
    ) -> None:
        """Create a vector index (HNSW / IVFFlat on PostgreSQL, a vec0 table on SQLite)."""
        operations.invoke(cls(index_name, table_name, column_name, schema=schema, column_type=column_type, **knobs))

    @classmethod
    def batch_create_vector_index(cls, operations: BatchOperations, index_name: str, column_name: str, **kw: Any) -> None:
        """``create_vector_index`` inside ``op.batch_alter_table(...)``."""
        impl: Any = operations.impl
        operations.invoke(cls(index_name, impl.table_name, column_name, schema=impl.schema, **kw))

    @classmethod
    def from_index(cls, index: VectorIndex) -> CreateVectorIndexOp:
        opts = index.vector_options
        column = index.vector_column
        return cls(
            str(index.name),
            column.table.name,
            column.name,
            schema=column.table.schema,
            column_type=column.type,
            distance=opts.distance.value,
            method=opts.method,
            m=opts.m,
            ef_construction=opts.ef_construction,
            lists=opts.lists,
            precision=opts.precision,
            where=opts.where,
            concurrently=opts.concurrently,
            metadata_columns=opts.metadata_columns,
        )

    def reverse(self) -> DropVectorIndexOp:
        return DropVectorIndexOp(self.index_name, self.table_name, schema=self.schema, _reverse=self)

    def describe(self) -> str:
        """The index in one line: its column and every knob that is not the default."""
        knobs = [
            _knob_text(k, v)
            for k, v in self.knobs.items()
            if k != "distance" and (bool(v) if k == "metadata_columns" else v != INDEX_KNOBS[k])
        ]
        distance = self.knobs["distance"]
        distance = getattr(distance, "value", distance)
        return f"{self.column_name}: " + ", ".join([f"distance={distance!r}", *knobs])

    def to_diff_tuple(self) -> tuple[Any, ...]:
        """``("add_vector_index", table, index, description)``."""
        return ("add_vector_index", _table(self.table_name, self.schema), self.index_name, self.describe())


class _DropIndexOp(MigrateOperation):
    """What the drop operations share: the names, and the create operation that undoes them when
    autogenerate built the drop from the index (a hand-written drop carries no definition)."""

    _kind = ""

    def __init__(
        self, index_name: str, table_name: str, *, schema: str | None = None, _reverse: MigrateOperation | None = None
    ) -> None:
        self.index_name = index_name
        self.table_name = table_name
        self.schema = schema
        self._reverse = _reverse

    def to_diff_tuple(self) -> tuple[Any, ...]:
        """``("remove_<kind>_index", table, index)``."""
        return (f"remove_{self._kind}_index", _table(self.table_name, self.schema), self.index_name)

    def _reversed(self) -> MigrateOperation:
        if self._reverse is None:
            raise ValueError(
                f"drop_{self._kind}_index('{self.index_name}') cannot be reversed: the operation does not carry the "
                f"index definition; write the create_{self._kind}_index in the downgrade by hand."
            )
        return self._reverse


@Operations.register_operation("drop_vector_index")
@BatchOperations.register_operation("drop_vector_index", "batch_drop_vector_index")
class DropVectorIndexOp(_DropIndexOp):
    """Drop a vector index and everything it created (on SQLite its vec0 table and triggers)."""

    _kind = "vector"
    _reverse: CreateVectorIndexOp | None

    @classmethod
    def drop_vector_index(
        cls, operations: Operations, index_name: str, table_name: str, *, schema: str | None = None
    ) -> None:
        """Drop a vector index."""
        operations.invoke(cls(index_name, table_name, schema=schema))

    @classmethod
    def batch_drop_vector_index(cls, operations: BatchOperations, index_name: str) -> None:
        """``drop_vector_index`` inside ``op.batch_alter_table(...)``."""
        impl: Any = operations.impl
        operations.invoke(cls(index_name, impl.table_name, schema=impl.schema))

    @classmethod
    def from_index(cls, index: VectorIndex) -> DropVectorIndexOp:
        return cls(str(index.name), index.vector_column.table.name, schema=index.vector_column.table.schema,
                   _reverse=CreateVectorIndexOp.from_index(index))

    def reverse(self) -> CreateVectorIndexOp:
        return cast("CreateVectorIndexOp", self._reversed())


@Operations.register_operation("reindex_vector_index")
class ReindexVectorIndexOp(MigrateOperation):
    """Rebuild a vector index (``REINDEX INDEX [CONCURRENTLY]``; on SQLite, refill its vec0 table)."""

    def __init__(self, index_name: str, *, schema: str | None = None, concurrently: bool = True) -> None:
        self.index_name = index_name
        self.schema = schema
        self.concurrently = concurrently

    @classmethod
    def reindex_vector_index(
        cls, operations: Operations, index_name: str, *, schema: str | None = None, concurrently: bool = True
    ) -> None:
        """Rebuild a vector index, by default without blocking writes (PostgreSQL)."""
        operations.invoke(cls(index_name, schema=schema, concurrently=concurrently))

    def reverse(self) -> ReindexVectorIndexOp:
        return self  # rebuilding is its own inverse: the index is the same afterwards

    def to_diff_tuple(self) -> tuple[Any, ...]:
        """``("reindex_vector_index", index)``."""
        return ("reindex_vector_index", _table(self.index_name, self.schema))


@Operations.register_operation("alter_vector_column")
class AlterVectorColumnOp(MigrateOperation):
    """Change a vector column's dimension or type, dropping and recreating the vector indexes on it.

    ``using`` is the SQL expression the new values come from (PostgreSQL); the default casts the
    old values, which fails if they do not fit (e.g. a new dimension): pass ``using="NULL"`` to
    clear the vectors for re-embedding.
    """

    def __init__(
        self,
        table_name: str,
        column_name: str,
        *,
        dim: int | None = None,
        type_: VectorType | None = None,
        existing_type: VectorType | None = None,
        using: str | None = None,
        schema: str | None = None,
    ) -> None:
        if dim is None and type_ is None:
            raise TypeError("alter_vector_column needs dim= or type_= to say what changes.")
        self.table_name = table_name
        self.column_name = column_name
        self.dim = dim
        self.type_ = type_
        self.existing_type = existing_type
        self.using = using
        self.schema = schema

    @classmethod
    def alter_vector_column(
        cls,
        operations: Operations,
        table_name: str,
        column_name: str,
        *,
        dim: int | None = None,
        type_: VectorType | None = None,
        existing_type: VectorType | None = None,
        using: str | None = None,
        schema: str | None = None,
    ) -> None:
        """Change a vector column's dimension (``dim=``) or type (``type_=vk.HalfVector(384)``)."""
        operations.invoke(
            cls(table_name, column_name, dim=dim, type_=type_, existing_type=existing_type, using=using, schema=schema)
        )

    def new_type(self, current: VectorType | None) -> VectorType:
        if self.type_ is not None:
            return self.type_
        base = current if current is not None else self.existing_type
        if base is None:
            raise ValueError(
                f"alter_vector_column('{self.table_name}', '{self.column_name}', dim={self.dim}) needs type_= "
                "or existing_type= when the current column type cannot be read (offline mode)."
            )
        return type(base)(self.dim)

    def to_diff_tuple(self) -> tuple[Any, ...]:
        """``("modify_vector_type", table, column, "old -> new")``."""
        new = repr(self.type_) if self.type_ is not None else f"dim={self.dim}"
        old = repr(self.existing_type) if self.existing_type is not None else "the current type"
        using = f" using {self.using}" if self.using is not None else ""
        return ("modify_vector_type", _table(self.table_name, self.schema), self.column_name, f"{old} -> {new}{using}")

    def reverse(self) -> AlterVectorColumnOp:
        if self.existing_type is None:
            raise ValueError(
                f"alter_vector_column('{self.table_name}', '{self.column_name}') cannot be reversed without existing_type=."
            )
        return AlterVectorColumnOp(
            self.table_name,
            self.column_name,
            type_=self.existing_type,
            existing_type=self.new_type(self.existing_type),
            using=self.using,
            schema=self.schema,
        )


@Operations.register_operation("create_fulltext_index")
class CreateFullTextIndexOp(MigrateOperation):
    """Create a :class:`sqlalchemy_vectorknobs.fulltext.FullTextIndex`: a GIN ``to_tsvector``
    expression index on PostgreSQL, an FTS5 table with its triggers (filled from the existing
    rows) on SQLite."""

    def __init__(
        self,
        index_name: str,
        table_name: str,
        columns: list[str],
        *,
        config: str = "english",
        tokenize: str | None = None,
        schema: str | None = None,
    ) -> None:
        if isinstance(columns, str) or not columns:
            raise TypeError("create_fulltext_index takes a list of text column names, e.g. ['title', 'body'].")
        self.index_name = index_name
        self.table_name = table_name
        self.columns = list(columns)
        self.config = config
        self.tokenize = tokenize
        self.schema = schema

    @classmethod
    def create_fulltext_index(
        cls,
        operations: Operations,
        index_name: str,
        table_name: str,
        columns: list[str],
        *,
        config: str = "english",
        tokenize: str | None = None,
        schema: str | None = None,
    ) -> None:
        """Create a full-text index over ``columns`` of ``table_name``."""
        operations.invoke(cls(index_name, table_name, columns, config=config, tokenize=tokenize, schema=schema))

    @classmethod
    def from_index(cls, index: FullTextIndex) -> CreateFullTextIndexOp:
        opts = index.fulltext_options
        table = index.table
        assert table is not None, "the index is attached to its table"
        return cls(
            str(index.name),
            table.name,
            [c.name for c in index.text_columns],
            config=opts.config,
            tokenize=opts.tokenize,
            schema=table.schema,
        )

    def reverse(self) -> DropFullTextIndexOp:
        return DropFullTextIndexOp(self.index_name, self.table_name, schema=self.schema, _reverse=self)

    def describe(self) -> str:
        """The index in one line: its columns, configuration and tokenizer."""
        extra = f", tokenize={self.tokenize!r}" if self.tokenize is not None else ""
        return f"{', '.join(self.columns)}: config={self.config!r}{extra}"

    def to_diff_tuple(self) -> tuple[Any, ...]:
        """``("add_fulltext_index", table, index, description)``."""
        return ("add_fulltext_index", _table(self.table_name, self.schema), self.index_name, self.describe())


@Operations.register_operation("drop_fulltext_index")
class DropFullTextIndexOp(_DropIndexOp):
    """Drop a full-text index and everything it created (on SQLite its FTS5 table and triggers)."""

    _kind = "fulltext"
    _reverse: CreateFullTextIndexOp | None

    @classmethod
    def drop_fulltext_index(
        cls, operations: Operations, index_name: str, table_name: str, *, schema: str | None = None
    ) -> None:
        """Drop a full-text index."""
        operations.invoke(cls(index_name, table_name, schema=schema))

    def reverse(self) -> CreateFullTextIndexOp:
        return cast("CreateFullTextIndexOp", self._reversed())
