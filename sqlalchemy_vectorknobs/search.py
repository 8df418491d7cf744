"""Search on top of ``nearest``: ``near_text``, ``text_search`` and ``hybrid_search`` (full text
fused with vector similarity in one SQL statement), with ``VectorSearchResult`` rows (``mmr`` and
``rerank`` live in ``rerank.py``).

    stmt = vk.hybrid_search(Doc, text="copy a file", k=10)
    for hit in vk.search_results(session, stmt):
        print(hit.rank, hit.score, hit.distance, hit.entity.title)

See ``docs/search.md`` for the exact scoring (RRF and weighted fusion, normalisation, ties).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, NamedTuple, cast

import numpy as np
import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import aliased
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.visitors import InternalTraversal

from ._blocking import run_blocking
from .comparator import _BY_METRIC, VectorDistance
from .dialects.base import subquery_sql
from .distance import Distance
from .exc import IncompatibleOperatorError, InvalidSearchSettingError
from .fulltext import MATCH_MODES, TextSearch, check_config, find_fulltext_index
from .index import VectorIndex
from .query import MAX_LIMIT, VectorKnn, _needed_settings, _resolve, check_k, check_query, find_index, nearest
from .statement import SearchParts, SearchSelect, search_statement
from .types import VectorType

__all__ = [
    "FUSIONS",
    "HybridFusion",
    "VectorSearchResult",
    "anear_text",
    "asearch_results",
    "hybrid_search",
    "near_text",
    "search_results",
    "text_search",
]

FUSIONS = ("rrf", "weighted")


class VectorSearchResult(NamedTuple):
    """One search hit: the entity, its distance to the query vector, its score (higher is better;
    None for plain nearest-neighbour rows) and its 1-based rank."""

    entity: Any
    distance: float | None
    score: float | None
    rank: int


def search_results(session: Any, stmt: Any) -> list[VectorSearchResult]:
    """Run a ``hybrid_search`` (or ``nearest``, ``near_text``, ``text_search``) statement and wrap its rows::

        hits = vk.search_results(session, vk.hybrid_search(Doc, text="parse json", k=5))
        best = hits[0].entity
    """
    return _wrap(session.execute(stmt).all())


async def asearch_results(session: Any, stmt: Any) -> list[VectorSearchResult]:
    """:func:`search_results` for an ``AsyncSession``."""
    return _wrap((await session.execute(stmt)).all())


def _wrap(rows: Sequence[Any]) -> list[VectorSearchResult]:
    out = []
    for i, row in enumerate(rows, 1):
        keys = row._fields
        if "rank" in keys and "score" in keys:  # hybrid_search(details=True)
            out.append(VectorSearchResult(row[0], row.distance, row.score, row.rank))
        elif "score" in keys:  # text_search, hybrid_search
            out.append(VectorSearchResult(row[0], None, row.score, i))
        else:  # nearest / near_text
            out.append(VectorSearchResult(row[0], row.distance, None, i))
    return out


# --------------------------------------------------------------------------- argument checks


def _positive(name: str, value: Any) -> int:
    return check_k(name, value)


def _number(name: str, value: Any, low: float, high: float = float("inf")) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high or value != value:
        upper = "" if high == float("inf") else f" to {high:g}"
        raise InvalidSearchSettingError(f"{name}={value!r} is not valid; it takes a number from {low:g}{upper}.")
    return float(value)


def _mapper(entity: Any, what: str) -> Any:
    insp = sa.inspect(entity, raiseerr=False)
    mapper = getattr(insp, "mapper", None)
    if mapper is None or getattr(insp, "is_aliased_class", False):
        raise InvalidSearchSettingError(f"{what} needs a mapped class such as Doc, got {entity!r}.")
    return mapper


def _table_column(table: Any, mapper: Any, value: Any, what: str) -> Any:
    """The ``table`` column named by a column name, Column or mapped attribute."""
    if isinstance(value, str):
        prop = mapper.attrs.get(value) if value in mapper.attrs else None
        column = prop.columns[0] if prop is not None and hasattr(prop, "columns") else table.c.get(value)
    elif hasattr(value, "property") and hasattr(value.property, "columns"):
        column = value.property.columns[0]
    else:
        column = value
    if not isinstance(column, sa.Column) or column.table is not table:
        raise InvalidSearchSettingError(f"{what} {value!r} is not a column of table '{table.name}'.")
    return column


def _vector_column(table: Any, mapper: Any, value: Any) -> Any:
    if value is not None:
        column = _table_column(table, mapper, value, "vector_column")
        if not isinstance(column.type, VectorType):
            raise InvalidSearchSettingError(f"vector_column '{table.name}.{column.name}' is not a vector column.")
        return column
    found = [c for c in table.columns if isinstance(c.type, VectorType)]
    if len(found) != 1:
        names = ", ".join(c.name for c in found) or "none"
        raise InvalidSearchSettingError(
            f"Table '{table.name}' has {len(found)} vector columns ({names}); say which to search with vector_column=."
        )
    return found[0]


def _text_columns(table: Any, mapper: Any, value: Any) -> list[Any]:
    if value is None:
        index = find_fulltext_index(table, None)
        if index is None:
            raise InvalidSearchSettingError(
                f"Table '{table.name}' has no single vk.FullTextIndex to take the text columns from; pass text_columns=."
            )
        return index.text_columns
    values = [value] if isinstance(value, str) or not isinstance(value, (list, tuple)) else list(value)
    if not values:
        raise InvalidSearchSettingError("text_columns must name at least one text column.")
    return [_table_column(table, mapper, v, "text_columns entry") for v in values]


# --------------------------------------------------------------------------- embedding the query


def _embedded_spec(column: Any, what: str) -> Any:
    from .embedding.column import specs_of

    for spec in specs_of(column.table):
        if spec.column is column:
            return spec
    raise IncompatibleOperatorError(
        f"{what} cannot embed the text: '{column.table.name}.{column.name}' is not a vk.embedded_column, so it has "
        "no embedder; pass a vector instead (vk.nearest, or hybrid_search(vector=...))."
    )


def _embed(spec: Any, text: str) -> np.ndarray:
    embedder = spec.embedder
    aembed = getattr(embedder, "aembed", None)
    out = run_blocking(embedder.embed, [text], awaitable_factory=(lambda: aembed([text])) if aembed is not None else None)
    return _first_row(spec, out)


async def _aembed(spec: Any, text: str) -> np.ndarray:
    embedder = spec.embedder
    aembed = getattr(embedder, "aembed", None)
    out = await aembed([text]) if aembed is not None else await asyncio.to_thread(embedder.embed, [text])
    return _first_row(spec, out)


def _first_row(spec: Any, out: Any) -> np.ndarray:
    from .embedding.embedders import check_embeddings

    return cast("np.ndarray", check_embeddings(spec.embedder, out, 1, spec.column.type.dim)[0])


def _check_text(text: Any, what: str) -> str:
    if not isinstance(text, str):
        raise InvalidSearchSettingError(f"{what} text must be a string, got {type(text).__name__}.")
    return text


def near_text(
    column: Any,
    text: str,
    k: int = 10,
    *,
    distance: Distance | str | None = None,
    where: Any = None,
    max_distance: float | None = None,
    candidates: int | None = None,
) -> sa.Select[Any]:
    """``vk.nearest`` for a text: embeds ``text`` with the column's embedder (an ``embedded_column``)
    and returns exactly what :func:`nearest` returns, a ``Select`` of ``(entity, distance)``::

        for doc, distance in session.execute(vk.near_text(Doc.embedding, "copy a file", k=5)):
            ...

    The embedding runs through ``run_blocking`` (off the event loop inside an ``AsyncSession``'s
    greenlet); in plain ``async`` code use :func:`anear_text`.
    """
    col = _resolve(column)[0]
    spec = _embedded_spec(col, "vk.near_text")
    vector = _embed(spec, _check_text(text, "vk.near_text"))
    return nearest(column, vector, k, distance=distance, where=where, max_distance=max_distance, candidates=candidates)


async def anear_text(
    column: Any,
    text: str,
    k: int = 10,
    *,
    distance: Distance | str | None = None,
    where: Any = None,
    max_distance: float | None = None,
    candidates: int | None = None,
) -> sa.Select[Any]:
    """:func:`near_text` for async code: the embedder's ``aembed`` is awaited (or ``embed`` runs in a thread)."""
    col = _resolve(column)[0]
    spec = _embedded_spec(col, "vk.anear_text")
    vector = await _aembed(spec, _check_text(text, "vk.anear_text"))
    return nearest(column, vector, k, distance=distance, where=where, max_distance=max_distance, candidates=candidates)


