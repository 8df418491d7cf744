"""How the ``alembic_ext`` operations run: DDL from the dialect modules, online or as ``--sql``.

Online, the vector column's type (and, on SQLite, the primary key and metadata columns) is read
from the database; offline, ``create_vector_index`` needs ``column_type=`` (autogenerate always
writes it). ``concurrently=True`` runs inside Alembic's autocommit block. On SQLite,
``alter_vector_column`` is a batch table copy, which :mod:`alembic_ext.batch` makes the table's
vector and full-text indexes follow.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from alembic.operations import Operations
from sqlalchemy.schema import CreateIndex

import sqlalchemy_vectorknobs as vk
from sqlalchemy_vectorknobs import dialects
from sqlalchemy_vectorknobs.codec import Kind
from sqlalchemy_vectorknobs.dialects.sqlite_search import parse_vec0
from sqlalchemy_vectorknobs.fulltext import FullTextIndex
from sqlalchemy_vectorknobs.types import VectorType

from .ops import (
    AlterVectorColumnOp,
    CreateFullTextIndexOp,
    CreateVectorExtensionOp,
    CreateVectorIndexOp,
    DropFullTextIndexOp,
    DropVectorExtensionOp,
    DropVectorIndexOp,
    ReindexVectorIndexOp,
)

#: ``vk.inspect_vectors`` type names -> types
TYPES: dict[str, type[VectorType]] = {
    "Vector": vk.Vector, "HalfVector": vk.HalfVector, "BitVector": vk.BitVector, "SparseVector": vk.SparseVector,
}


def _support(operations: Operations) -> Any:
    return dialects.for_dialect(operations.impl.dialect)


def _preparer(operations: Operations) -> Any:
    return operations.impl.dialect.identifier_preparer


def _online(operations: Operations) -> bool:
    impl: Any = operations.impl
    return not impl.as_sql


def _in_autocommit(operations: Operations, concurrently: bool, run: Callable[[], None]) -> None:
    if concurrently:  # CONCURRENTLY is refused inside a transaction
        with operations.get_context().autocommit_block():
            run()
    else:
        run()


def in_schema(bind: Any, live: str | None, schema: str | None) -> bool:
    """Whether an object ``vk.inspect_vectors`` reports in schema ``live`` is in ``schema`` (None:
    the connection's default schema, as Alembic names it)."""
    if live is None:  # a database without schemas (SQLite)
        return schema is None
    return bool(live == (schema or bind.dialect.default_schema_name))


def live_column_type(bind: Any, table: str, column: str, schema: str | None) -> VectorType | None:
    """The vk type of a vector column as the database has it (None if it is not a vector column)."""
    for info in vk.inspect_vectors(bind).columns:
        if info.table == table and info.column == column and in_schema(bind, info.schema, schema):
            return TYPES[info.type](info.dim)
    return None


def _table_for(
    operations: Operations, table_name: str, column_name: str, schema: str | None, column_type: Any, others: tuple[str, ...] = ()
) -> sa.Table:
    """A Table object carrying what the index DDL needs, reflected online or built offline (then
    with the vector column and ``others``, the metadata columns, which PostgreSQL's DDL does not use)."""
    if _online(operations):
        bind = operations.get_bind()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", sa.exc.SAWarning)  # pgvector types on a non-vectorknobs engine
            table = sa.Table(table_name, sa.MetaData(), autoload_with=bind, schema=schema)
        current = table.c[column_name].type
        if not isinstance(current, VectorType):
            live = column_type or live_column_type(bind, table_name, column_name, schema)
            if live is None:
                raise vk.InvalidIndexError(
                    f"create_vector_index: column '{table_name}.{column_name}' is not a vector column in the database."
                )
            table.c[column_name].type = live
        return table
    if not _support(operations).offline_index_ddl:
        raise vk.UnsupportedDialectError(
            "Offline --sql migrations cannot create vector indexes on this database: they need the live table "
            "(SQLite's vec0 table is keyed by its primary key); run the migration online."
        )
    if column_type is None:
        raise vk.InvalidIndexError(
            f"create_vector_index('{table_name}.{column_name}') needs column_type= (e.g. Vector(384)) in offline --sql mode."
        )
    key = "id" if "id" not in (column_name, *others) else f"vk_key_{column_name}"
    return sa.Table(
        table_name,
        sa.MetaData(),
        sa.Column(key, sa.Integer, primary_key=True),
        sa.Column(column_name, column_type),
        *[sa.Column(name, sa.String, nullable=False) for name in dict.fromkeys(others) if name != column_name],
        schema=schema,
    )


def build_index(operations: Operations, op: CreateVectorIndexOp) -> vk.VectorIndex:
    others = tuple(op.knobs.get("metadata_columns") or ())
    table = _table_for(operations, op.table_name, op.column_name, op.schema, op.column_type, others)
    knobs = dict(op.knobs)
    if isinstance(knobs.get("where"), str):
        knobs["where"] = sa.text(knobs["where"])
    return vk.VectorIndex(op.index_name, table.c[op.column_name], **knobs)


def create_index(operations: Operations, index: vk.VectorIndex) -> None:
    support = _support(operations)
    for sql in support.vector_index_preamble(index, _preparer(operations)):
        operations.execute(sql)
    if _online(operations):
        support.before_create_vector_index(index, operations.get_bind())
    impl: Any = operations.impl
    impl._exec(CreateIndex(index))
    for sql in support.vector_index_follow_up(index, operations.impl.dialect.identifier_preparer):
        operations.execute(sql)


@Operations.implementation_for(CreateVectorIndexOp)
def _create_vector_index(operations: Operations, op: CreateVectorIndexOp) -> None:
    index = build_index(operations, op)
    _in_autocommit(operations, bool(op.knobs.get("concurrently")), lambda: create_index(operations, index))


class _InSchema:
    """An identifier preparer that writes every name it quotes into ``schema``: the dialect
    modules' drop statements take the bare name of an index (and of what it made)."""

    def __init__(self, preparer: Any, schema: str) -> None:
        self._preparer, self._schema = preparer, preparer.quote_schema(schema)

    def quote(self, name: str) -> str:
        return f"{self._schema}.{self._preparer.quote(name)}"

    def quote_identifier(self, name: str) -> str:
        return f"{self._schema}.{self._preparer.quote_identifier(name)}"

    def __getattr__(self, name: str) -> Any:
        return getattr(self._preparer, name)


def _drop_preparer(operations: Operations, schema: str | None) -> Any:
    preparer = _preparer(operations)
    return _InSchema(preparer, schema) if schema else preparer


def drop_index(operations: Operations, name: str, schema: str | None) -> None:
    for sql in _support(operations).drop_vector_index_sql(name, _drop_preparer(operations, schema)):
        operations.execute(sql)


@Operations.implementation_for(DropVectorIndexOp)
def _drop_vector_index(operations: Operations, op: DropVectorIndexOp) -> None:
    drop_index(operations, op.index_name, op.schema)


@Operations.implementation_for(ReindexVectorIndexOp)
def _reindex_vector_index(operations: Operations, op: ReindexVectorIndexOp) -> None:
    support, preparer = _support(operations), _preparer(operations)
    statements = support.reindex_sql(op.index_name, op.schema, op.concurrently, preparer)
    if statements is not None:

        def run() -> None:
            for sql in statements:
                operations.execute(sql)

        _in_autocommit(operations, op.concurrently, run)
        return
    # no REINDEX (SQLite): drop and recreate the index from its live definition, which refills it
    index = _live_sqlite_index(operations, op.index_name)
    drop_index(operations, op.index_name, None)
    create_index(operations, index)


def _live_sqlite_index(operations: Operations, name: str, column_type: VectorType | None = None) -> vk.VectorIndex:
    """The VectorIndex of a live vec0-backed index, rebuilt from the SQLite catalog."""
    bind = operations.get_bind()
    info = next((i for i in vk.inspect_vectors(bind).indexes if i.name == name), None)
    if info is None:
        raise vk.InvalidIndexError(f"SQLite has no vector index named '{name}'.")
    table = sa.Table(info.table, sa.MetaData(), autoload_with=bind)
    column = table.c[info.expression]
    if column_type is not None:
        column.type = column_type
    return vk.VectorIndex(name, column, **sqlite_index_knobs(info, column.type))


def sqlite_index_knobs(info: Any, column_type: Any) -> dict[str, Any]:
    """VectorIndex keyword arguments of a live vec0 index."""
    parsed = parse_vec0(info.definition or "")
    binary = parsed["bits"] and getattr(column_type, "kind", None) is not Kind.BIT
    return {
        # a binary index keeps no record of the distance it re-ranks by: any gives the same DDL
        "distance": "cosine" if binary else parsed["metric"],
        "precision": "binary" if binary else None,
        "metadata_columns": tuple(parsed["metadata"]),
    }


@Operations.implementation_for(CreateVectorExtensionOp)
def _create_extension(operations: Operations, op: CreateVectorExtensionOp) -> None:
    for sql in _support(operations).extension_sql(True, op.schema, _preparer(operations)):
        operations.execute(sql)


@Operations.implementation_for(DropVectorExtensionOp)
def _drop_extension(operations: Operations, op: DropVectorExtensionOp) -> None:
    for sql in _support(operations).extension_sql(False, op.schema, _preparer(operations)):
        operations.execute(sql)


@Operations.implementation_for(AlterVectorColumnOp)
def _alter_vector_column(operations: Operations, op: AlterVectorColumnOp) -> None:
    support, preparer = _support(operations), _preparer(operations)
    online = _online(operations)
    current = live_column_type(operations.get_bind(), op.table_name, op.column_name, op.schema) if online else None
    new = op.new_type(current or op.existing_type)
    old = current or op.existing_type
    in_place = support.alter_vector_column_sql(op.table_name, op.column_name, new, op.using, op.schema, preparer)
    if in_place is None:
        # A table copy (SQLite), which alembic_ext.batch makes the table's vector and full-text
        # indexes follow: rebuilt for the new type from the copied rows.
        if op.using is not None:  # no cast on a copy: the new values are given outright
            operations.execute(f"UPDATE {preparer.quote(op.table_name)} SET {preparer.quote(op.column_name)} = {op.using}")
        elif online:
            _check_vectors_fit(operations, op, old, new)
        with operations.batch_alter_table(op.table_name, schema=op.schema) as batch:
            batch.alter_column(op.column_name, type_=new, existing_type=old)
        return
    # In place, the indexes on the column depend on it: dropped, then created again for the new type.
    word = re.compile(rf"\b{re.escape(op.column_name)}\b")
    dependents = [
        i
        for i in (vk.inspect_vectors(operations.get_bind()).indexes if online else [])
        if i.table == op.table_name and in_schema(operations.get_bind(), i.schema, op.schema) and word.search(i.expression or "")
    ]
    for info in dependents:
        drop_index(operations, info.name, op.schema)
    for sql in in_place:
        operations.execute(sql)
    for info in dependents:
        operations.execute(support.retarget_index_definition(info.definition or "", old, new))


def _check_vectors_fit(operations: Operations, op: AlterVectorColumnOp, old: VectorType | None, new: VectorType) -> None:
    """Refuse, before anything changes, a type change the stored vectors do not fit (SQLite keeps
    the bytes as they are, so vectors of the old size would stay in a column of the new one)."""
    count = _support(operations).vectors_not_fitting(operations.get_bind(), op.table_name, op.column_name, new)
    if count:
        raise vk.DimensionMismatchError(
            f"alter_vector_column('{op.table_name}', '{op.column_name}') changes {old!r} to {new!r}, but {count} row(s) "
            f"hold vectors of another size; pass using='NULL' to clear them for re-embedding, or convert them first."
        )


@Operations.implementation_for(CreateFullTextIndexOp)
def _create_fulltext_index(operations: Operations, op: CreateFullTextIndexOp) -> None:
    support = _support(operations)
    if _online(operations):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", sa.exc.SAWarning)
            table = sa.Table(op.table_name, sa.MetaData(), autoload_with=operations.get_bind(), schema=op.schema)
    elif support.offline_index_ddl:
        table = sa.Table(
            op.table_name,
            sa.MetaData(),
            sa.Column("id", sa.Integer, primary_key=True),
            *[sa.Column(name, sa.Text) for name in op.columns],
            schema=op.schema,
        )
    else:
        raise vk.UnsupportedDialectError(
            "Offline --sql migrations cannot create full-text indexes on this database: they need the live table "
            "(SQLite's FTS5 table is keyed by its primary key); run the migration online."
        )
    missing = [name for name in op.columns if name not in table.c]
    if missing:
        raise vk.InvalidIndexError(f"create_fulltext_index: table '{op.table_name}' has no column '{missing[0]}'.")
    index = FullTextIndex(op.index_name, *[table.c[name] for name in op.columns], config=op.config, tokenize=op.tokenize)
    preparer = _preparer(operations)
    for sql in support.fulltext_index_preamble(index, preparer):
        operations.execute(sql)
    if _online(operations):
        support.before_create_fulltext_index(index, operations.get_bind())
    impl: Any = operations.impl
    impl._exec(CreateIndex(index))
    for sql in support.fulltext_index_follow_up(index, preparer):
        operations.execute(sql)


@Operations.implementation_for(DropFullTextIndexOp)
def _drop_fulltext_index(operations: Operations, op: DropFullTextIndexOp) -> None:
    for sql in _support(operations).drop_fulltext_index_sql(op.index_name, _drop_preparer(operations, op.schema)):
        operations.execute(sql)
