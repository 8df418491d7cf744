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

A plain ``sqlalchemy.Index`` with ``postgresql_using="hnsw"`` / ``"ivfflat"`` on a vector column
(how pgvector-python declares indexes) is compared the same way: equal to the live index, nothing
is proposed; different, the live one is dropped (its definition kept for the downgrade) and the
declared one created, with a warning that ``vk.VectorIndex`` is the declaration to switch to.

The drop of a changed or removed index carries the live definition, so the downgrade restores
exactly what the database has: PostgreSQL's method, operator class (so distance and precision),
m, ef_construction, lists, expression and WHERE; SQLite's metric, dimension, binary precision and
metadata columns. Knobs a database keeps no trace of change nothing in it; for a changed index
they are taken from the model's declaration (see :func:`op_from_catalog`), for a removed one
they keep their defaults. The op has no ``schema=`` unless the table is in a non-default schema.
"""

from __future__ import annotations

import re
import uuid
import warnings
from typing import Any

import sqlalchemy as sa

import sqlalchemy_vectorknobs as vk
from sqlalchemy_vectorknobs import dialects
from sqlalchemy_vectorknobs.embedding.column import INFO_KEY as EMBEDDED
from sqlalchemy_vectorknobs.fulltext import FullTextIndex
from sqlalchemy_vectorknobs.types import VectorType

from .impl import TYPES, in_schema, sqlite_index_knobs
from .ops import (
    INDEX_KNOBS,
    AlterVectorColumnOp,
    CreateFullTextIndexOp,
    CreateVectorIndexOp,
    DropFullTextIndexOp,
    DropVectorIndexOp,
)

_OPCLASS = re.compile(r"^(vector|halfvec|bit|sparsevec)_(l2|ip|cosine|l1|hamming|jaccard)_ops$")
_DISTANCE = {"l2": "l2", "ip": "ip", "cosine": "cosine", "l1": "l1", "hamming": "hamming", "jaccard": "jaccard"}
#: access methods of pgvector's indexes, as ``postgresql_using`` names them
PGVECTOR_METHODS = ("hnsw", "ivfflat")


def compare_vectors(
    autogen_context: Any,
    modify_ops: Any,
    schema: str | None,
    tname: str,
    conn_table: sa.Table | None,
    metadata_table: sa.Table | None,
) -> Any:
    """Table-level comparator: vector column types, then vector indexes, then full-text indexes.

    A table the model no longer has (``metadata_table`` None) gets a drop of each of its indexes
    before Alembic's ``drop_table``, so that the downgrade re-creates them after the table.
    """
    bind = autogen_context.connection
    if bind is None or (metadata_table is None and conn_table is None):
        return _continue()
    report = vk.inspect_vectors(bind)
    live_types = {
        c.column: TYPES[c.type](c.dim) for c in report.columns if c.table == tname and in_schema(bind, c.schema, schema)
    }
    if conn_table is not None and metadata_table is not None:
        for column in metadata_table.columns:
            if not isinstance(column.type, VectorType):
                continue
            live = live_types.get(column.name)
            if live is not None and (type(live) is not type(column.type) or live.dim != column.type.dim):
                # The vectors of an embedded column come from its embedder: a new dimension means a
                # new model, whose vectors vk.backfill computes; the old ones cannot be converted.
                using = "NULL" if EMBEDDED in column.info and live.dim != column.type.dim else None
                modify_ops.ops.append(
                    AlterVectorColumnOp(tname, column.name, type_=column.type, existing_type=live, using=using, schema=schema)
                )
    live_indexes = {i.name: i for i in report.indexes if i.table == tname and in_schema(bind, i.schema, schema)}
    declared = list(metadata_table.indexes) if metadata_table is not None else []
    wanted = {str(ix.name): ix for ix in declared if isinstance(ix, vk.VectorIndex)}
    plain = {str(ix.name): ix for ix in declared if is_plain_vector_index(ix)}

    def drop(name: str, info: Any) -> DropVectorIndexOp:
        column_type = live_types.get(_indexed_column(info.expression or "") or "")
        return DropVectorIndexOp(name, tname, schema=schema, _reverse=op_from_catalog(info, column_type, schema, wanted.get(name)))

    for name, index in sorted(wanted.items()):
        info = live_indexes.get(name)
        if info is None:
            modify_ops.ops.append(CreateVectorIndexOp.from_index(index))
        elif not _same(bind, index, info):
            modify_ops.ops.append(drop(name, info))
            modify_ops.ops.append(CreateVectorIndexOp.from_index(index))
    for name, declared_index in sorted(plain.items()):
        info = live_indexes.get(name)
        if info is not None and info.method in PGVECTOR_METHODS and not _plain_same(bind, declared_index, info):
            _advise(declared_index, "differs from the live index, so it is dropped and created again")
            modify_ops.ops.append(drop(name, info))
            from alembic.operations import ops as alembic_ops

            modify_ops.ops.append(alembic_ops.CreateIndexOp.from_index(declared_index))
        # missing: Alembic's own index comparison creates it (include_object leaves it to Alembic)
    for name, info in sorted(live_indexes.items()):
        if name not in wanted and name not in plain:
            modify_ops.ops.append(drop(name, info))
    compare_fulltext(bind, modify_ops, schema, tname, conn_table, metadata_table)
    return _continue()


def compare_fulltext(
    bind: Any, modify_ops: Any, schema: str | None, tname: str, conn_table: sa.Table | None, metadata_table: sa.Table | None
) -> None:
    """FullTextIndex objects against the live full-text indexes this package made (columns and
    configuration, or FTS5 tokenizer, compared)."""
    support = dialects.for_dialect(bind.dialect)
    live = support.fulltext_indexes(bind, tname, schema) if conn_table is not None else {}
    declared = list(metadata_table.indexes) if metadata_table is not None else []
    wanted = {str(ix.name): ix for ix in declared if isinstance(ix, FullTextIndex)}

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


def _same(bind: Any, index: vk.VectorIndex, info: Any) -> bool:
    return bool(dialects.for_dialect(bind.dialect).vector_index_matches(bind, index, info))


# ------------------------------------------------------------------ plain Index (pgvector-python)


def is_plain_vector_index(index: Any) -> bool:
    """A ``sqlalchemy.Index`` (not a VectorIndex) declared as pgvector-python does: on a vector
    column, ``postgresql_using="hnsw"`` or ``"ivfflat"``."""
    if isinstance(index, (vk.VectorIndex, FullTextIndex)) or not isinstance(index, sa.Index):
        return False
    if index.dialect_kwargs.get("postgresql_using") not in PGVECTOR_METHODS:
        return False
    return any(isinstance(c.type, VectorType) for c in index.columns) or any(
        isinstance(getattr(c, "type", None), VectorType) for e in index.expressions for c in _columns_in(e)
    )


def _columns_in(expression: Any) -> list[Any]:
    from sqlalchemy.sql import visitors

    return [e for e in visitors.iterate(expression) if isinstance(e, sa.Column)]


def _plain_same(bind: Any, index: sa.Index, info: Any) -> bool:
    """Whether a plain Index builds what is live: both definitions as the server writes them.

    The declared index is created, inside a SAVEPOINT that is rolled back, on an empty temporary
    table with the model's columns; its definition (from ``vk.inspect_vectors``) and the live one
    are compared from ``USING`` on, so the table and index names do not count.
    """
    from sqlalchemy.schema import CreateIndex, CreateTable
    from sqlalchemy.sql import visitors

    metadata_table: Any = index.table
    tmp = f"vk_cmp_{uuid.uuid4().hex[:10]}"
    copy = sa.Table(tmp, sa.MetaData(), *[sa.Column(c.name, c.type) for c in metadata_table.columns], prefixes=["TEMPORARY"])

    def swap(element: Any) -> Any:
        return copy.c[element.name] if isinstance(element, sa.Column) and element.table is metadata_table else None

    traverse: Any = visitors.replacement_traverse
    expressions = [traverse(e, {}, swap) for e in index.expressions]
    probe = sa.Index(f"{tmp}_ix", *expressions, unique=index.unique, **index.dialect_kwargs)
    if probe.table is None:
        copy.append_constraint(probe)
    savepoint = bind.begin_nested()
    try:
        bind.execute(CreateTable(copy))
        bind.execute(CreateIndex(probe))
        found = next((i for i in vk.inspect_vectors(bind).indexes if i.name == probe.name), None)
    finally:
        savepoint.rollback()
    mine, live = (found.definition or "") if found else "", info.definition or ""
    return bool(found) and mine[mine.find(" USING ") :] == live[live.find(" USING ") :]


def _advise(index: sa.Index, why: str) -> None:
    table = index.table.name if index.table is not None else "?"
    warnings.warn(
        f"Index '{index.name}' on '{table}' is a plain sqlalchemy.Index with postgresql_using="
        f"{index.dialect_kwargs.get('postgresql_using')!r} and {why}; declare it as vk.VectorIndex (same name, the "
        "distance and parameters it is built with) so that autogenerate compares and migrates it with its operator "
        "class and parameters (docs/alembic.md, 'Coming from pgvector-python').",
        UserWarning,
        stacklevel=2,
    )


# ------------------------------------------------------------------ downgrades


def op_from_catalog(
    info: Any, column_type: VectorType | None, schema: str | None = None, declared: vk.VectorIndex | None = None
) -> CreateVectorIndexOp:
    """The create op that rebuilds a live index (for downgrades of drops and changes).

    Everything the database records comes from its catalog, exactly. ``declared``, the model's
    index of the same name when there is one (a changed index), supplies the knobs the database
    keeps no trace of, which do not change it: ``metadata_columns`` on PostgreSQL; the HNSW /
    IVFFlat parameters and ``precision="halfvec"`` on SQLite; the distance a binary index
    re-ranks by and ``concurrently`` on both. Those are listed in the op's ``assumed`` (the
    migration file says so in a comment). ``schema`` is the schema the comparison ran in (None
    for the default one).
    """
    expression = info.expression or ""
    column = _indexed_column(expression)
    catalog: dict[str, Any] = {}
    if info.method == "vec0":
        catalog.update(sqlite_index_knobs(info, column_type))
    else:
        match = _OPCLASS.match(info.opclass or "")
        stored, metric = (match.group(1), match.group(2)) if match else ("vector", "cosine")
        if "binary_quantize" in expression:
            catalog["precision"], metric = "binary", "cosine"
        elif stored == "halfvec" and column_type is not None and column_type.kind.value == "vector":
            catalog["precision"] = "halfvec"
        catalog["distance"] = _DISTANCE[metric]
        catalog["method"] = info.method
        for key in ("m", "ef_construction", "lists"):
            if key in info.options:
                catalog[key] = int(info.options[key])
        if info.where:
            catalog["where"] = info.where
    model: dict[str, Any] = {}
    if declared is not None:
        opts = declared.vector_options
        if info.method == "vec0":
            model.update(method=opts.method, m=opts.m, ef_construction=opts.ef_construction, lists=opts.lists)
            if opts.precision == "halfvec" and catalog.get("precision") is None:
                model["precision"] = "halfvec"
        else:
            model["metadata_columns"] = opts.metadata_columns
        if catalog.get("precision") == "binary" and opts.precision == "binary":
            model["distance"] = opts.distance.value  # the catalog has hamming, whatever the re-ranking
        model["concurrently"] = opts.concurrently
    op = CreateVectorIndexOp(
        info.name, info.table, column or expression, schema=schema, column_type=column_type, **{**catalog, **model}
    )
    op.assumed = tuple(k for k, v in model.items() if v not in (INDEX_KNOBS[k], ()))
    return op
