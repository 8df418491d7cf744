"""Rows as real tables hold them: NULL vectors, zero vectors and vectors whose squares underflow
float32 (``[1e-30, 0, ...]``) or overflow it (``[1e20, ...]``), through every search entry point,
on SQLite + sqlite-vec and PostgreSQL + pgvector, without an index and with each kind of index.

The rule (docs/types.md, "NULL, zero and tiny vectors"): a row without a vector has a NULL distance,
sorts last and is no search's result; under cosine, a vector without a direction
(``codec.cosine_searchable`` is False) is no search's result either, and a query vector like that is
refused. Every result is compared with a numpy reference that applies the rule independently
(float64 distances from the float32 values, top k by distance).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import sqlalchemy_vectorknobs as vk
from sqlalchemy_vectorknobs.codec import cosine_searchable

from ..conftest import Backend, unique

DIM = 16
N = 1000
K = 10
RARE = "rare"  # 1 % of the rows: i % 100 == 7


def _vectors(seed: int = 11) -> list[np.ndarray | None]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, DIM)).astype(np.float32)
    out: list[np.ndarray | None] = []
    for i in range(N):
        kind = i % 13
        if kind == 0:
            out.append(None)
        elif kind == 1:
            out.append(np.zeros(DIM, np.float32))
        elif kind == 2:  # every square underflows float32: no cosine direction
            v = np.zeros(DIM, np.float32)
            v[i % DIM] = 1e-30 if i % 2 else -1e-30
            out.append(v)
        else:
            out.append(x[i])
    return out


VECTORS = _vectors()
#: rows holding no vector / a vector with no cosine direction, by primary key (= position + 1)
HAS_VECTOR = np.array([v is not None for v in VECTORS])
#: the rule, written out: the float32 sum of the squares is positive and finite
DIRECTION = np.array([v is not None and 0 < np.sum(np.square(v, dtype=np.float32), dtype=np.float32) < np.inf for v in VECTORS])
CATEGORY = [RARE if i % 100 == 7 else "common" for i in range(N)]
RARE_MASK = np.array([c == RARE for c in CATEGORY])
WORDS = ["alpha", "bravo", "charlie", "delta", "echo"]


def _title(i: int) -> str:
    return f"{WORDS[i % 5]} {WORDS[(i // 5) % 5]} document"


def reference(q: np.ndarray, metric: str, k: int, keep: np.ndarray | None = None) -> list[tuple[int, float]]:
    """(id, distance) of the k nearest rows under the rule, by numpy in float64."""
    qd = np.asarray(q, dtype=np.float64)
    rows: list[tuple[float, int]] = []
    for i, v in enumerate(VECTORS):
        if v is None or (keep is not None and not keep[i]):
            continue
        x = v.astype(np.float64)
        if metric == "cosine":
            if not DIRECTION[i]:
                continue
            d = 1.0 - float(x @ qd) / (np.linalg.norm(x) * np.linalg.norm(qd))
        elif metric == "l2":
            d = float(np.linalg.norm(x - qd))
        else:
            d = -float(x @ qd)
        rows.append((d, i + 1))
    rows.sort()
    return [(pk, d) for d, pk in rows[:k]]


def check(got: list[tuple[int, float]], q: np.ndarray, metric: str, k: int, keep: np.ndarray | None = None) -> None:
    """``got`` is the reference's k nearest: the same distances in the same order, each row's own
    distance its reference one (rows at equal distances, such as the zero vectors under l2, may
    come in any order)."""
    full = reference(q, metric, N, keep)
    want = full[:k]
    assert len(got) == len(want), ([pk for pk, _ in got], [pk for pk, _ in want])
    assert [d for _, d in got] == pytest.approx([d for _, d in want], rel=1e-4, abs=1e-4)
    own = dict(full)
    assert len({pk for pk, _ in got}) == len(got)
    assert all(pk in own and own[pk] == pytest.approx(d, rel=1e-4, abs=1e-4) for pk, d in got), [
        (pk, d, own.get(pk)) for pk, d in got if pk not in own or own[pk] != pytest.approx(d, rel=1e-4, abs=1e-4)
    ]


def between(rows: list[tuple[int, float]], start: int) -> float:
    """A max_distance midway between two distances from position ``start`` on that are well apart,
    so float32 rounding cannot move a row across it."""
    for n in range(start, len(rows) - 1):
        if rows[n + 1][1] - rows[n][1] > 1e-3:
            return (rows[n][1] + rows[n + 1][1]) / 2
    raise AssertionError("no gap in the distances")


# --------------------------------------------------------------------------- the table


@dataclass
class Loaded:
    backend: Backend
    model: Any
    metric: str
    config: str


#: (metric, index) pairs per dialect: "none", "index" (vec0 / HNSW), "ivfflat", "halfvec", "binary"
SQLITE_CONFIGS = [("cosine", "none"), ("l2", "none"), ("inner_product", "none"), ("cosine", "index"), ("l2", "index"), ("cosine", "binary")]
PG_CONFIGS = [
    ("cosine", "none"), ("l2", "none"), ("inner_product", "none"),
    ("cosine", "index"), ("l2", "index"), ("inner_product", "index"),
    ("cosine", "ivfflat"), ("cosine", "halfvec"), ("l2", "halfvec"), ("cosine", "binary"),
]  # fmt: skip
CASES = [("sqlite", m, c) for m, c in SQLITE_CONFIGS] + [("pg-psycopg", m, c) for m, c in PG_CONFIGS] + [
    ("pg-asyncpg", "cosine", "index"),
    ("pg-asyncpg", "cosine", "none"),
]


def make_model(metric: str, config: str) -> Any:
    name = unique("nz")

    class Base(DeclarativeBase):
        pass

    index: list[Any] = []
    if config != "none":
        kw: dict[str, Any] = {"distance": metric}
        if config == "ivfflat":
            kw.update(method="ivfflat", lists=4)
        elif config in ("halfvec", "binary"):
            kw["precision"] = config
        index.append(vk.VectorIndex(f"{name}_vec", "embedding", **kw))

    class Doc(Base):
        __tablename__ = name
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        category: Mapped[str] = mapped_column(sa.String(20))
        title: Mapped[str] = mapped_column(sa.Text)
        embedding = mapped_column(vk.Vector(DIM), nullable=True)
        __table_args__ = (*index, vk.FullTextIndex(f"{name}_fts", "title"))

    return Doc


@pytest.fixture(scope="module", params=CASES, ids=["-".join(c) for c in CASES])
def loaded(request: pytest.FixtureRequest) -> Iterator[Loaded]:
    from ..conftest import _get_backend

    backend_id, metric, config = request.param
    backend = _get_backend(request, backend_id)
    model = make_model(metric, config)
    backend.run(model.metadata.create_all)  # the index exists first: its triggers / build see every row
    rows = [{"id": i + 1, "category": CATEGORY[i], "title": _title(i), "embedding": VECTORS[i]} for i in range(N)]
    backend.run(lambda c: c.execute(sa.insert(model.__table__), rows))
    if backend.dialect == "postgresql":
        backend.run(lambda c: c.exec_driver_sql(f"ANALYZE {model.__tablename__}"))
    yield Loaded(backend, model, metric, config)
    backend.run(model.metadata.drop_all)


def exact(stmt: Any) -> Any:
    """Search knobs that make PostgreSQL's approximate indexes exhaustive on 1,000 rows."""
    return stmt.execution_options(vector_search={"ef_search": 1000, "probes": 4})


