"""Batch migrations keep vector and full-text indexes in step with the table they copy (SQLite).

Alembic changes a SQLite table by copying it ("move and copy"): ``CREATE TABLE
_alembic_tmp_<t>``, ``INSERT ... SELECT``, ``DROP TABLE <t>``, ``ALTER TABLE _alembic_tmp_<t>
RENAME TO <t>``. Dropping the table drops its triggers, and the triggers are what keeps a vec0
(``VectorIndex``) or FTS5 (``FullTextIndex``) table in step with its table. Two DDL listeners on
the ``Table`` class, which act only on the DDL Alembic's own migration runner emits and only on
databases whose indexes live in such shadow tables, make every index of the table follow it:

* **before the copy is created** (``before_create`` of ``_alembic_tmp_<t>``), nothing changed
  yet: the table's indexes are read from the catalog and matched with the copy's columns.
  A renamed or retyped column is followed (the index is declared again on the copy's
  columns); a dropped one, a type the index cannot hold or vectors of another size are refused
  here, with an error that names the index and the column, before anything is written.
* **after the table is dropped** (its triggers with it), before the copy is renamed: each index
  is built again for the copy (shadow table for the copy's columns, triggers on the copy, rows
  from the copy). SQLite moves the triggers to the table's name with the rename.

The listeners are installed when ``alembic_ext`` is imported (env.py and every generated
migration import it) and cost one ``isinstance`` for any other DDL.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

import sqlalchemy_vectorknobs as vk
from sqlalchemy_vectorknobs import dialects
from sqlalchemy_vectorknobs.dialects.sqlite_search import parse_vec0
from sqlalchemy_vectorknobs.fulltext import FullTextIndex
from sqlalchemy_vectorknobs.types import VectorType

from .impl import sqlite_index_knobs

__all__ = ["install"]

_PLANS = "vk_batch_plans"  # connection.info key: {table name: statements to run once it is dropped}


@dataclass
class _Copy:
    """What a batch copy does to the columns of the table it replaces."""

    table: str  # the table being copied
    copy: sa.Table  # Alembic's copy (its column keys are the old names)
    live: set[str] = field(default_factory=set)  # the table's column names

    @property
    def renamed(self) -> dict[str, str]:
        """old name -> new name, for every column the copy keeps."""
        return {c.key: c.name for c in self.copy.columns if c.key in self.live}

    def new_name(self, old: str, index: str, kind: str, role: str) -> str:
        if old not in self.renamed:
            raise vk.InvalidIndexError(
                f"Batch migration of table '{self.table}' drops column '{old}', which {kind} index '{index}' uses "
                f"({role}); drop the index first (op.drop_{kind}_index('{index}', '{self.table}')) or keep the column."
            )
        return self.renamed[old]


def _is_alembic_ddl(connection: Any, kw: dict[str, Any]) -> bool:
    from alembic.ddl.impl import DefaultImpl

    # offline (--sql) Alembic passes a mock connection: there is no table to read, nothing to do
    return isinstance(connection, sa.engine.Connection) and isinstance(kw.get("_ddl_runner"), DefaultImpl)


def _before_copy(table: sa.Table, connection: Any, **kw: Any) -> None:
    """``before_create``: plan the indexes of the table Alembic is about to copy into ``table``."""
    if not _is_alembic_ddl(connection, kw) or not table.name.startswith("_alembic_tmp_"):
        return
    support: Any = dialects.for_dialect(connection.dialect)
    if not hasattr(support, "recreate_vector_index_sql"):
        return  # indexes that are not shadow tables survive ALTER TABLE and table copies alike
    from alembic.operations.batch import ApplyBatchImpl

    inspector = sa.inspect(connection)
    names = {ApplyBatchImpl._calc_temp_name(n): n for n in inspector.get_table_names(schema=table.schema)}
    base = names.get(table.name)
    plans = connection.info.setdefault(_PLANS, {})
    plans.pop(base, None)
    if base is None:
        return
    vectors = [i for i in vk.inspect_vectors(connection).indexes if i.table == base]
    texts = support.fulltext_indexes(connection, base, table.schema)
    if not vectors and not texts:
        return
    batch = _Copy(base, table, {c["name"] for c in inspector.get_columns(base, schema=table.schema)})
    # The indexes are declared again on a stand-in for the copy (Alembic's own Table must not get them).
    stand_in = sa.Table(
        table.name,
        sa.MetaData(),
        *[sa.Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable) for c in table.columns],
    )
    preparer = connection.dialect.identifier_preparer
    statements: list[str] = []
    for info in vectors:
        statements += support.recreate_vector_index_sql(_vector_index(connection, support, batch, stand_in, info), preparer)
    for name, found in sorted(texts.items()):
        columns = [stand_in.c[batch.new_name(c, name, "fulltext", "text column")] for c in found["columns"]]
        index = FullTextIndex(name, *columns, config=found["config"], tokenize=found["tokenize"])
        statements += support.recreate_fulltext_index_sql(index, base, preparer)
    plans[base] = statements


def _vector_index(connection: Any, support: Any, batch: _Copy, stand_in: sa.Table, info: Any) -> vk.VectorIndex:
    """The vec0 index ``info`` declared on the stand-in for the copy, its columns followed."""
    parsed = parse_vec0(info.definition or "")
    kind, where = "vector", f"vector index '{info.name}'"
    column = stand_in.c[batch.new_name(parsed["column"], info.name, kind, "its vector column")]
    batch.new_name(parsed["primary_key"], info.name, kind, "its key")
    knobs = sqlite_index_knobs(info, column.type)
    knobs["metadata_columns"] = tuple(batch.new_name(m, info.name, kind, "metadata column") for m in knobs["metadata_columns"])
    if not isinstance(column.type, VectorType) or column.type.dim is None:
        raise vk.InvalidIndexError(
            f"Batch migration of table '{batch.table}' makes column '{column.name}' {column.type!r}; {where} needs a vector "
            "column with a dimension (e.g. Vector(384)); drop the index first or keep the column a vector column."
        )
    count = support.vectors_not_fitting(connection, batch.table, parsed["column"], column.type)
    if count:
        raise vk.DimensionMismatchError(
            f"Batch migration of table '{batch.table}' makes column '{column.name}' {column.type!r}, but {count} row(s) "
            f"hold vectors of another size, which {where} cannot take; set them to NULL first "
            f"(op.alter_vector_column(..., using='NULL') does) and re-embed them."
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sa.exc.SAWarning)
        return vk.VectorIndex(info.name, column, **knobs)


def _after_drop(table: sa.Table, connection: Any, **kw: Any) -> None:
    """``after_drop``: the copied table is gone with its triggers; build its indexes on the copy."""
    if not _is_alembic_ddl(connection, kw):
        return
    plans = connection.info.get(_PLANS)
    statements = plans.pop(table.name, None) if plans else None
    for sql in statements or ():
        connection.exec_driver_sql(sql)


def install() -> None:
    """Listen for Alembic's table copies (idempotent)."""
    if not event.contains(sa.Table, "before_create", _before_copy):
        event.listen(sa.Table, "before_create", _before_copy)
        event.listen(sa.Table, "after_drop", _after_drop)
