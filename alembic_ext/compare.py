"""Autogenerate comparison of vector columns and vector indexes against the live database.

Column types and dimensions come from ``vk.inspect_vectors`` (so they are seen even when the
migration engine's reflection does not know pgvector). Index definitions are compared exactly by
the dialect module (``vector_index_matches``):

* PostgreSQL: the model's index is created, inside a SAVEPOINT that is rolled back, on an empty
  ``CREATE TEMP TABLE ... (LIKE table)``; PostgreSQL's own ``pg_get_indexdef`` of it is compared
  with the live index's. Method, operator class, parameters, expression and WHERE are therefore
  compared in the server's normalised form, never by parsing SQL text.
* SQLite: the vec0 definition the model would create is compared with the live one.

Indexes that only differ in what the model leaves to the database (``lists=None`` on IVFFlat,
``method="auto"``) are equal.
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa

import sqlalchemy_vectorknobs as vk
from sqlalchemy_vectorknobs import dialects
from sqlalchemy_vectorknobs.fulltext import FullTextIndex
from sqlalchemy_vectorknobs.types import VectorType

from .impl import live_column_type, sqlite_index_knobs
from .ops import (
    AlterVectorColumnOp,
    CreateFullTextIndexOp,
    CreateVectorIndexOp,
    DropFullTextIndexOp,
    DropVectorIndexOp,
)

_OPCLASS = re.compile(r"^(vector|halfvec|bit|sparsevec)_(l2|ip|cosine|l1|hamming|jaccard)_ops$")
_DISTANCE = {"l2": "l2", "ip": "ip", "cosine": "cosine", "l1": "l1", "hamming": "hamming", "jaccard": "jaccard"}


def compare_vectors(
    autogen_context: Any,
    modify_ops: Any,
    schema: str | None,
    tname: str,
    conn_table: sa.Table | None,
    metadata_table: sa.Table | None,
) -> Any:
    """Table-level comparator: vector column types, then vector indexes."""
    bind = autogen_context.connection
    if bind is None or metadata_table is None:
        return _continue()
    report = vk.inspect_vectors(bind)
    if conn_table is not None:
        for column in metadata_table.columns:
            if not isinstance(column.type, VectorType):
                continue
            live = live_column_type(bind, tname, column.name, schema)
            if live is not None and (type(live) is not type(column.type) or live.dim != column.type.dim):
                modify_ops.ops.append(
                    AlterVectorColumnOp(tname, column.name, type_=column.type, existing_type=live, schema=schema)
                )
    live_indexes = {i.name: i for i in report.indexes if i.table == tname and (schema is None or i.schema in (schema, None))}
    wanted = {str(ix.name): ix for ix in metadata_table.indexes if isinstance(ix, vk.VectorIndex)}
    for name, index in sorted(wanted.items()):
        info = live_indexes.get(name)
        if info is None:
            modify_ops.ops.append(CreateVectorIndexOp.from_index(index))
        elif not _same(bind, index, info):
            modify_ops.ops.append(
                DropVectorIndexOp(name, tname, schema=schema, _reverse=op_from_catalog(info, _live_type(bind, info)))
            )
            modify_ops.ops.append(CreateVectorIndexOp.from_index(index))
    for name, info in sorted(live_indexes.items()):
        if name not in wanted:
            modify_ops.ops.append(
                DropVectorIndexOp(name, tname, schema=schema, _reverse=op_from_catalog(info, _live_type(bind, info)))
            )
    compare_fulltext(bind, modify_ops, schema, tname, conn_table, metadata_table)
    return _continue()


def compare_fulltext(
    bind: Any, modify_ops: Any, schema: str | None, tname: str, conn_table: sa.Table | None, metadata_table: sa.Table
) -> None:
    """FullTextIndex objects against the live full-text indexes this package made (columns and
    configuration, or FTS5 tokenizer, compared)."""
    support = dialects.for_dialect(bind.dialect)
    live = support.fulltext_indexes(bind, tname, schema) if conn_table is not None else {}
    wanted = {str(ix.name): ix for ix in metadata_table.indexes if isinstance(ix, FullTextIndex)}

    def recreate(name: str, info: dict[str, Any]) -> CreateFullTextIndexOp:
        return CreateFullTextIndexOp(name, tname, info["columns"], config=info["config"], tokenize=info["tokenize"], schema=schema)

    for name, index in sorted(wanted.items()):
        info = live.get(name)
        if info is not None and support.fulltext_index_matches(index, info):
            continue
        if info is not None:
            modify_ops.ops.append(DropFullTextIndexOp(name, tname, schema=schema, _reverse=recreate(name, info)))
        modify_ops.ops.append(CreateFullTextIndexOp.from_index(index))
    for name, info in sorted(live.items()):
        if name not in wanted:
            modify_ops.ops.append(DropFullTextIndexOp(name, tname, schema=schema, _reverse=recreate(name, info)))


def _continue() -> Any:
    try:
        from alembic.util import PriorityDispatchResult

        return PriorityDispatchResult.CONTINUE
    except ImportError:  # Alembic < 1.18
        return None


def _indexed_column(expression: str) -> str | None:
    """The column an index expression is built on: ``embedding`` of ``(binary_quantize(embedding)::bit(3))``."""
    match = re.search(r"\w+", re.sub(r"binary_quantize|::\w+\(\d+\)", " ", expression))
    return match.group(0) if match else None


def _live_type(bind: Any, info: Any) -> VectorType | None:
    column = _indexed_column(info.expression or "")
    return live_column_type(bind, info.table, column, info.schema) if column else None


def _same(bind: Any, index: vk.VectorIndex, info: Any) -> bool:
    return bool(dialects.for_dialect(bind.dialect).vector_index_matches(bind, index, info))


def op_from_catalog(info: Any, column_type: VectorType | None) -> CreateVectorIndexOp:
    """The create op that would rebuild a live index (for downgrades of drops and changes)."""
    expression = info.expression or ""
    column = _indexed_column(expression)
    knobs: dict[str, Any] = {}
    if info.method == "vec0":
        knobs.update(sqlite_index_knobs(info, column_type))
    else:
        match = _OPCLASS.match(info.opclass or "")
        stored, metric = (match.group(1), match.group(2)) if match else ("vector", "cosine")
        if "binary_quantize" in expression:
            knobs["precision"], metric = "binary", "cosine"
        elif stored == "halfvec" and column_type is not None and column_type.kind.value == "vector":
            knobs["precision"] = "halfvec"
        knobs["distance"] = _DISTANCE[metric]
        knobs["method"] = info.method
        for key in ("m", "ef_construction", "lists"):
            if key in info.options:
                knobs[key] = int(info.options[key])
        if info.where:
            knobs["where"] = info.where
    return CreateVectorIndexOp(
        info.name,
        info.table,
        column or expression,
        schema=info.schema if info.method != "vec0" else None,
        column_type=column_type,
        **knobs,
    )