# --------------------------------------------------------------------------- full text


def _text_search_element(
    table: Any, columns: list[Any], text: str, limit: int, match: str, config: str | None, where: Any
) -> TextSearch:
    if match not in MATCH_MODES:
        raise InvalidSearchSettingError(f"match={match!r} is not valid; use 'websearch' or 'any'.")
    index = find_fulltext_index(table, columns)
    if config is None:
        config = index.config if index is not None else "english"
    else:
        check_config(config, "Full-text search")
        if index is not None and index.config != config:
            index = None  # the index was built for another configuration
    if isinstance(where, str):
        where = sa.text(where)
    return TextSearch(columns, text, limit, config=config, match=match, where=where, index=index)


def text_search(
    entity: Any,
    text: str,
    k: int = 10,
    *,
    text_columns: Any = None,
    where: Any = None,
    match: str = "websearch",
    config: str | None = None,
) -> sa.Select[Any]:
    """A ``Select`` of ``(entity, score)``: the ``k`` best full-text matches, best first.

    PostgreSQL ranks with ``ts_rank_cd`` (``websearch_to_tsquery``, or ``to_tsquery`` of the
    words OR-ed for ``match="any"``); SQLite with ``-bm25()`` of the FTS5 table of a
    :class:`FullTextIndex` (required there). Ties go to the lower primary key::

        for doc, score in session.execute(vk.text_search(Doc, '"shell utilities" copy', k=5)):
            ...
    """
    mapper = _mapper(entity, "vk.text_search")
    table = mapper.local_table
    k = _positive("vk.text_search k", k)
    columns = _text_columns(table, mapper, text_columns)
    element = _text_search_element(table, columns, _check_text(text, "vk.text_search"), k, match, config, where)
    found = element.table_valued(sa.column("id", element.key_column.type), sa.column("score", sa.Float))
    pk = getattr(entity, mapper.get_property_by_column(element.key_column).key)
    score = sa.cast(found.c.score, sa.Float)  # ts_rank_cd's real, as the double hybrid_search fuses
    stmt = sa.select(entity, score.label("score")).join(found, pk == found.c.id).order_by(found.c.score.desc(), pk)
    return search_statement(stmt, SearchParts("vk.text_search", table, (), (element.vk_token,), entity=entity))


