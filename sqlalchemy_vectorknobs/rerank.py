"""Re-ordering a candidate list: ``mmr`` (maximal marginal relevance, diverse results) and
``rerank`` (exact re-ranking of a binary / halfvec index's candidates), with async variants.

    for doc, distance in vk.mmr(session, Doc.embedding, q, k=5, lambda_=0.5):
        ...
    for doc, distance in vk.rerank(session, Doc.embedding, q, k=10):
        ...
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import sqlalchemy as sa
from sqlalchemy.sql import ClauseElement

from .distance import Distance
from .exc import IncompatibleOperatorError, InvalidIndexError
from .index import VectorIndex
from .query import _needed_settings, _on_table, _resolve, knn_join, nearest
from .search import _number, _positive, _vector_setup

__all__ = ["RERANK_CANDIDATES_PER_K", "ammr", "arerank", "mmr", "mmr_order", "rerank", "rerank_query"]




def _vectors_and_rows(session: Any, stmt: Any, orm: bool) -> tuple[list[Any], np.ndarray, np.ndarray]:
    rows = session.execute(stmt).all()
    entities = [row[0] if orm else tuple(row[:-2]) for row in rows]
    distances = np.array([row[-2] for row in rows], dtype=np.float64)
    if not rows:
        return entities, distances, np.zeros((0, 0))
    vectors = np.stack([np.asarray(row[-1], dtype=np.float64) for row in rows])
    return entities, distances, vectors


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return cast("np.ndarray", np.divide(x, norms, out=np.zeros_like(x), where=norms > 0))


def mmr_order(vectors: np.ndarray, relevance: np.ndarray, k: int, lambda_: float) -> list[int]:
    """Greedy maximal marginal relevance: positions of ``k`` rows of ``vectors``.

    Each step picks the row maximising ``lambda_ * relevance - (1 - lambda_) * max cosine
    similarity to the rows already picked`` (the first pick: the most relevant); ties go to the
    earlier row.
    """
    n = len(relevance)
    if n == 0:
        return []
    unit = _unit(vectors)
    sims = unit @ unit.T
    chosen = np.zeros(n, dtype=bool)
    penalty = np.zeros(n)
    picked: list[int] = []
    for step in range(min(k, n)):
        score = lambda_ * relevance - (1.0 - lambda_) * penalty
        score[chosen] = -np.inf
        i = int(np.argmax(score))
        picked.append(i)
        chosen[i] = True
        penalty = sims[i].copy() if step == 0 else np.maximum(penalty, sims[i])
    return picked


def mmr(
    session: Any,
    column: Any,
    query: Any,
    k: int = 10,
    *,
    fetch_k: int | None = None,
    lambda_: float = 0.5,
    where: Any = None,
    distance: Distance | str | None = None,
) -> list[tuple[Any, float]]:
    """Diverse nearest neighbours by maximal marginal relevance: a list of ``(entity, distance)``.

    Fetches ``fetch_k`` (default ``4 * k``) candidates with :func:`nearest` (their vectors come
    back as numpy arrays), then picks ``k`` greedily by ``lambda_ * relevance - (1 - lambda_) *
    max cosine similarity to those already picked``. Relevance is the cosine similarity to the
    query: ``1 - distance`` when the distance is cosine, otherwise computed in numpy.
    ``lambda_=1`` is pure relevance and returns exactly ``nearest(column, query, k)``;
    ``lambda_=0`` maximises diversity::

        for doc, distance in vk.mmr(session, Doc.embedding, q, k=5, lambda_=0.5):
            ...
    """
    k = _positive("vk.mmr k", k)
    fetch_k = 4 * k if fetch_k is None else _positive("vk.mmr fetch_k", fetch_k)
    lambda_ = _number("vk.mmr lambda_", lambda_, 0.0, 1.0)
    if isinstance(query, ClauseElement):
        raise IncompatibleOperatorError("vk.mmr needs the query vector as a value, not a SQL expression.")
    col, entity, _ = _resolve(column)
    metric, _ix = _vector_setup(col, distance)
    # lambda_=1 is pure relevance: exactly nearest(k), the same statement (an approximate index
    # may order a longer candidate list differently).
    stmt = nearest(column, query, k if lambda_ == 1.0 else max(fetch_k, k), distance=metric, where=where)
    orm = not isinstance(entity, sa.Table)
    entities, distances, vectors = _vectors_and_rows(session, stmt.add_columns(column), orm)
    if lambda_ == 1.0:
        order = list(range(len(entities)))
    else:
        if metric is Distance.COSINE:
            relevance = 1.0 - distances
        else:
            relevance = _unit(vectors) @ _unit(np.asarray(col.type.check(query), dtype=np.float64))
        order = mmr_order(vectors, relevance, k, lambda_)
    return [(entities[i], float(distances[i])) for i in order]


async def ammr(session: Any, column: Any, query: Any, k: int = 10, **kw: Any) -> list[tuple[Any, float]]:
    """:func:`mmr` on an ``AsyncSession``."""
    return cast("list[tuple[Any, float]]", await session.run_sync(lambda s: mmr(s, column, query, k, **kw)))


def _coarse_index(col: Any, metric: Distance | None) -> VectorIndex:
    found = [
        ix
        for ix in col.table.indexes
        if isinstance(ix, VectorIndex)
        and ix.vector_column is col
        and ix.vector_options.precision is not None
        and (metric is None or ix.vector_options.distance is metric)
    ]
    found.sort(key=lambda ix: (ix.vector_options.precision != "binary", ix.declared))
    if not found:
        wanted = f" for {metric.value} distance" if metric is not None else ""
        raise InvalidIndexError(
            f"vk.rerank needs a VectorIndex with precision='binary' or 'halfvec' on '{col.table.name}.{col.name}'{wanted}; "
            "without one, vk.nearest is already exact."
        )
    return found[0]


#: ``rerank``'s candidates per result when none are given: measured recall@10 on 100,000 x 384
#: clustered vectors with a binary index (docs/search.md, "Re-ranking").
RERANK_CANDIDATES_PER_K = 40


def rerank_query(
    column: Any,
    query: Any,
    k: int = 10,
    *,
    candidates: int | None = None,
    distance: Distance | str | None = None,
    where: Any = None,
) -> sa.Select[Any]:
    """The ``Select`` of ``(entity, distance)`` that :func:`rerank` runs: ``candidates`` rows from
    the column's binary (or halfvec) index, re-ranked by exact ``distance``, nearest first."""
    col, entity, pk = _resolve(column)
    k = _positive("vk.rerank k", k)
    n = RERANK_CANDIDATES_PER_K * k if candidates is None else _positive("vk.rerank candidates", candidates)
    n = max(n, k)
    metric = Distance.parse(distance) if distance is not None else None
    index = _coarse_index(col, metric)
    metric = index.vector_options.distance
    if metric not in col.type.metrics:
        raise IncompatibleOperatorError(f"{col.type.subject} has no {metric.value} distance.")
    stmt, dist = knn_join(col, entity, pk, query, k, metric=metric, where=_on_table(where, entity, col.table), index=index, candidates=n)
    stmt = stmt.order_by(dist, pk)
    # An HNSW scan returns at most ef_search rows: let it propose all the candidates.
    needs = {**_needed_settings(k, where, index), "ef_search": min(max(n, 40), 1000), "iterative_scan": "relaxed_order"}
    return stmt.execution_options(vector_search_defaults=needs)


