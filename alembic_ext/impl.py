"""How the ``alembic_ext`` operations run: DDL from the dialect modules, online or as ``--sql``.

Online, the vector column's type (and, on SQLite, the primary key and metadata columns) is read
from the database; offline, ``create_vector_index`` needs ``column_type=`` (autogenerate always
writes it). ``concurrently=True`` runs inside Alembic's autocommit block.
"""

from __future__ import annotations

import re
import warnings
from typing import Any, Callable, Optional

import sqlalchemy as sa
from alembic.operations import Operations
from sqlalchemy.schema import CreateIndex

import sqlalchemy_vectorknobs as vk
from sqlalchemy_vectorknobs import dialects
from sqlalchemy_vectorknobs.codec import Kind
from sqlalchemy_vectorknobs.dialects.sqlite_search import parse_vec0
from sqlalchemy_vectorknobs.types import VectorType

from .ops import (
    AlterVectorColumnOp,
    CreateVectorExtensionOp,
    CreateVectorIndexOp,
    DropVectorExtensionOp,
    DropVectorIndexOp,
    ReindexVectorIndexOp,
)

_TYPES = {"Vector": vk.Vector, "HalfVector": vk.HalfVector, "BitVector": vk.BitVector, "SparseVector": vk.SparseVector}


def _support(operations: Operations) -> Any:
    return dialects.get(operations.impl.dialect.name)


def _online(operations: Operations) -> bool:
    impl: Any = operations.impl
    return not impl.as_sql


def _in_autocommit(operations: Operations, concurrently: bool, run: Callable[[], None]) -> None:
    if concurrently and operations.impl.dialect.name == "postgresql":
        with operations.get_context().autocommit_block():
            run()
    else:
        run()


def live_column_type(bind: Any, table: str, column: str, schema: Optional[str]) -> Optional[VectorType]:
    """The vk type of a vector column as the database has it (None if it is not a vector column)."""
    for info in vk.inspect_vectors(bind).columns:
        if info.table == table and info.column == column and (schema is None or info.schema == schema):
            type_: VectorType = _TYPES[info.type](info.dim)
            return type_
    return None


def _table_for(operations: Operations, table_name: str, column_name: str, schema: Optional[str], column_type: Any) -> sa.Table:
    """A Table object carrying what the index DDL needs, reflected online or built offline."""
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
    if column_type is None:
        raise vk.InvalidIndexError(
            f"create_vector_index('{table_name}.{column_name}') needs column_type= (e.g. Vector(384)) in offline --sql mode."
        )
    if operations.impl.dialect.name == "sqlite":
        raise vk.UnsupportedDialectError(
            "Offline --sql migrations cannot create SQLite vector indexes: the vec0 table needs the live primary key; "
            "run the migration online."
        )
    return sa.Table(
        table_name, sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True), sa.Column(column_name, column_type), schema=schema
    )


def build_index(operations: Operations, op: CreateVectorIndexOp) -> vk.VectorIndex:
    table = _table_for(operations, op.table_name, op.column_name, op.schema, op.column_type)
    knobs = dict(op.knobs)
    if isinstance(knobs.get("where"), str):
        knobs["where"] = sa.text(knobs["where"])
    return vk.VectorIndex(op.index_name, table.c[op.column_name], **knobs)


def create_index(operations: Operations, index: vk.VectorIndex) -> None:
    support = _support(operations)
    if operations.impl.dialect.name == "sqlite":
        drop_index(operations, str(index.name), None)  # a vec0 table orphaned by a table rebuild
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


def drop_index(operations: Operations, name: str, schema: Optional[str]) -> None:
    preparer = operations.impl.dialect.identifier_preparer
    qualified = f"{schema}.{name}" if schema and operations.impl.dialect.name == "postgresql" else name
    for sql in _support(operations).drop_vector_index_sql(qualified, preparer):
        operations.execute(sql)


@Operations.implementation_for(DropVectorIndexOp)
def _drop_vector_index(operations: Operations, op: DropVectorIndexOp) -> None:
    drop_index(operations, op.index_name, op.schema)