# --------------------------------------------------------------------------- hybrid


def _vector_setup(col: Any, distance: Distance | str | None) -> tuple[Distance, VectorIndex | None]:
    metric = Distance.parse(distance) if distance is not None else None
    index = find_index(col, metric)
    if metric is None:
        metric = index.vector_options.distance if index is not None else Distance.COSINE
    if metric not in col.type.metrics:
        allowed = ", ".join(sorted(m.value for m in col.type.metrics))
        raise IncompatibleOperatorError(
            f"{col.type.subject} is a {type(col.type).__name__}, which has no {metric.value} distance; its distances are {allowed}."
        )
    return metric, index


def _float(value: float) -> Any:
    """A float constant in SQL, typed double precision (PostgreSQL would read ``0.5`` as numeric)."""
    return sa.cast(sa.literal_column(repr(float(value))), sa.Float)


def _normalised(value: Any, low: Any, high: Any, *, reverse: bool) -> Any:
    """Min-max normalisation within a candidate list; 1 for every row when all values are equal."""
    scaled = (value - low) / (high - low)
    return sa.case((high > low, (_float(1) - scaled) if reverse else scaled), else_=_float(1))


class HybridFusion(FunctionElement[Any]):
    """``(id, distance, score)`` of the union of the full-text and vector candidate lists, scored by
    the fusion. Only its parts make the cache key; the CTEs are built when it is compiled (once
    per cached statement), so a hybrid query costs little more Python than ``nearest``."""

    name = "vk_hybrid_fusion"
    inherit_cache = True
    #: its rows are a search's results: ``.where()`` on them stays outside (statement.py)
    vk_search_element = True
    _traverse_internals = FunctionElement._traverse_internals + [
        ("knn", InternalTraversal.dp_clauseelement),
        ("text_search", InternalTraversal.dp_clauseelement),
        ("fusion", InternalTraversal.dp_string),
        ("rrf_k", InternalTraversal.dp_plain_obj),
        ("weights", InternalTraversal.dp_plain_obj),
    ]

    def __init__(self, knn: VectorKnn, text_search: TextSearch, fusion: str, rrf_k: float, weights: tuple[float, float]) -> None:
        self.knn = knn
        self.text_search = text_search
        self.fusion = fusion
        self.rrf_k = rrf_k
        self.weights = weights
        super().__init__()

    def fused_select(self) -> sa.Select[Any]:
        """Two CTEs hold the candidate lists; each list scores its own rows (its part of the fused
        score) and ``GROUP BY`` adds up the parts of a row both lists found (no join)."""
        key_type = self.text_search.key_column.type
        near = self.knn.table_valued(sa.column("id", key_type), sa.column("distance", sa.Float))
        found = self.text_search.table_valued(sa.column("id", key_type), sa.column("score", sa.Float))
        # MATERIALIZED: each list is computed once and on its own (inlined, SQLite would hand the
        # ranking window's ORDER BY to the vec0 table, which refuses it).
        vec = sa.select(near.c.id, near.c.distance).cte("vk_vector").prefix_with("MATERIALIZED")
        txt = sa.select(found.c.id, sa.cast(found.c.score, sa.Float).label("score")).cte("vk_text").prefix_with("MATERIALIZED")
        if self.fusion == "rrf":
            k = _float(self.rrf_k)
            vec_rank = sa.func.row_number().over(order_by=(vec.c.distance, vec.c.id))
            txt_rank = sa.func.row_number().over(order_by=(txt.c.score.desc(), txt.c.id))
            vec_part = _float(1) / sa.cast(k + vec_rank, sa.Float)
            txt_part = _float(1) / sa.cast(k + txt_rank, sa.Float)
        else:
            d_low, d_high = sa.func.min(vec.c.distance).over(), sa.func.max(vec.c.distance).over()
            t_low, t_high = sa.func.min(txt.c.score).over(), sa.func.max(txt.c.score).over()
            vec_part = _float(self.weights[1]) * _normalised(vec.c.distance, d_low, d_high, reverse=True)
            txt_part = _float(self.weights[0]) * _normalised(txt.c.score, t_low, t_high, reverse=False)
        both = sa.union_all(
            sa.select(txt.c.id, sa.cast(sa.null(), sa.Float).label("distance"), txt_part.label("part")),
            sa.select(vec.c.id, vec.c.distance, vec_part.label("part")),
        ).subquery("vk_both")
        return sa.select(
            both.c.id, sa.func.max(both.c.distance).label("distance"), sa.func.sum(both.c.part).label("score")
        ).group_by(both.c.id)