def run(loaded: Loaded, stmt: Any) -> list[tuple[int, float]]:
    def go(session: Session) -> list[tuple[int, float]]:
        return [(row[0].id, float(row[1])) for row in session.execute(exact(stmt))]

    return loaded.backend.session(go)


def queries(n: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    return [rng.standard_normal(DIM).astype(np.float32) for _ in range(n)]


def candidates(loaded: Loaded) -> dict[str, Any]:
    # binary codes of 16 dimensions rank coarsely: let every row be a candidate, so the exact
    # re-rank must equal the reference
    return {"candidates": N} if loaded.config in ("binary", "halfvec") else {}


# --------------------------------------------------------------------------- nearest and friends


def test_nearest_skips_rows_without_a_searchable_vector(loaded: Loaded) -> None:
    col = loaded.model.embedding
    for q in queries():
        check(run(loaded, vk.nearest(col, q, k=K, distance=loaded.metric, **candidates(loaded))), q, loaded.metric, K)
        # k larger than the rows that have a vector: every one of them, none of the others
        check(run(loaded, vk.nearest(col, q, k=N, distance=loaded.metric, **candidates(loaded))), q, loaded.metric, N)


def test_max_distance_never_passes_a_row_without_a_distance(loaded: Loaded) -> None:
    q = queries(1)[0]
    want = reference(q, loaded.metric, N)
    limit = between(want, len(want) // 3)
    got = run(loaded, vk.nearest(loaded.model.embedding, q, k=N, distance=loaded.metric, max_distance=limit, **candidates(loaded)))
    check(got, q, loaded.metric, sum(1 for _, d in want if d <= limit))


@pytest.mark.parametrize("how", ["where=", ".where()", ".filter()", ".filter_by()"])
def test_a_one_percent_filter_returns_the_k_nearest_qualifying_rows(loaded: Loaded, how: str) -> None:
    col, model, k = loaded.model.embedding, loaded.model, 5
    q = queries(1)[0]
    kw = {"distance": loaded.metric, **candidates(loaded)}
    if how == "where=":
        stmt = vk.nearest(col, q, k=k, where=model.category == RARE, **kw)
    elif how == ".where()":
        stmt = vk.nearest(col, q, k=k, **kw).where(model.category == RARE)
    elif how == ".filter()":
        stmt = vk.nearest(col, q, k=k, **kw).filter(model.category == RARE)
    else:
        stmt = vk.nearest(col, q, k=k, **kw).filter_by(category=RARE)
    assert len(reference(q, loaded.metric, k, RARE_MASK)) == k  # the 10 rare rows: k of them have a searchable vector
    check(run(loaded, stmt), q, loaded.metric, k, RARE_MASK)


def test_where_and_max_distance_compose_in_any_order(loaded: Loaded) -> None:
    col, model = loaded.model.embedding, loaded.model
    q = queries(1)[0]
    want = reference(q, loaded.metric, N, RARE_MASK)
    limit = between(want, 2)
    kw = {"distance": loaded.metric, **candidates(loaded)}
    a = vk.nearest(col, q, k=N, max_distance=limit, **kw).where(model.category == RARE)
    count = sum(1 for _, d in want if d <= limit)
    check(run(loaded, a), q, loaded.metric, count, RARE_MASK)
    b = vk.nearest(col, q, k=N, **kw).where(model.category == RARE)
    b = b.where(b.selected_columns.distance <= limit)  # on the result's distance: applied to the rows found
    check(run(loaded, b), q, loaded.metric, count, RARE_MASK)


def test_mmr_and_rerank_skip_them_too(loaded: Loaded) -> None:
    col = loaded.model.embedding
    q = queries(1)[0]

    def go(session: Session) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
        with vk.search_settings(session, ef_search=1000, probes=4):
            pure = [(d.id, dist) for d, dist in vk.mmr(session, col, q, k=K, lambda_=1.0, distance=loaded.metric)]
            diverse = [(d.id, dist) for d, dist in vk.mmr(session, col, q, k=K, fetch_k=3 * K, lambda_=0.3, distance=loaded.metric)]
        return pure, diverse

    pure, diverse = loaded.backend.session(go)
    check(pure, q, loaded.metric, K)
    # the diverse picks come from the 3k nearest (ties at the 3k-th distance may pick either)
    pool = dict(reference(q, loaded.metric, N))
    cut = reference(q, loaded.metric, 3 * K)[-1][1]
    assert len(diverse) == K and all(pk in pool and pool[pk] <= cut + 1e-4 and d == pytest.approx(pool[pk], rel=1e-4, abs=1e-4) for pk, d in diverse)
    if loaded.config in ("binary", "halfvec"):
        got = loaded.backend.session(lambda s: [(d.id, dist) for d, dist in vk.rerank(s, col, q, k=K, candidates=N)])
        check(got, q, loaded.metric, K)


def test_hybrid_search_results_all_have_a_searchable_vector(loaded: Loaded) -> None:
    model = loaded.model
    q = queries(1)[0]
    ok = DIRECTION if loaded.metric == "cosine" else HAS_VECTOR
    for where in (None, model.category == RARE):
        stmt = vk.hybrid_search(model, text="alpha bravo", vector=q, k=40, distance=loaded.metric, where=where, details=True)

        def go(session: Session, stmt: Any = stmt) -> list[tuple[int, float | None]]:
            return [(row[0].id, row.distance) for row in session.execute(exact(stmt))]

        rows = loaded.backend.session(go)
        assert rows and all(ok[pk - 1] for pk, _ in rows), [pk for pk, _ in rows if not ok[pk - 1]]
        assert all(distance is not None for _, distance in rows)
        if where is not None:
            assert {pk for pk, _ in rows} == {i + 1 for i in range(N) if RARE_MASK[i] and ok[i]}
        # the vector candidates are the reference's nearest: the best of them is found
        best = reference(q, loaded.metric, 1, RARE_MASK if where is not None else None)[0][0]
        assert best in {pk for pk, _ in rows}


def test_hybrid_search_where_after_the_fact_equals_the_argument(loaded: Loaded) -> None:
    model = loaded.model
    q = queries(1)[0]
    kw = {"text": "alpha", "vector": q, "k": 5, "distance": loaded.metric, "details": True}

    def ids(stmt: Any) -> list[tuple[int, float]]:
        return loaded.backend.session(lambda s: [(r[0].id, round(r.score, 9)) for r in s.execute(exact(stmt))])

    by_argument = ids(vk.hybrid_search(model, where=model.category == RARE, **kw))
    assert len(by_argument) == 5 and all(CATEGORY[pk - 1] == RARE for pk, _ in by_argument)
    assert ids(vk.hybrid_search(model, **kw).where(model.category == RARE)) == by_argument
    assert ids(vk.hybrid_search(model, **kw).filter_by(category=RARE)) == by_argument


def test_text_search_where_after_the_fact_equals_the_argument(loaded: Loaded) -> None:
    model = loaded.model

    def ids(stmt: Any) -> list[tuple[int, float]]:
        return loaded.backend.session(lambda s: [(r[0].id, round(r.score, 9)) for r in s.execute(stmt)])

    # text_search is about text: rows without a vector are found like any other
    matching = [i + 1 for i in range(N) if RARE_MASK[i] and "charlie" in _title(i)]
    by_argument = ids(vk.text_search(model, "charlie", k=50, where=model.category == RARE))
    assert sorted(pk for pk, _ in by_argument) == matching
    assert ids(vk.text_search(model, "charlie", k=50).where(model.category == RARE)) == by_argument
    assert ids(vk.text_search(model, "charlie", k=2).where(model.category == RARE)) == by_argument[:2]


def test_refused_before_any_sql(loaded: Loaded) -> None:
    col, model = loaded.model.embedding, loaded.model

    class Other(DeclarativeBase):
        pass

    class Author(Other):
        __tablename__ = unique("author")
        id: Mapped[int] = mapped_column(primary_key=True)

    loaded.backend.statements.clear()
    with pytest.raises(vk.IncompatibleOperatorError, match=r"got a criterion on 'author_\w+', which the search cannot apply"):
        vk.nearest(col, queries(1)[0], k=5, distance=loaded.metric).where(Author.id == model.id)
    with pytest.raises(vk.IncompatibleOperatorError, match="which the search cannot apply"):
        vk.hybrid_search(model, text="alpha", vector=queries(1)[0], distance=loaded.metric).where(Author.id == 1)
    with pytest.raises(vk.InvalidSearchSettingError, match=r"k=9223372036854775808 is not a positive whole number up to"):
        vk.nearest(col, queries(1)[0], k=2**63, distance=loaded.metric)
    with pytest.raises(vk.InvalidSearchSettingError, match=r"candidates=0 is not a positive whole number"):
        vk.nearest(col, queries(1)[0], k=5, distance=loaded.metric, candidates=0)
    for bad_distance in (float("nan"), "0.5", True):
        with pytest.raises(vk.InvalidSearchSettingError, match=r"max_distance=.* is not valid; it takes a number"):
            vk.nearest(col, queries(1)[0], k=5, distance=loaded.metric, max_distance=bad_distance)
    with pytest.raises(vk.InvalidSearchSettingError, match=r"vk.hybrid_search k=0 is not a positive whole number"):
        vk.hybrid_search(model, text="alpha", vector=queries(1)[0], k=0, distance=loaded.metric)
    if loaded.metric == "cosine":
        for bad in (np.zeros(DIM), np.eye(1, DIM)[0] * 1e-30, np.full(DIM, 1e20)):
            with pytest.raises(vk.InvalidVectorError, match="query vector has no cosine direction"):
                vk.nearest(col, bad, k=5)
            with pytest.raises(vk.InvalidVectorError, match="query vector has no cosine direction"):
                vk.hybrid_search(model, text="alpha", vector=bad, distance="cosine")
    assert loaded.backend.statements == []


# --------------------------------------------------------------------------- operators


OPERATORS = ["l2_distance", "cosine_distance", "max_inner_product", "inner_product", "l1_distance"]


@pytest.mark.parametrize("operator", OPERATORS)
def test_operators_give_null_rows_a_null_distance_sorted_as_postgresql_does(any_backend: Backend, operator: str) -> None:
    md = sa.MetaData()
    t = sa.Table(unique("nullop"), md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("v", vk.Vector(3), nullable=True))
    rows = [(1, [1, 2, 3]), (2, None), (3, [3, 2, 1.5]), (4, None), (5, [-1, 0.5, 2])]
    any_backend.run(md.create_all)
    try:
        any_backend.run(lambda c: c.execute(t.insert(), [{"id": i, "v": v} for i, v in rows]))
        q = [0.5, 1.0, -2.0]
        dist = getattr(t.c.v, operator)(q)
        asc = any_backend.run(lambda c: c.execute(sa.select(t.c.id, dist).order_by(dist, t.c.id)).all())
        desc = any_backend.run(lambda c: c.execute(sa.select(t.c.id, dist.label("d")).order_by(sa.desc("d"), t.c.id)).all())
        labelled = dist.label("d")
        by_label = any_backend.run(lambda c: c.execute(sa.select(t.c.id, labelled).order_by(labelled.desc(), t.c.id)).all())
        mine = any_backend.run(lambda c: c.execute(sa.select(t.c.id).order_by(dist.nulls_first(), t.c.id)).scalars().all())

        def numpy(v: list[float]) -> float:
            a, b = np.array(v, np.float64), np.array(q, np.float64)
            return {
                "l2_distance": float(np.linalg.norm(a - b)),
                "cosine_distance": 1 - float(a @ b) / (np.linalg.norm(a) * np.linalg.norm(b)),
                "max_inner_product": -float(a @ b),
                "inner_product": float(a @ b),
                "l1_distance": float(np.abs(a - b).sum()),
            }[operator]

        present = sorted((numpy(v), i) for i, v in rows if v is not None)
        assert [i for i, _ in asc] == [i for _, i in present] + [2, 4]  # NULL distances last
        assert [d for _, d in asc[:3]] == pytest.approx([d for d, _ in present], rel=1e-5)
        assert [d for _, d in asc[3:]] == [None, None]
        assert [i for i, _ in desc] == [2, 4] + [i for _, i in reversed(present)]  # ... and first, descending
        assert [i for i, _ in by_label] == [i for i, _ in desc]
        assert mine == [2, 4] + [i for _, i in present]  # the caller's own NULLS FIRST stands
    finally:
        any_backend.run(md.drop_all)


def test_bit_operators_on_null_rows(any_backend: Backend) -> None:
    md = sa.MetaData()
    t = sa.Table(unique("nullbit"), md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("b", vk.BitVector(8), nullable=True))
    any_backend.run(md.create_all)
    try:
        any_backend.run(lambda c: c.execute(t.insert(), [{"id": 1, "b": [1, 0, 1, 0, 1, 0, 1, 0]}, {"id": 2, "b": None}, {"id": 3, "b": [1] * 8}]))
        q = [1] * 8
        for op, want in (("hamming_distance", [(3, 0.0), (1, 4.0), (2, None)]), ("jaccard_distance", [(3, 0.0), (1, 0.5), (2, None)])):
            dist = getattr(t.c.b, op)(q)
            assert any_backend.run(lambda c: c.execute(sa.select(t.c.id, dist).order_by(dist)).all()) == want
        got = any_backend.run(lambda c: c.execute(vk.nearest(t.c.b, q, k=5, distance="hamming")).all())
        assert [(r.id, r.distance) for r in got] == [(3, 0.0), (1, 4.0)]
    finally:
        any_backend.run(md.drop_all)


# --------------------------------------------------------------------------- near_text


def _embed(texts: list[str]) -> np.ndarray:
    """Empty text -> a zero vector (as a model may give); 'tiny ...' -> an underflowing one."""
    out = np.zeros((len(texts), DIM), np.float32)
    for n, text in enumerate(texts):
        if text.startswith("tiny"):
            out[n, 0] = 1e-30
        elif text:
            out[n] = np.random.default_rng(list(text.encode())).standard_normal(DIM)
    return out


@pytest.mark.parametrize("indexed", [False, True], ids=["no-index", "index"])
def test_near_text_skips_zero_and_null_embeddings(backend: Backend, indexed: bool) -> None:
    name = unique("nzt")

    class Base(DeclarativeBase):
        pass

    class Note(Base):
        __tablename__ = name
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        body: Mapped[str | None] = mapped_column(sa.Text)
        embedding = vk.embedded_column(vk.Vector(DIM), source="body", embedder=vk.CallableEmbedder(_embed, dim=DIM, name="nz"))
        __table_args__ = (vk.VectorIndex(f"{name}_vec", "embedding", distance="cosine"),) if indexed else ()

    bodies = ["", "tiny one", None, *(f"note {i}" for i in range(40))]
    backend.run(Base.metadata.create_all)
    try:

        def fill(session: Session) -> None:
            session.add_all(Note(id=i, body=b) for i, b in enumerate(bodies, 1))
            session.commit()

        backend.orm(fill)
        stored = dict(backend.run(lambda c: c.execute(sa.select(Note.__table__.c.id, Note.__table__.c.embedding)).all()))
        q = _embed(["note 7"])[0]
        keep = {pk: v for pk, v in stored.items() if v is not None and cosine_searchable(v)}
        assert len(keep) == 40  # the empty, tiny and NULL bodies are not searchable
        want = sorted(keep, key=lambda pk: (1 - float(keep[pk] @ q) / (np.linalg.norm(keep[pk]) * np.linalg.norm(q)), pk))

        def go(session: Session) -> list[int]:
            stmt = vk.near_text(Note.embedding, "note 7", k=len(bodies)).execution_options(vector_search={"ef_search": 1000})
            return [n.id for n, _ in session.execute(stmt)]

        assert backend.session(go) == want

        def filtered(session: Session) -> list[int]:  # .where() on near_text's statement: inside the search
            stmt = vk.near_text(Note.embedding, "note 7", k=3).where(Note.id % 10 == 7)
            return [n.id for n, _ in session.execute(stmt.execution_options(vector_search={"ef_search": 1000}))]

        assert backend.session(filtered) == [pk for pk in want if pk % 10 == 7][:3]
        with pytest.raises(vk.InvalidVectorError, match="no cosine direction"):
            vk.near_text(Note.embedding, "", k=3)
    finally:
        backend.run(Base.metadata.drop_all)


# --------------------------------------------------------------------------- vec0 shadows


def test_vec0_shadow_holds_exactly_the_searchable_rows(sqlite_backend: Backend) -> None:
    """The vec0 table of a cosine index holds the rows with a direction; of an l2 index, every row
    with a vector; after inserts, updates (to NULL, to zero, back) and deletes alike."""
    for metric in ("cosine", "l2"):
        model = make_model(metric, "index")
        table, vt = model.__table__, f"{model.__tablename__}_vec"
        sqlite_backend.run(model.metadata.create_all)
        try:
            rows = [{"id": i + 1, "category": CATEGORY[i], "title": _title(i), "embedding": VECTORS[i]} for i in range(60)]
            sqlite_backend.run(lambda c: c.execute(table.insert(), rows))
            changes = [
                sa.update(table).where(table.c.id == 5).values(embedding=None),
                sa.update(table).where(table.c.id == 6).values(embedding=np.zeros(DIM)),
                sa.update(table).where(table.c.id == 1).values(embedding=np.ones(DIM)),  # NULL -> a vector
                sa.update(table).where(table.c.id == 2).values(embedding=np.ones(DIM)),  # zero -> a vector
                sa.delete(table).where(table.c.id.in_([7, 8])),
            ]
            for change in itertools.chain([None], changes):
                if change is not None:
                    sqlite_backend.run(lambda c, change=change: c.execute(change))
                base = dict(sqlite_backend.run(lambda c: c.execute(sa.select(table.c.id, table.c.embedding)).all()))
                want = {
                    pk for pk, v in base.items() if v is not None and (metric != "cosine" or cosine_searchable(v))
                }
                shadow = sqlite_backend.run(lambda c: c.exec_driver_sql(f'SELECT id, embedding FROM "{vt}"').all())
                assert {pk for pk, _ in shadow} == want
                assert all(np.array_equal(np.frombuffer(blob, "<f4"), base[pk]) for pk, blob in shadow)
        finally:
            sqlite_backend.run(model.metadata.drop_all)
