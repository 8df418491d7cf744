"""hybrid_search equals an independent reference on ~3,000 stdlib docstrings, on both dialects.

The reference ranks each list on its own: full text with a hand-written SQL query calling the
dialect's rank function directly (``ts_rank_cd`` / ``bm25``), vectors with a plain SQL query of
the dialect's distance function over every row (checked against numpy). Fusion, thresholds, ties
(by primary key) and the top-k cut are then done in Python and compared with the single
statement ``hybrid_search`` sends.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

import sqlalchemy_vectorknobs as vk
from sqlalchemy_vectorknobs import search

from ..conftest import Backend
from .conftest import DIM, EMBEDDER, SearchDoc

QUERIES = [
    "copy file permissions",
    "parse json string",
    "socket connection timeout",
    "thread lock acquire",
    "decode bytes encoding",
    "temporary directory",
    "regular expression pattern",
]
#: name -> (ORM filter, the same filter in SQL for the reference)
FILTERS: dict[str | None, tuple[Any, str | None]] = {
    None: (None, None),
    "kind": (SearchDoc.kind == "function", "d.kind = 'function'"),  # pushed into vec0 on SQLite
    "module": (SearchDoc.module.in_(["os", "shutil", "pathlib", "tempfile", "io", "socket"]),
               "d.module IN ('os', 'shutil', 'pathlib', 'tempfile', 'io', 'socket')"),
}
PG_DOC = "to_tsvector('english', coalesce(d.title, '') || ' ' || coalesce(d.body, ''))"


def text_reference(conn: sa.Connection, dialect: str, text: str, where: str | None, n: int, match: str) -> list[tuple[int, float]]:
    """(id, score) of the n best full-text matches, score descending, ties by id."""
    words = text.split()
    if dialect == "postgresql":
        query = "websearch_to_tsquery('english', :q)" if match == "websearch" else "to_tsquery('english', :q)"
        value = text if match == "websearch" else " | ".join(words)
        # ::float8 reads the real exactly (its text form is a shorter decimal)
        sql = f"SELECT d.id, ts_rank_cd({PG_DOC}, {query})::float8 FROM search_doc d WHERE {PG_DOC} @@ {query}"
    else:
        value = (" " if match == "websearch" else " OR ").join(f'"{w}"' for w in words)
        sql = (
            "SELECT d.id, -bm25(search_doc_fts) FROM search_doc_fts JOIN search_doc d ON d.id = search_doc_fts.rowid "
            "WHERE search_doc_fts MATCH :q"
        )
    if where:
        sql += f" AND {where}"
    rows = [(int(i), float(s)) for i, s in conn.execute(sa.text(sql), {"q": value})]
    return sorted(rows, key=lambda r: (-r[1], r[0]))[:n]


def distance_reference(conn: sa.Connection, dialect: str, q: np.ndarray) -> dict[int, float]:
    """Cosine distance of every row to q, by the dialect's own distance function (checked against numpy)."""
    fn = "d.embedding <=> :q" if dialect == "postgresql" else "vec_distance_cosine(d.embedding, :q)"
    stmt = sa.text(f"SELECT d.id, {fn}, d.embedding FROM search_doc d").bindparams(sa.bindparam("q", type_=vk.Vector(DIM)))
    stmt = stmt.columns(sa.column("id", sa.Integer), sa.column("d", sa.Float), sa.column("embedding", vk.Vector(DIM)))
    out = {}
    for i, d, v in conn.execute(stmt, {"q": q}):
        numpy_d = 1 - float(v.astype(np.float64) @ q) / (np.linalg.norm(v.astype(np.float64)) * np.linalg.norm(q))
        assert abs(numpy_d - d) < 1e-5, (i, d, numpy_d)
        out[int(i)] = float(d)
    return out


def allowed_ids(conn: sa.Connection, where: str | None) -> set[int]:
    return set(conn.execute(sa.text(f"SELECT d.id FROM search_doc d{f' WHERE {where}' if where else ''}")).scalars())


