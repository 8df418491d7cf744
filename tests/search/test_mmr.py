"""vk.mmr equals a numpy reference of greedy maximal marginal relevance; lambda_=1 is nearest."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

import sqlalchemy_vectorknobs as vk
from sqlalchemy_vectorknobs.rerank import mmr

from ..conftest import Backend
from .conftest import DIM, EMBEDDER, SearchDoc
from .test_hybrid import QUERIES


def candidates_reference(conn: sa.Connection, dialect: str, q: np.ndarray, fetch_k: int, kind: str | None) -> list[tuple[int, float, np.ndarray]]:
    """(id, distance, vector) of the fetch_k nearest rows by the dialect's own cosine distance, ties by id."""
    fn = "embedding <=> :q" if dialect == "postgresql" else "vec_distance_cosine(embedding, :q)"
    where = " WHERE kind = :kind" if kind else ""
    stmt = sa.text(f"SELECT id, {fn} AS d, embedding FROM search_doc{where}").bindparams(sa.bindparam("q", type_=vk.Vector(DIM)))
    stmt = stmt.columns(sa.column("id", sa.Integer), sa.column("d", sa.Float), sa.column("embedding", vk.Vector(DIM)))
    rows = conn.execute(stmt, {"q": q, **({"kind": kind} if kind else {})}).all()
    rows.sort(key=lambda r: (r[1], r[0]))
    return [(int(i), float(d), np.asarray(v, dtype=np.float64)) for i, d, v in rows[:fetch_k]]


def mmr_reference(cands: list[tuple[int, float, np.ndarray]], k: int, lambda_: float) -> list[int]:
    """Textbook greedy MMR with cosine similarity, one candidate at a time."""
    unit = [v / np.linalg.norm(v) for _, _, v in cands]
    relevance = [1.0 - d for _, d, _ in cands]
    chosen: list[int] = []
    while len(chosen) < min(k, len(cands)):
        best, best_score = -1, -np.inf
        for i in range(len(cands)):
            if i in chosen:
                continue
            redundancy = max((float(unit[i] @ unit[j]) for j in chosen), default=0.0)
            score = lambda_ * relevance[i] - (1 - lambda_) * redundancy
            if score > best_score:
                best, best_score = i, score
        chosen.append(best)
    return [cands[i][0] for i in chosen]


@pytest.mark.parametrize("kind", [None, "function"])
@pytest.mark.parametrize("lambda_", [0.0, 0.25, 0.5, 0.8])
def test_mmr_equals_numpy_reference(corpus: Backend, lambda_: float, kind: str | None) -> None:
    where = SearchDoc.kind == kind if kind else None
    for text in QUERIES:
        q = EMBEDDER.embed([text])[0]

        def run(session: Session) -> list[tuple[Any, float]]:
            with vk.search_settings(session, ef_search=1000):  # exact HNSW candidates on this corpus
                return mmr(session, SearchDoc.embedding, q, k=10, fetch_k=40, lambda_=lambda_, where=where)

        got = corpus.session(run)
        cands = corpus.run(lambda c: candidates_reference(c, corpus.dialect, q.astype(np.float64), 40, kind))
        assert [doc.id for doc, _ in got] == mmr_reference(cands, 10, lambda_), text
        distance_of = {i: d for i, d, _ in cands}
        assert [d for _, d in got] == pytest.approx([distance_of[doc.id] for doc, _ in got], abs=1e-9)


def test_mmr_lambda_one_equals_nearest(corpus: Backend) -> None:
    for text in QUERIES:
        q = EMBEDDER.embed([text])[0]
        plain = corpus.session(lambda s: [(d.id, dist) for d, dist in s.execute(vk.nearest(SearchDoc.embedding, q, k=10))])
        diverse = corpus.session(lambda s: [(d.id, dist) for d, dist in mmr(s, SearchDoc.embedding, q, k=10, lambda_=1)])
        assert diverse == plain, text
        default_fetch = corpus.session(lambda s: mmr(s, SearchDoc.embedding, q, k=10, lambda_=1.0, distance="cosine"))
        assert [d.id for d, _ in default_fetch] == [i for i, _ in plain]


def test_mmr_results_are_more_diverse_than_nearest(corpus: Backend) -> None:
    def spread(vectors: list[np.ndarray]) -> float:
        unit = np.stack([v / np.linalg.norm(v) for v in vectors])
        sims = unit @ unit.T
        return float(sims[np.triu_indices(len(vectors), 1)].mean())

    q = EMBEDDER.embed(["read lines from a text file"])[0]
    plain = corpus.session(lambda s: [d.embedding for d, _ in s.execute(vk.nearest(SearchDoc.embedding, q, k=10))])
    diverse = corpus.session(lambda s: [d.embedding for d, _ in mmr(s, SearchDoc.embedding, q, k=10, lambda_=0.3)])
    assert spread(diverse) < spread(plain)


def test_mmr_on_core_columns_and_small_tables(corpus: Backend) -> None:
    table = SearchDoc.__table__
    q = EMBEDDER.embed(["thread lock acquire"])[0]
    rows = corpus.run(lambda c: mmr(c, table.c.embedding, q, k=3, fetch_k=5))
    assert len(rows) == 3 and all(isinstance(r, tuple) and r[0] > 0 for r, _ in rows)
    none = corpus.run(lambda c: mmr(c, table.c.embedding, q, k=3, where=table.c.kind == "no such kind"))
    assert none == []


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"k": 0}, "k=0"),
        ({"fetch_k": -1}, "fetch_k=-1"),
        ({"lambda_": 1.5}, "lambda_=1.5"),
    ],
)
def test_mmr_rejects_bad_arguments(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(vk.InvalidSearchSettingError, match=message):
        mmr(None, SearchDoc.embedding, np.ones(DIM), **{"k": 5, **kw})
