"""Embedded columns over reflected tables: ``stale`` / ``backfill`` for databases without ORM models.

``reflect_embedded_column`` reads a table from the database and declares on it what
``vk.embedded_column`` declares on a model (the vector, its source text columns, the embedder,
and the ``<vector>_model`` / ``<vector>_hash`` companion columns), so the same machinery finds
and fixes stale rows: the hash the database computes in SQL, the fingerprint, the guarded keyset
batches of ``vk.backfill``::

    engine = vk.create_engine("sqlite:///docs.db")
    docs = vk.reflect_embedded_column(engine, "docs", ["title", "content"], "embedding",
                                      vk.HashingEmbedder(64), add_columns=True)
    print(vk.count_stale(engine, docs))        # [docs.embedding: 120 stale of 500 rows (...)]
    with Session(engine) as session:
        vk.backfill(session, docs, batch_size=100)
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from . import dialects
from .embedding.column import EmbeddedColumn, EmbeddingConfigError, register_spec
from .embedding.embedders import HashingEmbedder, resolve_embedder
from .exc import DimensionMismatchError
from .types import Vector, VectorType

__all__ = ["StaleCounts", "count_stale", "embedder_from_spec", "reflect_embedded_column", "reflect_table"]


def embedder_from_spec(spec: str, *, dim: int | None = None) -> Any:
    """An embedder from its command-line spelling.

    ``"minilm"`` (the offline all-MiniLM-L6-v2), ``"hashing"`` / ``"hashing:<dim>"``
    (:class:`vk.HashingEmbedder`; without a dimension it takes ``dim``), or ``"module:attr"``:
    an Embedder instance, or a class / factory called with no arguments.
    """
    text = spec.strip()
    name, _, arg = text.partition(":")
    if name.lower() == "hashing":
        size = arg or (str(dim) if dim is not None else "")
        if not size.isdigit() or int(size) < 1:
            raise EmbeddingConfigError(
                f"Embedder {spec!r} needs a dimension: write 'hashing:<dim>' (e.g. hashing:384) or give the vector's dimension."
            )
        return HashingEmbedder(int(size))
    if not arg:
        try:
            return resolve_embedder(text)
        except ValueError:
            raise EmbeddingConfigError(
                f"Embedder {spec!r} is not known; use minilm, hashing[:dim] or module:attr (an Embedder, or a class making one)."
            ) from None
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target: Any = importlib.import_module(name)
    except ImportError as err:
        raise EmbeddingConfigError(f"Embedder {spec!r} names module {name!r}, which cannot be imported ({err}).") from err
    for part in arg.split("."):
        if not hasattr(target, part):
            raise EmbeddingConfigError(f"Embedder {spec!r}: module {name!r} has no attribute {arg!r}.")
        target = getattr(target, part)
    if isinstance(target, type) or not hasattr(target, "embed"):
        if not callable(target):
            raise EmbeddingConfigError(f"Embedder {spec!r} is neither an Embedder nor a class or factory making one.")
        target = target()
    return resolve_embedder(target)


def _table_name(table: str, schema: str | None) -> str:
    return table if schema is None else f"{schema}.{table}"


def reflect_table(bind: Engine | Connection, table: str, *, schema: str | None = None) -> sa.Table:
    """``table`` read from the database (vector columns typed ``vk.Vector`` & co. on a ``vk`` engine)."""
    try:
        return sa.Table(table, sa.MetaData(), autoload_with=bind, schema=schema)
    except sa.exc.NoSuchTableError:
        raise EmbeddingConfigError(f"Table {_table_name(table, schema)!r} does not exist in the database.") from None


def _add_column_sql(conn: Connection, table: sa.Table, name: str, type_: Any) -> str:
    q = conn.dialect.identifier_preparer
    return f"ALTER TABLE {q.format_table(table)} ADD COLUMN {q.quote(name)} {type_.compile(dialect=conn.dialect)}"


def reflect_embedded_column(
    bind: Engine | Connection,
    table: str,
    source: str | Sequence[str],
    vector: str,
    embedder: Any,
    *,
    schema: str | None = None,
    template: str | None = None,
    batch_size: int = 256,
    add_columns: bool = False,
    add_vector: bool = False,
    dim: int | None = None,
    model_column: str | None = None,
    hash_column: str | None = None,
) -> sa.Table:
    """Reflect ``table`` and declare ``vector`` on it as an embedded column of ``source``.

    The returned ``Table`` is what ``vk.stale``, ``vk.stale_condition``, ``vk.backfill`` and
    :func:`count_stale` take in place of a model. ``embedder`` is an Embedder or a spec for
    :func:`embedder_from_spec`. Missing pieces are errors unless asked for:
    ``add_vector=True`` adds the vector column (``vk.Vector(dim)``; ``dim`` defaults to the
    embedder's), ``add_columns=True`` adds the ``<vector>_model`` / ``<vector>_hash`` companion
    columns. Everything is checked before any ``ALTER TABLE`` runs; given an Engine the DDL is
    committed at once, given a Connection it joins the caller's transaction.
    """
    if isinstance(bind, Engine):
        with bind.connect() as conn:
            result = reflect_embedded_column(
                conn, table, source, vector, embedder, schema=schema, template=template, batch_size=batch_size,
                add_columns=add_columns, add_vector=add_vector, dim=dim, model_column=model_column, hash_column=hash_column,
            )
            conn.commit()
            return result
    conn = bind
    sources = (source,) if isinstance(source, str) else tuple(source)
    reflected = reflect_table(conn, table, schema=schema)
    where = _table_name(table, schema)
    if not sources:
        raise EmbeddingConfigError("An embedded column needs at least one source text column.")
    for name in sources:
        if name not in reflected.c:
            raise EmbeddingConfigError(
                f"Table {where!r} has no column {name!r}; its columns are {', '.join(c.name for c in reflected.c)}."
            )
    if isinstance(embedder, str):
        existing = reflected.c[vector].type if vector in reflected.c else None
        embedder = embedder_from_spec(embedder, dim=dim if dim is not None else getattr(existing, "dim", None))
    embedder = resolve_embedder(embedder)
    ddl: list[str] = []
    if vector in reflected.c:
        type_ = reflected.c[vector].type
        if not isinstance(type_, VectorType):
            raise EmbeddingConfigError(f"Column '{where}.{vector}' is {type_!r}, not a vector column.")
        if dim is not None and type_.dim is not None and dim != type_.dim:
            raise DimensionMismatchError(f"Column '{where}.{vector}' holds {type_.dim} dimensions, not the {dim} asked for.")
    elif not add_vector:
        raise EmbeddingConfigError(
            f"Table {where!r} has no column {vector!r}; add it (command line: --add-column --dim N) or name an existing vector column."
        )
    else:
        size = dim if dim is not None else embedder.dim
        if size is None:
            raise EmbeddingConfigError(f"Adding column '{where}.{vector}' needs its dimension; give dim= (--dim N).")
        type_ = Vector(size)
        ddl.extend(dialects.for_dialect(conn.dialect).extension_sql(True, None, conn.dialect.identifier_preparer))
        ddl.append(_add_column_sql(conn, reflected, vector, type_))
    if embedder.dim is not None and type_.dim is not None and embedder.dim != type_.dim:
        raise DimensionMismatchError(
            f"Embedder '{embedder.name}' produces {embedder.dim} dimensions but column '{where}.{vector}' holds {type_.dim}."
        )
    companions = ((model_column or f"{vector}_model", sa.String(255)), (hash_column or f"{vector}_hash", sa.String(64)))
    missing = [(name, t) for name, t in companions if name not in reflected.c]
    if missing and not add_columns:
        raise EmbeddingConfigError(
            f"Table {where!r} lacks the companion column(s) {', '.join(repr(n) for n, _ in missing)} that record each "
            "vector's model and text hash; add them (command line: --add-columns)."
        )
    ddl.extend(_add_column_sql(conn, reflected, name, t) for name, t in missing)
    if ddl:
        for sql in ddl:
            conn.exec_driver_sql(sql)
        reflected = reflect_table(conn, table, schema=schema)
    spec = EmbeddedColumn(type_, sources, embedder, template, batch_size, "raise", "deferred", model_column, hash_column)
    spec.column = reflected.c[vector]
    spec.check()
    register_spec(reflected, spec)
    return reflected


@dataclass(frozen=True)
class StaleCounts:
    """How many rows of one embedded column are stale, and why (each stale row counted once).

    ``missing``: no vector yet. ``other_model``: a vector made by another model or template.
    ``changed_text``: a vector of this model, made from other text than the row holds now.
    """

    column: str
    rows: int
    missing: int
    other_model: int
    changed_text: int

    @property
    def stale(self) -> int:
        return self.missing + self.other_model + self.changed_text

    def __str__(self) -> str:
        return (
            f"{self.column}: {self.stale} stale of {self.rows} row(s) ({self.missing} missing, "
            f"{self.other_model} other model, {self.changed_text} changed text)"
        )


def count_stale(bind: Any, target: Any) -> list[StaleCounts]:
    """Count the stale rows of ``target`` (a model, ``Model.column`` or a table from
    :func:`reflect_embedded_column`), per embedded column, in one query each.

    ``bind`` is an Engine, Connection or Session. The rows counted are exactly those
    ``vk.stale(target)`` selects.
    """
    from .embedding.maintenance import _condition, _names, _specs

    _, specs = _specs(target)
    if isinstance(bind, Engine):
        with bind.connect() as conn:
            return count_stale(conn, target)
    conn = bind if isinstance(bind, Connection) else bind.connection()
    out = []
    for spec in specs:
        vec, model = spec.bound_column, spec.model_column
        stale = _condition(spec, _names(spec), spec.fingerprint)
        fp = spec.fingerprint

        def tally(cond: sa.ColumnElement[bool]) -> Any:
            return sa.func.coalesce(sa.func.sum(sa.case((cond, 1), else_=0)), 0)

        q = sa.select(
            sa.func.count(),
            tally(sa.and_(stale, vec.is_(None))),
            tally(sa.and_(stale, vec.is_not(None), model.is_distinct_from(fp))),
            tally(sa.and_(stale, vec.is_not(None), model.is_not_distinct_from(fp))),
        ).select_from(spec.table)
        rows, missing, other, changed = conn.execute(q).one()
        out.append(StaleCounts(spec.qualified_name, int(rows), int(missing), int(other), int(changed)))
    return out
