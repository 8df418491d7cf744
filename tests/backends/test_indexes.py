"""Vector indexes on real databases: created by create_all, used by vk.nearest, kept in step."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, aliased, mapped_column

import sqlalchemy_vectorknobs as vk

from ..conftest import Backend, unique

N = 300
rng = np.random.default_rng(3)

FLOAT = ["l2", "cosine", "ip", "l1"]
# (type factory, method, distance, precision) for every combination pgvector builds
PG_COMBOS = (
    [("vector", "hnsw", d, p) for d in FLOAT for p in (None, "halfvec", "binary")]
    + [("vector", "ivfflat", d, p) for d in ("l2", "cosine", "ip") for p in (None, "halfvec", "binary")]
    + [("halfvec", "hnsw", d, None) for d in FLOAT]
    + [("halfvec", "ivfflat", d, None) for d in ("l2", "cosine", "ip")]
    + [("halfvec", "hnsw", "cosine", "binary")]
    + [("bit", "hnsw", d, None) for d in ("hamming", "jaccard")]
    + [("bit", "ivfflat", "hamming", None)]
    + [("sparsevec", "hnsw", d, None) for d in FLOAT]
)
# sqlite-vec: l2/cosine/l1 on floats (any precision), hamming on bits
SQLITE_COMBOS = (
    [("vector", "hnsw", d, p) for d in ("l2", "cosine", "l1") for p in (None, "halfvec", "binary")]
    + [("halfvec", "hnsw", d, None) for d in ("l2", "cosine", "l1")]
    + [("bit", "hnsw", "hamming", None)]
)
DIM = {"vector": 32, "halfvec": 32, "bit": 64, "sparsevec": 50}
TYPES = {"vector": vk.Vector, "halfvec": vk.HalfVector, "bit": vk.BitVector, "sparsevec": vk.SparseVector}


def data(kind: str) -> np.ndarray:
    dim = DIM[kind]
    if kind == "bit":
        return rng.random((N, dim)) < 0.5
    if kind == "sparsevec":
        return ((rng.random((N, dim)) < 0.2) * rng.standard_normal((N, dim))).astype(np.float32)
    values = rng.standard_normal((N, dim)).astype(np.float32)
    return values.astype(np.float16) if kind == "halfvec" else values


def reference(kind: str, distance: str, x: np.ndarray, q: np.ndarray) -> np.ndarray:
    if kind == "bit":
        diff = (x != q).sum(axis=1).astype(float)
        return diff if distance == "hamming" else 1 - (x & q).sum(axis=1) / (x | q).sum(axis=1)
    x, q = x.astype(np.float64), q.astype(np.float64)
    return {
        "l2": lambda: np.linalg.norm(x - q, axis=1),
        "cosine": lambda: 1 - x @ q / (np.linalg.norm(x, axis=1) * np.linalg.norm(q)),
        "ip": lambda: -(x @ q),
        "l1": lambda: np.abs(x - q).sum(axis=1),
    }[distance]()


def make_table(kind: str, **index_kw: Any) -> tuple[sa.MetaData, sa.Table, vk.VectorIndex]:
    md = sa.MetaData()
    name = unique("ix")
    t = sa.Table(
        name,
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("cat", sa.Integer, nullable=False),
        sa.Column("embedding", TYPES[kind](DIM[kind])),
    )
    index = vk.VectorIndex(f"{name}_idx", t.c.embedding, **index_kw)
    return md, t, index


@pytest.mark.parametrize("combo", PG_COMBOS, ids=str)
def test_postgresql_index_created_and_used_by_nearest(pg_backend: Backend, combo: tuple[str, str, str, Any]) -> None:
    check_index_used(pg_backend, combo)


@pytest.mark.parametrize("combo", SQLITE_COMBOS, ids=str)
def test_sqlite_index_created_and_used_by_nearest(sqlite_backend: Backend, combo: tuple[str, str, str, Any]) -> None:
    check_index_used(sqlite_backend, combo)


def check_index_used(backend: Backend, combo: tuple[str, str, str, Any]) -> None:
    kind, method, distance, precision = combo
    x = data(kind)
    kw: dict[str, Any] = {"distance": distance, "method": method, "precision": precision}
    md, t, index = make_table(kind, **kw)
    rows_first = method == "ivfflat"  # IVFFlat learns its lists from the rows (pgvector: build after loading)
    if rows_first:
        t.indexes.discard(index)
    backend.run(md.create_all)  # HNSW / vec0 exist before the rows: kept in step on insert
    try:
        backend.run(lambda c: c.execute(sa.insert(t), [{"id": i, "cat": i % 10, "embedding": x[i]} for i in range(N)]))
        if rows_first:
            t.indexes.add(index)
            backend.run(index.create)
        q = data(kind)[0]
        stmt = vk.nearest(t.c.embedding, q, k=5)

        def run(conn: sa.Connection) -> tuple[vk.ExplainResult, list[Any]]:
            if backend.dialect == "postgresql":
                conn.exec_driver_sql("SET LOCAL enable_seqscan = off")  # tiny table: prefer the index
            return vk.explain(conn, stmt), conn.execute(stmt).all()

        plan, rows = backend.run(run)
        assert plan.vector_indexes_used == [index.name], plan.plan
        assert len(rows) == 5
        distances = [r.distance for r in rows]
        assert distances == sorted(distances)
        exact_index = precision is None or (precision == "halfvec" and kind == "halfvec")
        if exact_index and (backend.dialect == "sqlite" or method == "hnsw"):
            ref = reference(kind, distance, x, q)
            if kind == "bit":  # integer Hamming distances tie: compare the distances themselves
                np.testing.assert_allclose(distances, np.sort(ref)[:5], atol=1e-4)
            else:
                assert [r.id for r in rows] == np.argsort(ref, kind="stable")[:5].tolist()
    finally:
        backend.run(md.drop_all)


def test_sqlite_index_follows_inserts_updates_deletes(sqlite_backend: Backend) -> None:
    md, t, index = make_table("vector", distance="l2", metadata_columns=["cat"])
    x = data("vector")
    backend = sqlite_backend
    backend.run(md.create_all)
    try:
        backend.run(lambda c: c.execute(sa.insert(t), [{"id": i, "cat": 0, "embedding": x[i]} for i in range(10)]))
        count = sa.text(f'SELECT count(*) FROM "{index.name}"')
        assert backend.run(lambda c: c.execute(count).scalar()) == 10
        far = np.full(DIM["vector"], 50.0, dtype=np.float32)
        backend.run(lambda c: c.execute(sa.update(t).where(t.c.id == 3).values(embedding=far, cat=7)))
        backend.run(lambda c: c.execute(sa.delete(t).where(t.c.id == 4)))
        backend.run(lambda c: c.execute(sa.insert(t), {"id": 99, "cat": 1, "embedding": None}))
        assert backend.run(lambda c: c.execute(count).scalar()) == 9
        got = backend.run(lambda c: c.execute(vk.nearest(t.c.embedding, far, k=1)).one())
        assert got.id == 3 and got.distance == pytest.approx(0.0)
        only7 = backend.run(lambda c: c.execute(vk.nearest(t.c.embedding, x[0], k=5, where=t.c.cat == 7)).all())
        assert [r.id for r in only7] == [3]
        assert 4 not in [r.id for r in backend.run(lambda c: c.execute(vk.nearest(t.c.embedding, x[4], k=9)).all())]
    finally:
        backend.run(md.drop_all)
    names = backend.run(lambda c: c.exec_driver_sql("SELECT name FROM sqlite_master").scalars().all())
    assert not [n for n in names if n.startswith(index.name)], names  # vec0 tables and triggers gone


def test_sqlite_index_on_existing_rows_and_hidden_from_reflection(sqlite_backend: Backend) -> None:
    md, t, index = make_table("vector", distance="cosine", metadata_columns=["cat"])
    x = data("vector")
    t.indexes.discard(index)
    sqlite_backend.run(md.create_all)
    try:
        sqlite_backend.run(lambda c: c.execute(sa.insert(t), [{"id": i, "cat": i % 3, "embedding": x[i]} for i in range(50)]))
        t.indexes.add(index)
        sqlite_backend.run(index.create)
        assert sqlite_backend.run(lambda c: c.execute(sa.text(f'SELECT count(*) FROM "{index.name}"')).scalar()) == 50
        names = sqlite_backend.run(lambda c: sa.inspect(c).get_table_names())
        assert t.name in names and not [n for n in names if n.startswith(index.name)]
        assert sqlite_backend.run(lambda c: sa.inspect(c).get_indexes(t.name)) == []  # vec0 is not an Index
        report = sqlite_backend.run(vk.inspect_vectors)
        (info,) = [i for i in report.indexes if i.name == index.name]
        assert (info.table, info.method, info.expression, info.options) == (t.name, "vec0", "embedding", {"distance_metric": "cosine"})
    finally:
        sqlite_backend.run(md.drop_all)


def test_filters_return_k_rows(backend: Backend) -> None:
    """A filter on a metadata column (pushed into vec0) or on any column (exact fallback) gives k rows."""
    md = sa.MetaData()
    name = unique("flt")
    t = sa.Table(
        name,
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("cat", sa.Integer, nullable=False),
        sa.Column("other", sa.Integer, nullable=False),
        sa.Column("embedding", vk.Vector(16)),
        vk.VectorIndex(f"{name}_idx", "embedding", distance="l2", metadata_columns=["cat"]),
    )
    x = rng.standard_normal((2000, 16)).astype(np.float32)
    backend.run(md.create_all)
    try:
        backend.run(lambda c: c.execute(sa.insert(t), [{"id": i, "cat": i % 100, "other": i % 50, "embedding": x[i]} for i in range(2000)]))
        q = rng.standard_normal(16).astype(np.float32)
        for where, mask in ((t.c.cat == 7, np.arange(2000) % 100 == 7), (t.c.other < 5, np.arange(2000) % 50 < 5)):
            rows = backend.run(lambda c: c.execute(vk.nearest(t.c.embedding, q, k=10, where=where)).all())
            ref = np.linalg.norm(x - q, axis=1)
            ref[~mask] = np.inf
            assert [r.id for r in rows] == np.argsort(ref)[:10].tolist()
    finally:
        backend.run(md.drop_all)


def test_k_above_sqlite_vec_limit_and_max_distance(backend: Backend) -> None:
    md, t, index = make_table("vector", distance="l2")
    x = rng.standard_normal((5000, DIM["vector"])).astype(np.float32)
    backend.run(md.create_all)
    try:
        vk.bulk_load(backend.sync_engine, t, [{"id": i, "cat": 0, "embedding": x[i]} for i in range(5000)]) if not backend.is_async else backend.run(
            lambda c: vk.bulk_load(c, t, [{"id": i, "cat": 0, "embedding": x[i]} for i in range(5000)])
        )
        q = x[0]
        rows = backend.run(lambda c: c.execute(vk.nearest(t.c.embedding, q, k=4500)).all())
        ref = np.linalg.norm(x - q, axis=1)
        assert len(rows) == 4500  # HNSW alone would stop at ef_search (40) rows
        overlap = len({r.id for r in rows} & set(np.argsort(ref)[:4500].tolist())) / 4500
        if backend.dialect == "sqlite":  # beyond vec0's 4,096: exact search
            assert overlap == 1.0 and rows[-1].distance == pytest.approx(np.sort(ref)[4499], rel=1e-4)
        else:  # an approximate HNSW scan, continued iteratively past ef_search
            assert overlap > 0.95
        close = backend.run(lambda c: c.execute(vk.nearest(t.c.embedding, q, k=50, max_distance=float(np.sort(ref)[3]) + 1e-4)).all())
        assert [r.id for r in close] == np.argsort(ref)[:4].tolist()
    finally:
        backend.run(md.drop_all)


def test_nearest_on_orm_entities_and_aliases(backend: Backend) -> None:
    class Base(DeclarativeBase):
        pass

    class Doc(Base):
        __tablename__ = unique("orm")
        id: Mapped[int] = mapped_column(primary_key=True)
        embedding = mapped_column(vk.Vector(4))
        __table_args__ = (vk.VectorIndex(f"{__tablename__}_idx", "embedding", distance="l2"),)

    backend.run(Base.metadata.create_all)
    try:
        backend.session(lambda s: s.add_all([Doc(id=i, embedding=[i, 0, 0, 0]) for i in range(10)]))
        alias = aliased(Doc)

        def query(session: Session) -> list[tuple[int, float]]:
            got = session.execute(vk.nearest(Doc.embedding, [6.2, 0, 0, 0], k=3)).all()
            via_alias = session.execute(vk.nearest(alias.embedding, [6.2, 0, 0, 0], k=3)).all()
            assert [(d.id, round(x, 4)) for d, x in via_alias] == [(d.id, round(x, 4)) for d, x in got]
            # a filter written against the alias is applied to the table the search reads
            odd = session.execute(vk.nearest(alias.embedding, [6.2, 0, 0, 0], k=3, where=alias.id % 2 == 1)).all()
            assert [(d.id, round(x, 4)) for d, x in odd] == [(7, 0.8), (5, 1.2), (9, 2.8)]
            return [(d.id, round(x, 4)) for d, x in got]

        assert backend.session(query) == [(6, 0.2), (7, 0.8), (5, 1.2)]
    finally:
        backend.run(Base.metadata.drop_all)


def test_statements_of_one_shape_keep_their_own_query_vectors(backend: Backend) -> None:
    """``nearest`` reuses one built statement per shape and fills in the vector: statements built
    earlier keep theirs, and two of one shape combined in one statement are refused, not run with
    one vector (distinct ``bindparam`` names combine correctly)."""
    from sqlalchemy_vectorknobs import query as vk_query

    md, t, _ = make_table("vector", distance="l2")
    x = np.zeros((40, DIM["vector"]), dtype=np.float32)
    x[:, 0] = np.arange(40)
    backend.run(md.create_all)
    try:
        backend.run(lambda c: c.execute(t.insert(), [{"id": i, "cat": i % 2, "embedding": x[i]} for i in range(40)]))
        targets = [3.2, 17.9, 30.4, 0.1]
        stmts = [vk.nearest(t.c.embedding, np.eye(1, DIM["vector"], 0)[0] * v, k=3) for v in targets]
        for v, stmt in reversed(list(zip(targets, stmts))):  # run in another order than built
            got = backend.run(lambda c, stmt=stmt: c.execute(stmt).all())
            want = np.argsort(np.abs(np.arange(40) - v), kind="stable")[:3].tolist()
            assert [r.id for r in got] == want, v
            assert [r.distance for r in got] == pytest.approx(np.sort(np.abs(np.arange(40) - v))[:3], abs=1e-4)

        both = sa.union_all(sa.select(stmts[0].subquery().c.id), sa.select(stmts[1].subquery().c.id))
        if vk_query._LIGHT_PARAMS:
            with pytest.raises(sa.exc.CompileError, match="cannot be combined in one statement"):
                backend.run(lambda c: c.execute(both).all())
        else:  # SQLAlchemy 2.0 builds every statement anew
            assert sorted(backend.run(lambda c: c.execute(both).scalars().all())) == [2, 3, 4, 17, 18, 19]
        q1 = sa.bindparam("q1", np.eye(1, DIM["vector"], 0)[0].astype(np.float32) * 3.2, type_=t.c.embedding.type)
        q2 = sa.bindparam("q2", np.eye(1, DIM["vector"], 0)[0].astype(np.float32) * 17.9, type_=t.c.embedding.type)
        named = sa.union_all(
            sa.select(vk.nearest(t.c.embedding, q1, k=3).subquery().c.id),
            sa.select(vk.nearest(t.c.embedding, q2, k=3).subquery().c.id),
        )
        assert sorted(backend.run(lambda c: c.execute(named).scalars().all())) == [2, 3, 4, 17, 18, 19]
    finally:
        backend.run(md.drop_all)


def test_bad_query_vector_fails_when_building_the_query(backend: Backend) -> None:
    md, t, _ = make_table("vector")
    with pytest.raises(vk.DimensionMismatchError, match=rf"^Column '{t.name}.embedding' expects 32 dimensions, got 2\.$"):
        vk.nearest(t.c.embedding, [1.0, 2.0])
    with pytest.raises(vk.InvalidSearchSettingError, match="k=0 is not a positive whole number"):
        vk.nearest(t.c.embedding, np.ones(32), k=0)


def test_ivfflat_by_create_all_and_auto_method(pg_backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlalchemy_vectorknobs.index as vk_index

    md, t, ivf = make_table("vector", distance="l2", method="ivfflat")
    auto = vk.VectorIndex(f"{t.name}_auto", t.c.embedding, distance="cosine", method="auto")
    pg_backend.run(md.create_all)
    try:
        report = {i.name: i for i in pg_backend.run(vk.inspect_vectors).indexes}
        assert (report[ivf.name].method, report[ivf.name].options) == ("ivfflat", {"lists": "100"})  # empty table
        assert report[auto.name].method == "hnsw"  # few rows: HNSW
        x = data("vector")
        pg_backend.run(lambda c: c.execute(sa.insert(t), [{"id": i, "cat": 0, "embedding": x[i]} for i in range(N)]))
        monkeypatch.setattr(vk_index, "AUTO_IVFFLAT_ROWS", 200)  # pretend 300 rows is a big table
        pg_backend.run(lambda c: (auto.drop(c), auto.create(c)))
        info = {i.name: i for i in pg_backend.run(vk.inspect_vectors).indexes}[auto.name]
        assert (info.method, info.options, info.opclass) == ("ivfflat", {"lists": "1"}, "vector_cosine_ops")  # 300 // 1000 -> 1
        assert auto.resolved == {"method": "ivfflat", "lists": 1, "rows": N}
    finally:
        pg_backend.run(md.drop_all)


def test_sqlite_binary_index_partitions_candidates_like_one_global_scan(sqlite_backend: Backend) -> None:
    """A binary index's vec0 table is split by rowid; the union of per-partition candidates,
    re-ranked exactly, matches numpy's top k, and every row lands in exactly one partition,
    negative keys and text keys included, through inserts, updates and deletes."""
    from sqlalchemy_vectorknobs.dialects.sqlite_search import BINARY_PARTITIONS

    md = sa.MetaData()
    name = unique("bin")
    t = sa.Table(
        name,
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("cat", sa.Integer, nullable=False),
        sa.Column("embedding", vk.Vector(64)),
    )
    tt = sa.Table(f"{name}_t", md, sa.Column("slug", sa.String(20), primary_key=True), sa.Column("embedding", vk.Vector(64)))
    index = vk.VectorIndex(f"{name}_idx", t.c.embedding, distance="cosine", precision="binary", metadata_columns=["cat"])
    text_index = vk.VectorIndex(f"{name}_tidx", tt.c.embedding, distance="cosine", precision="binary")
    local = np.random.default_rng(11)
    centers = local.standard_normal((8, 64)).astype(np.float32)
    x = (centers[local.integers(0, 8, 2000)] + 0.4 * local.standard_normal((2000, 64))).astype(np.float32)
    ids = np.arange(-1000, 1000)
    sqlite_backend.run(md.create_all)
    try:
        sqlite_backend.run(
            lambda c: c.execute(sa.insert(t), [{"id": int(i), "cat": int(i) % 5, "embedding": v} for i, v in zip(ids, x)])
        )
        sqlite_backend.run(lambda c: c.execute(sa.insert(tt), [{"slug": f"s{i}", "embedding": x[i]} for i in range(300)]))
        sqlite_backend.run(lambda c: c.execute(sa.delete(t).where(t.c.id.in_([-1000, 0, 999]))))
        x[1] = x[2]
        sqlite_backend.run(lambda c: c.execute(sa.update(t).where(t.c.id == -999).values(embedding=x[1])))
        keep = ~np.isin(ids, [-1000, 0, 999])
        parts = sqlite_backend.run(
            lambda c: c.exec_driver_sql(f'SELECT vk_partition, count(*) FROM "{index.name}" GROUP BY 1').all()
        )
        assert {p for p, _ in parts} == set(range(BINARY_PARTITIONS))
        assert sum(n for _, n in parts) == int(keep.sum())
        assert sqlite_backend.run(lambda c: c.exec_driver_sql(f'SELECT count(*) FROM "{text_index.name}"').scalar()) == 300
        xs, ks = x[keep], ids[keep]
        hits = total = 0
        for qi in range(20):
            q = (centers[qi % 8] + 0.4 * local.standard_normal(64)).astype(np.float32)
            ref = 1 - xs @ q / (np.linalg.norm(xs, axis=1) * np.linalg.norm(q))
            want = ks[np.argsort(ref)[:10]].tolist()
            stmt = vk.nearest(t.c.embedding, q, k=10)
            rows = sqlite_backend.run(lambda c, stmt=stmt: c.execute(stmt).all())
            assert len(rows) == 10
            got_d = [r.distance for r in rows]
            assert got_d == sorted(got_d)
            for r in rows:  # each distance is the exact one of that row
                assert r.distance == pytest.approx(float(ref[ks.tolist().index(r.id)]), abs=1e-4)
            hits += len({r.id for r in rows} & set(want))
            total += 10
            filtered = sqlite_backend.run(lambda c, q=q: c.execute(vk.nearest(t.c.embedding, q, k=10, where=t.c.cat == 2)).all())
            assert len(filtered) == 10 and all(r.id % 5 == 2 for r in filtered)
        assert hits / total >= 0.9, hits / total
        plan = sqlite_backend.run(lambda c: vk.explain(c, vk.nearest(t.c.embedding, x[5], k=10)))
        assert plan.vector_indexes_used == [index.name], plan.plan
        text_rows = sqlite_backend.run(lambda c: c.execute(vk.nearest(tt.c.embedding, x[7], k=3)).all())
        assert text_rows[0].slug == "s7"
    finally:
        sqlite_backend.run(md.drop_all)