@compiles(HybridFusion)
def _compile_fusion(element: HybridFusion, compiler: Any, **kw: Any) -> str:
    return subquery_sql(compiler, element.fused_select(), **kw)


_ALIASES: dict[Any, Any] = {}


def _entity_alias(entity: Any) -> Any:
    """``aliased(entity, name="entity")``, made once per class: the rows' ``.entity`` attribute."""
    alias = _ALIASES.get(entity)
    if alias is None:
        alias = _ALIASES.setdefault(entity, aliased(entity, name="entity"))
    return alias


def hybrid_search(
    entity: Any,
    *,
    text: str,
    vector: Any = None,
    text_columns: Any = None,
    vector_column: Any = None,
    k: int = 10,
    fusion: str = "rrf",
    rrf_k: float = 60,
    weights: tuple[float, float] = (0.5, 0.5),
    where: Any = None,
    candidates: int | None = None,
    max_distance: float | None = None,
    min_score: float | None = None,
    distance: Distance | str | None = None,
    match: str = "websearch",
    config: str | None = None,
    details: bool = False,
) -> sa.Select[Any]:
    """Full-text and vector search fused in one SQL statement: a ``Select`` of
    ``(entity, score)``, best (highest score) first, at most ``k`` rows; with ``details=True``
    a ``Select`` of ``(entity, distance, score, rank)``.

    Two candidate lists, each of ``candidates`` rows (default ``max(4 * k, 40)``), both filtered
    by ``where``: the best full-text matches of ``text`` over ``text_columns`` (as
    :func:`text_search`) and the nearest rows to ``vector`` on ``vector_column`` (as
    :func:`nearest`, through its vector index). ``vector=None`` embeds ``text`` with the
    column's embedder (an ``embedded_column``). Each list ranks its rows 1, 2, ... (ties by
    primary key); the union of both lists is scored by ``fusion``:

    * ``"rrf"``: ``1 / (rrf_k + text rank) + 1 / (rrf_k + vector rank)``, a missing rank adding 0;
    * ``"weighted"``: ``weights[0] * t + weights[1] * (1 - d)``, where ``t`` is the text score
      and ``d`` the distance, each min-max normalised within its own candidate list (1 for every
      row when a list's values are all equal), a list the row is missing from adding 0.

    ``max_distance`` and ``min_score`` drop rows after fusion. Ties in score go to the lower
    primary key. ``details=True`` adds each row's ``distance`` to the query vector (computed for
    text-only rows too) and its ``rank``, numbering the returned rows from 1::

        stmt = vk.hybrid_search(Doc, text="read a csv file", k=5, where=Doc.lang == "en")
        for doc, score in session.execute(stmt):
            ...
        for doc, distance, score, rank in session.execute(vk.hybrid_search(Doc, text="csv", details=True)):
            ...
    """
    mapper = _mapper(entity, "vk.hybrid_search")
    table = mapper.local_table
    k = _positive("vk.hybrid_search k", k)
    n = max(4 * k, 40) if candidates is None else _positive("vk.hybrid_search candidates", candidates)
    if fusion not in FUSIONS:
        raise InvalidSearchSettingError(f"vk.hybrid_search fusion={fusion!r} is not valid; use 'rrf' or 'weighted'.")
    rrf_k = _number("vk.hybrid_search rrf_k", rrf_k, 0)
    if not isinstance(weights, (tuple, list)) or len(weights) != 2:
        raise InvalidSearchSettingError(f"vk.hybrid_search weights={weights!r} is not valid; give two numbers (text, vector).")
    w_text, w_vec = (_number("vk.hybrid_search weights entry", w, 0) for w in weights)
    _check_text(text, "vk.hybrid_search")
    if not isinstance(details, bool):
        raise InvalidSearchSettingError(f"vk.hybrid_search details={details!r} is not valid; pass True or False.")
    col = _vector_column(table, mapper, vector_column)
    columns = _text_columns(table, mapper, text_columns)
    metric, index = _vector_setup(col, distance)
    if vector is None:
        vector = _embed(_embedded_spec(col, "vk.hybrid_search"), text)
    q: Any = vector if isinstance(vector, ClauseElement) else sa.literal(check_query(col, vector, metric, "vk.hybrid_search"), col.type)
    if isinstance(where, str):
        where = sa.text(where)
    pk_col = list(table.primary_key.columns)
    if len(pk_col) != 1:
        raise IncompatibleOperatorError(
            f"Table '{table.name}' has {len(pk_col)} primary key columns; vk.hybrid_search needs exactly one."
        )

    # The vector candidates come from the KNN subquery nearest() uses (vector index, exact re-rank),
    # which leaves out rows without a (searchable) vector; so do the text candidates.
    knn = VectorKnn(col, q, n, operator=_BY_METRIC[metric], where=where, index=index, candidates=min(max(10 * n, 100), MAX_LIMIT))
    found = _text_search_element(table, columns, text, n, match, config, sa.and_(*_has_vector(col, metric), *([where] if where is not None else [])))
    fused = HybridFusion(knn, found, fusion, rrf_k, (w_text, w_vec)).table_valued(
        sa.column("id", pk_col[0].type), sa.column("distance", sa.Float), sa.column("score", sa.Float)
    )

    ent = _entity_alias(entity)
    pk = getattr(ent, mapper.get_property_by_column(pk_col[0]).key)
    vector_attr = getattr(ent, mapper.get_property_by_column(col).key)
    exact = VectorDistance(vector_attr.__clause_element__(), q, _BY_METRIC[metric])
    dist = sa.func.coalesce(fused.c.distance, exact, type_=sa.Float)
    score = fused.c.score.label("score")
    selected: tuple[Any, ...] = (
        (dist.label("distance"), score, sa.func.row_number().over(order_by=(fused.c.score.desc(), pk)).label("rank"))
        if details
        else (score,)
    )
    stmt = sa.select(ent, *selected).join_from(ent, fused, pk == fused.c.id)
    if max_distance is not None:
        stmt = stmt.where(dist <= _number("vk.hybrid_search max_distance", max_distance, float("-inf")))
    if min_score is not None:
        stmt = stmt.where(fused.c.score >= _number("vk.hybrid_search min_score", min_score, float("-inf")))
    stmt = stmt.order_by(fused.c.score.desc(), pk).limit(k)
    return _hybrid_statement(stmt, entity, table, fused, knn, found, index, n)


def _has_vector(col: Any, metric: Distance) -> list[Any]:
    """Conditions on rows that have a searchable vector: not NULL, and a direction under cosine."""
    from .dialects.base import cosine_direction

    return [col.is_not(None), *([cosine_direction(col)] if metric is Distance.COSINE else [])]


def _hybrid_statement(
    stmt: Any, entity: Any, table: Any, fused: Any, knn: VectorKnn, found: TextSearch, index: VectorIndex | None, n: int
) -> SearchSelect:
    """``stmt`` with the knobs its vector candidates need, taking ``.where()`` criteria on ``table``
    into both candidate lists."""

    def with_settings(stmt: Any, pushed: Any) -> Any:
        where = knn.where if pushed is None else pushed if knn.where is None else sa.and_(knn.where, pushed)
        needs = _needed_settings(n, where, index)
        return stmt.execution_options(vector_search_defaults=needs) if needs else stmt

    parts = SearchParts("vk.hybrid_search", table, (), (knn.vk_token, found.vk_token), with_settings, entity=entity)
    return search_statement(with_settings(stmt, None), parts)