def fuse(
    text_list: list[tuple[int, float]],
    vec_list: list[tuple[int, float]],
    distances: dict[int, float],
    *,
    k: int,
    fusion: str,
    rrf_k: float = 60,
    weights: tuple[float, float] = (0.5, 0.5),
    max_distance: float | None = None,
    min_score: float | None = None,
) -> list[tuple[int, float, float]]:
    """(id, distance, score) of the fused top k, as docs/search.md defines it."""
    t_rank = {i: r for r, (i, _) in enumerate(text_list, 1)}
    v_rank = {i: r for r, (i, _) in enumerate(vec_list, 1)}
    t_norm: dict[int, float] = {}
    v_sim: dict[int, float] = {}
    if text_list:
        lo, hi = min(s for _, s in text_list), max(s for _, s in text_list)
        t_norm = {i: ((s - lo) / (hi - lo) if hi > lo else 1.0) for i, s in text_list}
    if vec_list:
        lo, hi = min(d for _, d in vec_list), max(d for _, d in vec_list)
        v_sim = {i: (1.0 - (d - lo) / (hi - lo) if hi > lo else 1.0) for i, d in vec_list}
    out = []
    for i in set(t_rank) | set(v_rank):
        if fusion == "rrf":
            score = (1.0 / (rrf_k + t_rank[i]) if i in t_rank else 0.0) + (1.0 / (rrf_k + v_rank[i]) if i in v_rank else 0.0)
        else:
            score = weights[0] * t_norm.get(i, 0.0) + weights[1] * v_sim.get(i, 0.0)
        if max_distance is not None and distances[i] > max_distance:
            continue
        if min_score is not None and score < min_score:
            continue
        out.append((i, distances[i], score))
    out.sort(key=lambda r: (-r[2], r[0]))
    return out[:k]


def reference(
    corpus: Backend, text: str, where: str | None, *, k: int, n: int, match: str = "websearch", **fusion: Any
) -> list[tuple[int, float, float]]:
    q = EMBEDDER.embed([text])[0].astype(np.float64)

    def run(conn: sa.Connection) -> list[tuple[int, float, float]]:
        distances = distance_reference(conn, corpus.dialect, q)
        ok = allowed_ids(conn, where)
        vec_list = sorted(((i, d) for i, d in distances.items() if i in ok), key=lambda r: (r[1], r[0]))[:n]
        text_list = text_reference(conn, corpus.dialect, text, where, n, match)
        return fuse(text_list, vec_list, distances, k=k, **fusion)

    return corpus.run(run)


def run_hybrid(corpus: Backend, **kw: Any) -> list[tuple[int, float, float, int]]:
    """(id, distance, score, rank) of ``hybrid_search(details=True)``, after checking that the
    default statement returns the same rows as ``(entity, score)`` pairs (SPEC §5)."""
    # ef_search 1000 makes PostgreSQL's HNSW candidates exact on this corpus, as the reference is.
    knobs = {"vector_search": {"ef_search": 1000}}
    stmt = search.hybrid_search(SearchDoc, details=True, **kw).execution_options(**knobs)
    plain = search.hybrid_search(SearchDoc, **kw).execution_options(**knobs)

    def go(session: Session) -> list[tuple[int, float, float, int]]:
        pairs = [(doc.id, score) for doc, score in session.execute(plain)]
        got = [(r.entity.id, r.distance, r.score, r.rank) for r in session.execute(stmt)]
        assert pairs == [(g[0], g[2]) for g in got]
        return got

    return corpus.session(go)


def assert_same(got: list[tuple[int, float, float, int]], want: list[tuple[int, float, float]], label: str) -> None:
    assert [g[0] for g in got] == [w[0] for w in want], label
    assert [g[3] for g in got] == list(range(1, len(got) + 1)), label
    for (gid, gd, gs, _), (_, wd, ws) in zip(got, want):
        assert gs == pytest.approx(ws, rel=1e-9, abs=1e-12), (label, gid)
        assert gd == pytest.approx(wd, rel=1e-6, abs=1e-7), (label, gid)


@pytest.mark.parametrize("filter_name", list(FILTERS))
@pytest.mark.parametrize("fusion", ["rrf", "weighted"])
def test_hybrid_equals_reference(corpus: Backend, fusion: str, filter_name: str | None) -> None:
    where, where_sql = FILTERS[filter_name]
    nonempty = 0
    for text in QUERIES:
        got = run_hybrid(corpus, text=text, k=10, fusion=fusion, where=where)
        want = reference(corpus, text, where_sql, k=10, n=40, fusion=fusion)
        assert_same(got, want, text)
        assert len(got) == 10, text
        nonempty += len(got)
    assert nonempty == 10 * len(QUERIES)


