"""PostgreSQL filtered search: exact over the qualifying rows when the planner expects few of them
(an index on the filter finds them), pgvector's iterative index scan otherwise.

The reference is numpy brute force over the rows that pass the filter. Which path ran is read
from ``vk.explain``, which plans the statement the way it runs (same knobs, same choice).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

import sqlalchemy_vectorknobs as vk
from sqlalchemy_vectorknobs.exc import InvalidSearchSettingError
from sqlalchemy_vectorknobs.query import exact_below_default

from ..conftest import Backend, unique

N, DIM, K = 20_000, 16, 10
TAGS = 800  # tag = id % 800: 25 rows per tag, B-tree indexed
GROUPS = 800  # grp = id % 800 too, but no index: the planner must read the whole table


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    centers = rng.standard_normal((40, DIM))
    x = centers[rng.integers(0, 40, N)] + 0.5 * rng.standard_normal((N, DIM))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = rng.standard_normal((8, DIM))
    return {"x": x.astype(np.float32), "q": (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)}


@pytest.fixture(scope="module")
def shared_table(request: pytest.FixtureRequest, data: dict[str, np.ndarray]) -> Iterator[sa.Table]:
    """The loaded table, built once through psycopg 3 (the three drivers reach the same database)."""
    from ..conftest import _get_backend

    builder = _get_backend(request, "pg-psycopg")
    name = unique("filt")
    md = sa.MetaData()
    t = sa.Table(
        name,
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("tag", sa.Integer, nullable=False, index=True),
        sa.Column("grp", sa.Integer, nullable=False),
        sa.Column("embedding", vk.Vector(DIM)),
        vk.VectorIndex(f"{name}_hnsw", "embedding", distance="cosine"),
    )
    builder.run(md.create_all)
    x = data["x"]
    rows = ({"id": i, "tag": i % TAGS, "grp": i % GROUPS, "embedding": x[i]} for i in range(N))
    builder.run(lambda c: vk.bulk_load(c, t, rows))
    builder.run(lambda c: c.exec_driver_sql(f"ANALYZE {name}"))
    try:
        yield t
    finally:
        builder.run(md.drop_all)


@pytest.fixture(scope="module", params=["pg-psycopg", "pg-asyncpg", "pg-psycopg2"])
def loaded(request: pytest.FixtureRequest, shared_table: sa.Table) -> tuple[Backend, sa.Table]:
    """Each driver over the shared table (the module's tests only read it)."""
    from ..conftest import _get_backend

    return _get_backend(request, request.param), shared_table


@pytest.fixture
def pg_backend(loaded: tuple[Backend, sa.Table]) -> Backend:
    return loaded[0]


@pytest.fixture
def table(loaded: tuple[Backend, sa.Table]) -> sa.Table:
    return loaded[1]


def truth(data: dict[str, np.ndarray], q: np.ndarray, keep: np.ndarray) -> tuple[list[int], list[float]]:
    ids = np.flatnonzero(keep)
    dist = 1.0 - (data["x"][ids].astype(np.float64) @ q.astype(np.float64))  # unit vectors: cosine distance
    order = np.argsort(dist, kind="stable")[:K]
    return ids[order].tolist(), dist[order].tolist()


def search(backend: Backend, stmt: Any) -> tuple[list[tuple[int, float]], vk.ExplainResult]:
    def go(session: Session) -> tuple[list[tuple[int, float]], vk.ExplainResult]:
        rows = [(r[0], r[-1]) for r in session.execute(stmt)]
        return rows, vk.explain(session, stmt)

    return backend.session(go)


def chosen(plan: vk.ExplainResult) -> str:
    """Which branch the statement runs: the other one is pruned to ``One-Time Filter: false``.

    "index" leaves the search to the planner with the vector index on offer (for a handful of
    rows it may still prefer the filter's own index); "exact" is the plugin's exact search."""
    first, _, second = plan.plan.partition('Subquery Scan on "*SELECT* 2"')
    assert second, plan.plan
    pruned = ["One-Time Filter: false" in part for part in (first, second)]
    assert pruned.count(True) == 1, plan.plan
    return "index" if pruned[0] else "exact"


def assert_exact(rows: list[tuple[int, float]], data: dict[str, np.ndarray], q: np.ndarray, keep: np.ndarray) -> None:
    ids, dists = truth(data, q, keep)
    assert [r[0] for r in rows] == ids
    assert np.allclose([r[1] for r in rows], dists, atol=1e-5)


def test_a_selective_indexed_filter_runs_exactly(pg_backend: Backend, table: sa.Table, data: dict[str, np.ndarray]) -> None:
    ids = np.arange(N)
    for q in data["q"][:4]:
        stmt = vk.nearest(table.c.embedding, q, k=K, where=table.c.tag == 7)
        rows, plan = search(pg_backend, stmt)
        assert_exact(rows, data, q, ids % TAGS == 7)
        assert chosen(plan) == "exact"
        assert plan.vector_indexes_used == [], plan.plan  # the B-tree on tag found the 25 rows
        assert f"ix_{table.name}_tag" in plan.indexes_used, plan.plan


def test_the_exact_path_ignores_index_scan_limits(pg_backend: Backend, table: sa.Table, data: dict[str, np.ndarray]) -> None:
    q = data["q"][0]
    # pgvector stops an iterative scan after max_scan_tuples; the exact path reads all 25 rows
    starved = {"max_scan_tuples": 200, "ef_search": 10}
    stmt = vk.nearest(table.c.embedding, q, k=K, where=table.c.tag == 3).execution_options(vector_search=starved)
    rows, plan = search(pg_backend, stmt)
    assert_exact(rows, data, q, np.arange(N) % TAGS == 3)
    assert chosen(plan) == "exact"


def test_in_lists_and_several_values_are_estimated_with_their_values(
    pg_backend: Backend, table: sa.Table, data: dict[str, np.ndarray]
) -> None:
    ids = np.arange(N)
    q = data["q"][1]
    for tags in ([5, 9], [1, 2, 3, 4]):
        rows, plan = search(pg_backend, vk.nearest(table.c.embedding, q, k=K, where=table.c.tag.in_(tags)))
        assert_exact(rows, data, q, np.isin(ids % TAGS, tags))
        assert chosen(plan) == "exact"
    # 10,000 rows expected: above the default threshold, so the HNSW index answers
    assert exact_below_default(DIM) < N // 2
    rows, plan = search(pg_backend, vk.nearest(table.c.embedding, q, k=K, where=table.c.tag < TAGS // 2))
    assert chosen(plan) == "index"
    assert plan.vector_indexes_used == [f"{table.name}_hnsw"], plan.plan
    assert len(rows) == K and all(i % TAGS < TAGS // 2 for i, _ in rows)
    # ... and exact_below below the 25 rows of one tag sends that one to the index too
    narrow = vk.nearest(table.c.embedding, q, k=K, where=table.c.tag == 5)
    rows, plan = search(pg_backend, narrow.execution_options(vector_search={"exact_below": 24}))
    assert chosen(plan) == "index"
    rows, plan = search(pg_backend, narrow.execution_options(vector_search={"exact_below": 25}))
    assert chosen(plan) == "exact"
    assert_exact(rows, data, q, ids % TAGS == 5)


def test_a_filter_without_an_index_keeps_the_vector_index(
    pg_backend: Backend, table: sa.Table, data: dict[str, np.ndarray]
) -> None:
    q = data["q"][2]
    rows, plan = search(pg_backend, vk.nearest(table.c.embedding, q, k=K, where=table.c.grp == 7))
    assert chosen(plan) == "index"  # exact would read all 20,000 rows
    assert rows and all(i % GROUPS == 7 for i, _ in rows)


def test_search_settings_and_the_engine_set_exact_below(
    pg_backend: Backend, table: sa.Table, data: dict[str, np.ndarray]
) -> None:
    q = data["q"][3]
    stmt = vk.nearest(table.c.embedding, q, k=K, where=table.c.tag == 11)

    def in_block(session: Session) -> tuple[str, str]:
        with vk.search_settings(session, exact_below=0):
            inside = chosen(vk.explain(session, stmt))
        return inside, chosen(vk.explain(session, stmt))

    assert pg_backend.session(in_block) == ("index", "exact")
    with pytest.raises(InvalidSearchSettingError, match="exact_below"):
        pg_backend.session(lambda s: s.execute(stmt.execution_options(vector_search={"exact_below": -1})))
    if pg_backend.is_async:
        return
    engine = vk.create_engine(pg_backend.engine.url, vector_search={"exact_below": 0})
    try:
        with Session(engine) as session:
            assert chosen(vk.explain(session, stmt)) == "index"
            assert len(session.execute(stmt).all()) == K
    finally:
        engine.dispose()