@Operations.implementation_for(ReindexVectorIndexOp)
def _reindex_vector_index(operations: Operations, op: ReindexVectorIndexOp) -> None:
    if operations.impl.dialect.name == "postgresql":
        name = operations.impl.dialect.identifier_preparer.quote(op.index_name)
        name = f"{op.schema}.{name}" if op.schema else name
        sql = f"REINDEX INDEX {'CONCURRENTLY ' if op.concurrently else ''}{name}"
        _in_autocommit(operations, op.concurrently, lambda: operations.execute(sql))
        return
    # SQLite: refill the vec0 table from the base table (the backfill statement of its DDL)
    index = _live_sqlite_index(operations, op.index_name)
    preparer = operations.impl.dialect.identifier_preparer
    operations.execute(f"DELETE FROM {preparer.quote_identifier(op.index_name)}")
    operations.execute(_support(operations).vector_index_follow_up(index, preparer)[-1])


def _live_sqlite_index(operations: Operations, name: str, column_type: Optional[VectorType] = None) -> vk.VectorIndex:
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
    if operations.impl.dialect.name != "postgresql":
        return  # sqlite-vec is loaded per connection by the engine
    schema = f" SCHEMA {operations.impl.dialect.identifier_preparer.quote(op.schema)}" if op.schema else ""
    operations.execute(f"CREATE EXTENSION IF NOT EXISTS vector{schema}")


@Operations.implementation_for(DropVectorExtensionOp)
def _drop_extension(operations: Operations, op: DropVectorExtensionOp) -> None:
    if operations.impl.dialect.name == "postgresql":
        operations.execute("DROP EXTENSION IF EXISTS vector")


@Operations.implementation_for(AlterVectorColumnOp)
def _alter_vector_column(operations: Operations, op: AlterVectorColumnOp) -> None:
    dialect = operations.impl.dialect.name
    online = _online(operations)
    current = live_column_type(operations.get_bind(), op.table_name, op.column_name, op.schema) if online else None
    new = op.new_type(current or op.existing_type)
    old = current or op.existing_type
    dependents = _dependent_indexes(operations, op) if online else []
    for info in dependents:
        drop_index(operations, info.name, op.schema)
    if dialect == "postgresql":
        preparer = operations.impl.dialect.identifier_preparer
        spec = dialects.get("postgresql").col_spec(new)
        col = preparer.quote(op.column_name)
        table = preparer.format_table(sa.table(op.table_name, schema=op.schema))
        using = op.using if op.using is not None else f"{col}::{spec}"
        operations.execute(f"ALTER TABLE {table} ALTER COLUMN {col} TYPE {spec} USING {using}")
        for info in dependents:
            operations.execute(_retarget_definition(info.definition or "", old, new))
    else:
        if op.using is not None:  # SQLite cannot cast vectors: the new values are given outright
            q = operations.impl.dialect.identifier_preparer.quote
            operations.execute(f"UPDATE {q(op.table_name)} SET {q(op.column_name)} = {op.using}")
        with operations.batch_alter_table(op.table_name, schema=op.schema) as batch:
            batch.alter_column(op.column_name, type_=new, existing_type=old)
        for info in dependents:
            reflected = sa.Table(op.table_name, sa.MetaData(), autoload_with=operations.get_bind())
            reflected.c[op.column_name].type = new
            column = reflected.c[info.expression]
            create_index(operations, vk.VectorIndex(info.name, column, **sqlite_index_knobs(info, column.type)))


def _dependent_indexes(operations: Operations, op: AlterVectorColumnOp) -> list[Any]:
    """Vector indexes to drop and rebuild around the change.

    On SQLite that is every vec0 index of the table: the batch rebuild of the table drops all
    of its triggers.
    """
    word = re.compile(rf"\b{re.escape(op.column_name)}\b")
    sqlite = operations.impl.dialect.name == "sqlite"
    return [
        i
        for i in vk.inspect_vectors(operations.get_bind()).indexes
        if i.table == op.table_name and (sqlite or word.search(i.expression or ""))
    ]


def _retarget_definition(definition: str, old: Optional[VectorType], new: VectorType) -> str:
    """An index definition from pg_get_indexdef, moved to the column's new dimension / type."""
    if old is not None and old.dim is not None and new.dim is not None:
        definition = re.sub(rf"::(halfvec|bit)\({old.dim}\)", rf"::\g<1>({new.dim})", definition)
    if old is not None and old.kind is not new.kind:
        definition = re.sub(rf"\b{old.kind.value}_(\w+)_ops\b", rf"{new.kind.value}_\g<1>_ops", definition)
    return definition
