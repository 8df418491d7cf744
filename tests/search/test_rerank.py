"""vk.rerank: binary-quantized candidates re-ranked exactly reach recall@10 >= 0.95 against exact
search on 100,000 x 384 clustered vectors (the data of tests/backends/test_recall.py), on
PostgreSQL (HNSW over ``binary_quantize``) and SQLite (a ``bit[384]`` vec0 table).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import sqlalchemy_vectorknobs as vk
from sqlalchemy_vectorknobs.rerank import rerank, rerank_query

from ..backends.test_recall import DIM, K, N, dataset  # noqa: F401  (the seeded clustered data set)
from ..conftest import Backend, _get_backend


class Base(DeclarativeBase):
    pass


class Binary(Base):
    __tablename__ = "rerank_doc"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    bucket: Mapped[int] = mapped_column(nullable=False)
    embedding = mapped_column(vk.Vector(DIM))
    __table_args__ = (vk.VectorIndex("rerank_doc_bin", "embedding", distance="cosine", precision="binary"),)


@pytest.fixture(scope="module", params=["sqlite", "pg-psycopg"])
def loaded(request: pytest.FixtureRequest, dataset: dict[str, np.ndarray]) -> Iterator[Backend]:  # noqa: F811
    backend = _get_backend(request, request.param)
    backend.run(Base.metadata.drop_all)
    index = next(iter(Binary.__table__.indexes))
    Binary.__table__.indexes.discard(index)  # load first, then build the index
    try:
        backend.run(Base.metadata.create_all)
    finally:
        Binary.__table__.indexes.add(index)
    x, bucket = dataset["x"], dataset["bucket"]
    backend.run(lambda c: vk.bulk_load(c, Binary, ({"id": i, "bucket": int(bucket[i]), "embedding": x[i]} for i in range(N))))

    def build(conn: sa.Connection) -> None:
        if backend.dialect == "postgresql":
            conn.exec_driver_sql("SET LOCAL maintenance_work_mem = '1GB'")
        index.create(conn)

    backend.run(build)
    yield backend
    backend.run(Base.metadata.drop_all)


def test_binary_rerank_recall_at_10(loaded: Backend, dataset: dict[str, np.ndarray]) -> None:  # noqa: F811
    x, queries = dataset["x"], dataset["q"]
    truth = np.argsort(-(queries @ x.T), axis=1)[:, :K]
    found = loaded.session(lambda s: [[d.id for d, _ in rerank(s, Binary.embedding, q, k=K)] for q in queries])
    recall = float(np.mean([len(set(f) & set(t.tolist())) / K for f, t in zip(found, truth)]))
    print(f"\n{loaded.id} binary index + rerank (default candidates): recall@10 {recall:.3f} over {len(queries)} queries")
    assert all(len(f) == K for f in found)
    assert recall >= 0.95, recall


def test_rerank_distances_are_exact_and_sorted(loaded: Backend, dataset: dict[str, np.ndarray]) -> None:  # noqa: F811
    x, q = dataset["x"], dataset["q"][0]
    hits = loaded.session(lambda s: rerank(s, Binary.embedding, q, k=K, candidates=200))
    exact = 1 - x[[d.id for d, _ in hits]].astype(np.float64) @ q.astype(np.float64)
    assert [d for _, d in hits] == pytest.approx(exact.tolist(), abs=1e-5)
    assert [d for _, d in hits] == sorted(d for _, d in hits)


def test_rerank_uses_the_binary_index_and_filters(loaded: Backend, dataset: dict[str, np.ndarray]) -> None:  # noqa: F811
    q, bucket = dataset["q"][1], dataset["bucket"]
    stmt = rerank_query(Binary.embedding, q, k=K)
    plan = loaded.session(lambda s: vk.explain(s, stmt))
    assert plan.vector_indexes_used == ["rerank_doc_bin"], plan.plan
    hits = loaded.session(lambda s: rerank(s, Binary.embedding, q, k=K, where=Binary.bucket < 10))
    assert len(hits) == K and all(bucket[d.id] < 10 for d, _ in hits)


def test_rerank_needs_a_quantized_index() -> None:
    md = sa.MetaData()
    t = sa.Table("plain", md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("e", vk.Vector(3)))
    vk.VectorIndex("plain_idx", t.c.e)
    with pytest.raises(vk.InvalidIndexError, match="precision='binary' or 'halfvec' on 'plain.e'"):
        rerank_query(t.c.e, [1, 2, 3])


@pytest.mark.parametrize("backend_id", ["sqlite", "pg-psycopg"])
def test_rerank_prefers_the_coarse_index_over_a_full_one(request: pytest.FixtureRequest, backend_id: str) -> None:
    from ..conftest import unique

    backend = _get_backend(request, backend_id)
    md = sa.MetaData()
    t = sa.Table(unique("rr"), md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False), sa.Column("e", vk.Vector(16)))
    vk.VectorIndex(f"{t.name}_full", t.c.e, distance="l2")
    vk.VectorIndex(f"{t.name}_half", t.c.e, distance="l2", precision="halfvec")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((300, 16)).astype(np.float32)
    backend.create(md)
    try:
        backend.run(lambda c: vk.bulk_load(c, t, ({"id": i, "e": x[i]} for i in range(300))))
        q = rng.standard_normal(16).astype(np.float32)

        def run(session: Session) -> list[tuple[int, float]]:
            if backend.dialect == "postgresql":
                session.execute(sa.text("SET LOCAL enable_seqscan = off"))
            plan = vk.explain(session, rerank_query(t.c.e, q, k=5))
            assert plan.vector_indexes_used == [f"{t.name}_half"], plan.plan
            return [(row[0], d) for row, d in rerank(session, t.c.e, q, k=5, candidates=300)]

        got = backend.session(run)
        exact = np.linalg.norm(x.astype(np.float64) - q, axis=1)
        assert [i for i, _ in got] == np.argsort(exact)[:5].tolist()
    finally:
        backend.drop(md)


@pytest.mark.parametrize("backend_id", ["sqlite", "pg-psycopg"])
def test_rerank_on_an_aliased_entity_with_a_filter_on_the_alias(request: pytest.FixtureRequest, backend_id: str) -> None:
    """``where=`` written against an ``aliased()`` entity is applied to the table the candidates
    come from (it failed with "invalid reference to FROM-clause entry" before)."""
    from sqlalchemy.orm import DeclarativeBase, aliased, mapped_column

    from ..conftest import unique

    class Base(DeclarativeBase):
        pass

    class Item(Base):
        __tablename__ = unique("rr_alias")
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        embedding = mapped_column(vk.Vector(8))
        __table_args__ = (vk.VectorIndex(f"{__tablename__}_bin", "embedding", distance="l2", precision="binary"),)

    backend = _get_backend(request, backend_id)
    rng = np.random.default_rng(11)
    x = rng.standard_normal((60, 8)).astype(np.float32)
    q = rng.standard_normal(8).astype(np.float32)
    backend.create(Base.metadata)
    try:
        backend.session(lambda s: s.add_all([Item(id=i, embedding=x[i]) for i in range(60)]))
        alias = aliased(Item)
        got = backend.session(
            lambda s: [(item.id, d) for item, d in rerank(s, alias.embedding, q, k=4, candidates=60, where=alias.id % 3 == 0)]
        )
        exact = np.linalg.norm(x.astype(np.float64) - q, axis=1)
        want = [i for i in np.argsort(exact).tolist() if i % 3 == 0][:4]
        assert [i for i, _ in got] == want
        np.testing.assert_allclose([d for _, d in got], exact[want], rtol=1e-5)
    finally:
        backend.drop(Base.metadata)