@pytest.mark.parametrize(
    "options",
    [
        {"k": 25, "candidates": 60, "rrf_k": 10},
        {"k": 5, "fusion": "weighted", "weights": (0.3, 0.7)},
        {"k": 10, "match": "any"},
        {"k": 10, "fusion": "weighted", "weights": (1.0, 0.0), "match": "any"},
        {"k": 20, "max_distance": 0.8},
        {"k": 20, "fusion": "weighted", "min_score": 0.6},
        {"k": 20, "min_score": 0.02, "where": "kind"},
    ],
    ids=str,
)
def test_hybrid_options_equal_reference(corpus: Backend, options: dict[str, Any]) -> None:
    kw = dict(options)
    where, where_sql = FILTERS[kw.pop("where", None)]
    k = kw.pop("k")
    n = kw.pop("candidates", max(4 * k, 40))
    match = kw.pop("match", "websearch")
    kw.setdefault("fusion", "rrf")
    for text in QUERIES:
        got = run_hybrid(corpus, text=text, k=k, candidates=n, where=where, match=match, **kw)
        want = reference(corpus, text, where_sql, k=k, n=n, match=match, **kw)
        assert_same(got, want, text)


def test_hybrid_with_given_vector_equals_embedded_text(corpus: Backend) -> None:
    text = "copy file permissions"
    embedded = run_hybrid(corpus, text=text)
    given = run_hybrid(corpus, text=text, vector=EMBEDDER.embed([text])[0])
    assert embedded == given
    assert run_hybrid(corpus, text=text, text_columns=["title", "body"], vector_column="embedding") == embedded


def test_hybrid_uses_both_indexes(corpus: Backend) -> None:
    stmt = search.hybrid_search(SearchDoc, text="copy file permissions", k=10)

    def explain(session: Session) -> vk.ExplainResult:
        if corpus.dialect == "postgresql":  # a table this small is cheaper to scan: ask for the indexes
            session.execute(sa.text("SET LOCAL enable_seqscan = off"))
        return vk.explain(session, stmt)

    plan = corpus.session(explain)
    assert plan.vector_indexes_used == ["search_doc_vec"], plan.plan
    if corpus.dialect == "postgresql":
        assert "search_doc_fts" in plan.indexes_used, plan.plan
    else:
        assert "SCAN search_doc_fts VIRTUAL TABLE INDEX" in plan.plan, plan.plan


def test_search_results_rows(corpus: Backend) -> None:
    stmt = search.hybrid_search(SearchDoc, text="parse json string", k=3)
    assert [d["name"] for d in stmt.column_descriptions][1:] == ["score"]  # (entity, score), SPEC §5
    hits = corpus.session(lambda s: search.search_results(s, stmt))
    assert [h.rank for h in hits] == [1, 2, 3]
    assert all(isinstance(h, search.VectorSearchResult) and isinstance(h.entity, SearchDoc) for h in hits)
    assert all(h.distance is None for h in hits)  # only details=True computes distances
    assert hits[0].score >= hits[1].score >= hits[2].score  # type: ignore[operator]
    assert "json" in hits[0].entity.title
    detailed = corpus.session(
        lambda s: search.search_results(s, search.hybrid_search(SearchDoc, text="parse json string", k=3, details=True))
    )
    assert [(h.entity.id, h.score, h.rank) for h in detailed] == [(h.entity.id, h.score, h.rank) for h in hits]
    assert all(isinstance(h.distance, float) for h in detailed)
    with pytest.raises(vk.InvalidSearchSettingError, match="details='yes' is not valid"):
        search.hybrid_search(SearchDoc, text="json", details="yes")  # type: ignore[arg-type]


def test_text_search_equals_reference(corpus: Backend) -> None:
    for text in QUERIES:
        got = corpus.session(
            lambda s: [(d.id, score) for d, score in s.execute(search.text_search(SearchDoc, text, k=15))]
        )
        want = corpus.run(lambda c: text_reference(c, corpus.dialect, text, None, 15, "websearch"))
        assert [g[0] for g in got] == [w[0] for w in want], text
        assert [g[1] for g in got] == pytest.approx([w[1] for w in want], rel=1e-9)


def test_near_text_equals_nearest_of_the_embedding(corpus: Backend) -> None:
    text = "socket connection timeout"
    via_text = corpus.session(lambda s: [(d.id, dist) for d, dist in s.execute(search.near_text(SearchDoc.embedding, text, k=8))])
    q = EMBEDDER.embed([text])[0]
    direct = corpus.session(lambda s: [(d.id, dist) for d, dist in s.execute(vk.nearest(SearchDoc.embedding, q, k=8))])
    assert via_text == direct and len(direct) == 8
    limited = corpus.session(
        lambda s: s.execute(search.near_text(SearchDoc.embedding, text, k=8, max_distance=direct[3][1])).all()
    )
    assert len(limited) >= 4 and all(d <= direct[3][1] for _, d in limited)