def rerank(
    session: Any,
    column: Any,
    query: Any,
    k: int = 10,
    *,
    candidates: int | None = None,
    distance: Distance | str | None = None,
    where: Any = None,
) -> list[tuple[Any, float]]:
    """Exact re-ranking of an approximate index's candidates: a list of ``(entity, distance)``.

    ``candidates`` rows (default ``40 * k``) come from the column's ``precision="binary"`` (or
    ``"halfvec"``) :class:`VectorIndex` — HNSW on ``binary_quantize`` on PostgreSQL, a ``bit[]``
    vec0 table on SQLite — and are re-ranked in SQL by the exact ``distance`` (default: the
    index's). Use it when the column also has a full-precision index (which ``nearest`` would
    prefer) or to choose the candidate count::

        for doc, distance in vk.rerank(session, Doc.embedding, q, k=10, candidates=400):
            ...
    """
    stmt = rerank_query(column, query, k, candidates=candidates, distance=distance, where=where)
    orm = not isinstance(_resolve(column)[1], sa.Table)
    return [(row[0] if orm else tuple(row[:-1]), float(row[-1])) for row in session.execute(stmt)]


async def arerank(session: Any, column: Any, query: Any, k: int = 10, **kw: Any) -> list[tuple[Any, float]]:
    """:func:`rerank` on an ``AsyncSession``."""
    return cast("list[tuple[Any, float]]", await session.run_sync(lambda s: rerank(s, column, query, k, **kw)))
