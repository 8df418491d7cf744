"""One contract, every mirror: the same writes go to each backend and to ``MemoryMirror``, then results are compared.

Expected distances are computed here with numpy from the vectors the test wrote (never through
the code under test). Exact backends must return the reference ids; approximate ones (Faiss HNSW
and IVF, Chroma, a real Elasticsearch cluster) must reach recall@10 >= 0.9, and every distance they
report must equal the reference distance of that id within 1e-4.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import sqlalchemy_vectorknobs as vk
from sqlalchemy_vectorknobs.exc import DimensionMismatchError, InvalidVectorError, VectorKnobsError
from sqlalchemy_vectorknobs.mirrors import (
    ChromaMirror,
    ElasticsearchMirror,
    FaissMirror,
    InvalidMirrorError,
    MemoryMirror,
    Mirror,
    MirrorError,
)

DIM = 16
K = 10
KINDS = ["memory", "faiss-flat", "faiss-hnsw", "faiss-ivf", "chroma", "elasticsearch"]
METRICS = ["cosine", "l2", "inner_product"]
PERSISTENT = ["faiss-flat", "faiss-hnsw", "faiss-ivf", "chroma"]
CATEGORIES = ["a", "b", "c", "d"]


class Base(DeclarativeBase):
    pass


class Doc(Base):
    __tablename__ = "doc"
    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    category: Mapped[str | None] = mapped_column(sa.String)
    rank: Mapped[int | None] = mapped_column(sa.Integer)
    embedding = mapped_column(vk.Vector(DIM))


class L2Doc(Base):
    __tablename__ = "l2doc"
    __table_args__ = (vk.VectorIndex("l2doc_embedding_idx", "embedding", distance="l2"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    embedding = mapped_column(vk.Vector(DIM))


class Note(Base):
    __tablename__ = "note"
    key: Mapped[str] = mapped_column(sa.String, primary_key=True)
    embedding = mapped_column(vk.Vector(DIM))


class Item(Base):
    __tablename__ = "item"
    key: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True)
    embedding = mapped_column(vk.Vector(DIM))


class Pair(Base):
    __tablename__ = "pair"
    a: Mapped[int] = mapped_column(primary_key=True)
    b: Mapped[int] = mapped_column(primary_key=True)
    embedding = mapped_column(vk.Vector(DIM))


class Bits(Base):
    __tablename__ = "bits"
    id: Mapped[int] = mapped_column(primary_key=True)
    code = mapped_column(vk.BitVector(64))
    loose = mapped_column(vk.Vector())


# --------------------------------------------------------------------------- reference maths


def reference(vectors: dict[Any, np.ndarray], query: np.ndarray, metric: str) -> dict[Any, float]:
    """Distance of every stored vector to ``query`` in the plugin's units, straight from numpy."""
    keys = list(vectors)
    if not keys:
        return {}
    m = np.stack([vectors[k] for k in keys]).astype(np.float64)
    q = np.asarray(query, dtype=np.float64)
    if metric == "cosine":
        d = 1.0 - (m @ q) / (np.linalg.norm(m, axis=1) * np.linalg.norm(q))
    elif metric == "l2":
        d = np.sqrt(((m - q) ** 2).sum(axis=1))
    else:
        d = -(m @ q)
    return dict(zip(keys, d.tolist()))


def top_k(dists: dict[Any, float], k: int) -> list[Any]:
    return [pk for pk, _ in sorted(dists.items(), key=lambda kv: kv[1])[:k]]


def close(a: float, b: float) -> bool:
    return bool(np.isclose(a, b, rtol=1e-4, atol=1e-4))


# --------------------------------------------------------------------------- mirrors under test


@pytest.fixture
def make(tmp_path: Any, es_url: str) -> Iterator[Callable[..., Any]]:
    """Build a mirror of ``kind``; each call gets fresh storage unless ``store`` names one to reuse."""
    made: list[Any] = []

    def build(kind: str, column: Any = Doc.embedding, *, store: str = "main", **kw: Any) -> Any:
        kw.setdefault("metadata_columns", ["category", "rank"] if column is Doc.embedding else [])
        if kind == "memory":
            mirror: Any = MemoryMirror(column, **kw)
        elif kind.startswith("faiss-"):
            sub = kind.split("-", 1)[1]
            if sub == "ivf":
                kw.setdefault("nlist", 8)
                kw.setdefault("nprobe", 4)
            if sub == "hnsw":
                kw.setdefault("m", 16)
            mirror = FaissMirror(column, path=tmp_path / f"{store}.vkfaiss", kind=sub, **kw)
        elif kind == "chroma":
            mirror = ChromaMirror(column, path=tmp_path / f"chroma-{store}", **kw)
        elif kind == "elasticsearch":
            index = f"vk-test-{store}-{tmp_path.name}".lower().replace("_", "-")[:200]
            mirror = ElasticsearchMirror(column, url=es_url, index=index, **kw)
        else:  # pragma: no cover
            raise AssertionError(kind)
        made.append(mirror)
        return mirror

    yield build
    for mirror in made:
        if mirror.backend == "elasticsearch" and not mirror.closed:
            mirror.clear()  # keep a real cluster tidy
        mirror.close()


def is_exact(kind: str, real_es: bool) -> bool:
    return kind in ("memory", "faiss-flat") or (kind == "elasticsearch" and not real_es)


class Workload:
    """Clustered vectors written in batches, then partly updated and deleted; ``truth`` is the result."""

    def __init__(self, seed: int = 7, n: int = 600) -> None:
        rng = np.random.default_rng(seed)
        centers = rng.normal(size=(12, DIM)) * 3.0
        self.rng = rng
        self.vectors = (centers[rng.integers(0, 12, n)] + rng.normal(size=(n, DIM))).astype(np.float32)
        self.ids = list(range(1, n + 1))
        self.meta = [{"category": CATEGORIES[i % 4], "rank": i % 7} for i in range(n)]
        self.queries = np.concatenate(
            [centers[:8] + rng.normal(size=(8, DIM)) * 0.5, rng.normal(size=(12, DIM)) * 3.0]
        ).astype(np.float32)
        self.truth: dict[int, np.ndarray] = {}
        self.truth_meta: dict[int, dict[str, Any]] = {}

    def apply(self, *mirrors: Any) -> None:
        for start in range(0, len(self.ids), 200):
            ids = self.ids[start : start + 200]
            vecs = self.vectors[start : start + 200]
            meta = self.meta[start : start + 200]
            for m in mirrors:
                assert m.upsert(ids, vecs, meta) == len(ids)
            for i, pk in enumerate(ids):
                self.truth[pk], self.truth_meta[pk] = vecs[i], meta[i]
        moved_ids = list(range(1, 61))
        moved = (self.vectors[(np.arange(60) + len(self.ids) // 2) % len(self.ids)] * -1.0 + 0.5).astype(np.float32)
        moved_meta = [{"category": "d", "rank": 99} for _ in moved_ids]
        for m in mirrors:
            assert m.upsert(moved_ids, [row.tolist() for row in moved], moved_meta) == 60
        for i, pk in enumerate(moved_ids):
            self.truth[pk], self.truth_meta[pk] = moved[i], moved_meta[i]
        gone = list(range(561, 601)) + list(range(100, 111)) + [10_000]
        for m in mirrors:
            assert m.delete(gone) == len(gone)
        for pk in gone:
            self.truth.pop(pk, None)
            self.truth_meta.pop(pk, None)


def check_against_reference(
    mirror: Any, oracle: Any, wl: Workload, metric: str, exact: bool, where: dict[str, Any] | None = None
) -> None:
    candidates = wl.truth
    if where:
        def ok(pk: int) -> bool:
            md = wl.truth_meta[pk]
            return all(md.get(col) in (v if isinstance(v, list) else [v]) for col, v in where.items())

        candidates = {pk: v for pk, v in wl.truth.items() if ok(pk)}
    hits = 0
    for q in wl.queries:
        ref = reference(candidates, q, metric)
        want = top_k(ref, K)
        got = mirror.search(q, K, where=where)
        expected = oracle.search(q, K, where=where)
        assert [pk for pk, _ in expected] == want, "the memory oracle disagrees with numpy"
        assert all(close(d, ref[pk]) for pk, d in expected)
        dists = [d for _, d in got]
        assert dists == sorted(dists), "results are not nearest first"
        assert len({pk for pk, _ in got}) == len(got)
        for pk, d in got:
            assert pk in candidates, f"{pk} is deleted or filtered out"
            assert close(d, ref[pk]), f"distance of {pk}: got {d}, numpy says {ref[pk]}"
        if exact:
            assert [pk for pk, _ in got] == want
        hits += len({pk for pk, _ in got} & set(want))
    recall = hits / (len(wl.queries) * min(K, len(candidates)))
    assert recall >= (1.0 if exact else 0.9), f"recall@{K} = {recall:.3f}"


# --------------------------------------------------------------------------- the contract


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("kind", KINDS)
def test_search_matches_reference(kind: str, metric: str, make: Callable[..., Any], real_es: bool) -> None:
    mirror = make(kind, distance=metric)
    oracle = MemoryMirror(Doc.embedding, distance=metric, metadata_columns=["category", "rank"])
    wl = Workload()
    wl.apply(mirror, oracle)
    assert mirror.count() == oracle.count() == len(wl.truth)
    assert mirror.ids() == oracle.ids() == set(wl.truth)
    if kind == "faiss-ivf":
        assert mirror.trained
    check_against_reference(mirror, oracle, wl, metric, is_exact(kind, real_es))


@pytest.mark.parametrize("kind", KINDS)
def test_where_filters(kind: str, make: Callable[..., Any], real_es: bool) -> None:
    mirror = make(kind)
    oracle = MemoryMirror(Doc.embedding, metadata_columns=["category", "rank"])
    wl = Workload(seed=11)
    wl.apply(mirror, oracle)
    exact = is_exact(kind, real_es)
    for where in ({"category": "a"}, {"category": ["a", "c"]}, {"category": "b", "rank": [1, 2, 3]}, {"rank": 99}):
        check_against_reference(mirror, oracle, wl, "cosine", exact, where=where)
    q = wl.queries[0]
    assert mirror.search(q, K, where={"category": "zzz"}) == []
    assert mirror.search(q, K, where={"category": []}) == []
    with pytest.raises(InvalidMirrorError, match="cannot filter on 'embedding'"):
        mirror.search(q, K, where={"embedding": 1})
    with pytest.raises(InvalidMirrorError, match="None"):
        mirror.search(q, K, where={"category": None})


@pytest.mark.parametrize("kind", KINDS)
def test_get_and_ids(kind: str, make: Callable[..., Any]) -> None:
    mirror = make(kind)
    wl = Workload(seed=3, n=80)
    wl.apply(mirror)
    got = mirror.get([1, 2, 50, 565, 99_999])
    assert set(got) == {1, 2, 50}
    for pk, vec in got.items():
        assert vec.dtype == np.float32 and vec.shape == (DIM,)
        np.testing.assert_allclose(vec, wl.truth[pk], rtol=1e-5, atol=1e-6)
    assert mirror.get([]) == {}
    assert mirror.ids() == set(wl.truth)
    assert all(type(pk) is int for pk in mirror.ids())
    assert all(type(pk) is int for pk, _ in mirror.search(wl.queries[0], 3))


@pytest.mark.parametrize("kind", KINDS)
def test_versions_out_of_order(kind: str, make: Callable[..., Any]) -> None:
    mirror = make(kind)
    rng = np.random.default_rng(5)
    a, b, c, d = (rng.normal(size=DIM).astype(np.float32) for _ in range(4))

    def stored(pk: int) -> np.ndarray | None:
        return mirror.get([pk]).get(pk)

    assert mirror.upsert([1], [a], versions=[2]) == 1
    assert mirror.upsert([1], [b], versions=[1]) == 0, "an older version must be ignored"
    np.testing.assert_allclose(stored(1), a, rtol=1e-5)
    assert mirror.upsert([1], [b], versions=[2]) == 0, "a replayed version is already applied"

    assert mirror.delete([1], versions=[3]) == 1
    assert mirror.upsert([1], [b], versions=[2]) == 0, "an older upsert must not resurrect a deleted id"
    assert stored(1) is None and 1 not in mirror.ids() and mirror.count() == 0
    assert all(pk != 1 for pk, _ in mirror.search(b, 5))
    assert mirror.delete([1], versions=[2]) == 0
    assert mirror.upsert([1], [b], versions=[4]) == 1
    np.testing.assert_allclose(stored(1), b, rtol=1e-5)

    # a delete that arrives first still leaves its tombstone
    assert mirror.delete([9], versions=[5]) == 1
    assert mirror.upsert([9], [a], versions=[4]) == 0
    assert mirror.upsert([9], [a], versions=[6]) == 1

    # one batch: the highest version of an id wins, whatever the order
    assert mirror.upsert([2, 2], [c, d], versions=[3, 2]) == 1
    np.testing.assert_allclose(stored(2), c, rtol=1e-5)

    # an unversioned write applies and keeps the recorded version
    assert mirror.upsert([1], [c]) == 1
    np.testing.assert_allclose(stored(1), c, rtol=1e-5)
    assert mirror.upsert([1], [d], versions=[4]) == 0
    assert mirror.upsert([1], [d], versions=[5]) == 1
    np.testing.assert_allclose(stored(1), d, rtol=1e-5)
    assert mirror.delete([1]) == 1
    assert mirror.upsert([1], [a], versions=[5]) == 0
    assert mirror.ids() == {2, 9}


@pytest.mark.parametrize("kind", KINDS)
def test_bad_input_writes_nothing(kind: str, make: Callable[..., Any]) -> None:
    mirror = make(kind)
    rng = np.random.default_rng(1)
    good = rng.normal(size=(3, DIM)).astype(np.float32)
    mirror.upsert([1, 2, 3], good, [{"category": "a"}] * 3)
    before = mirror.get([1, 2, 3])

    short = [good[0].tolist(), good[1][:5].tolist()]
    with pytest.raises(DimensionMismatchError, match="expects 16 dimensions, got 5"):
        mirror.upsert([4, 5], short)
    with pytest.raises(DimensionMismatchError):
        mirror.upsert([4, 5], np.zeros((2, DIM + 1), dtype=np.float32))
    with_nan = rng.normal(size=(2, DIM))
    with_nan[1, 3] = np.nan
    with pytest.raises(InvalidVectorError, match="finite"):
        mirror.upsert([1, 6], with_nan)
    with pytest.raises(InvalidVectorError, match="float32"):
        mirror.upsert([1], np.full((1, DIM), 1e300))
    with pytest.raises(InvalidMirrorError, match="2 ids and 3 vectors"):
        mirror.upsert([1, 7], good)
    with pytest.raises(InvalidMirrorError, match="metadata key 'colour'"):
        mirror.upsert([1, 7], good[:2], [{"category": "x"}, {"colour": "red"}])
    with pytest.raises(InvalidMirrorError, match="only str, int, float, bool or None"):
        mirror.upsert([7], good[:1], [{"category": object()}])
    with pytest.raises(InvalidMirrorError, match="primary key 'x'"):
        mirror.upsert([7, "x"], good[:2])
    with pytest.raises(InvalidMirrorError, match="primary key 18446744073709551616"):
        mirror.upsert([2**64], good[:1])
    with pytest.raises(InvalidMirrorError, match="ids of type str"):
        mirror.get("123")
    with pytest.raises(InvalidMirrorError, match="version"):
        mirror.upsert([1], good[:1], versions=[0])
    # plain ints are checked as a whole: a bool or an out-of-range int among them is still refused
    with pytest.raises(InvalidMirrorError, match="got version True"):
        mirror.upsert([1, 2], good[:2], versions=[5, True])
    with pytest.raises(InvalidMirrorError, match=f"got version {2**63}"):
        mirror.upsert([1, 2], good[:2], versions=[5, 2**63])
    with pytest.raises(InvalidMirrorError, match="metadata of type list for id 2"):
        mirror.upsert([1, 2], good[:2], [{"category": "x"}, ["category"]])  # type: ignore[list-item]
    with pytest.raises(InvalidMirrorError, match="1 versions for 2 ids"):
        mirror.delete([1, 2], versions=[3])
    with pytest.raises(VectorKnobsError):
        mirror.upsert("abc", good[:1])
    with pytest.raises(DimensionMismatchError):
        mirror.search(good[0][:4], 3)
    with pytest.raises(InvalidMirrorError, match="k=0"):
        mirror.search(good[0], 0)

    assert mirror.count() == 3 and mirror.ids() == {1, 2, 3}
    after = mirror.get([1, 2, 3])
    for pk in before:
        np.testing.assert_array_equal(after[pk], before[pk])
    assert mirror.search(good[0], 3, where={"category": "x"}) == []


@pytest.mark.parametrize("kind", KINDS)
def test_clear_forgets_records_and_versions(kind: str, make: Callable[..., Any]) -> None:
    mirror = make(kind)
    wl = Workload(seed=2, n=50)
    wl.apply(mirror)
    mirror.upsert([1], wl.vectors[:1], versions=[50])
    mirror.clear()
    assert mirror.count() == 0 and mirror.ids() == set()
    assert mirror.search(wl.queries[0], 5) == []
    assert mirror.upsert([1], wl.vectors[:1], versions=[1]) == 1
    assert mirror.ids() == {1}


@pytest.mark.parametrize("kind", KINDS)
def test_protocol_and_description(kind: str, make: Callable[..., Any]) -> None:
    mirror = make(kind, Doc.__table__.c.embedding, metadata_columns=["category"])
    assert isinstance(mirror, Mirror)
    assert mirror.column is Doc.__table__.c.embedding
    assert mirror.table is Doc.__table__ and mirror.pk_column is Doc.__table__.c.id
    assert mirror.dim == DIM and mirror.distance is vk.Distance.COSINE
    assert mirror.metadata_columns == ("category",)
    assert mirror.name == f"{mirror.backend}:doc.embedding"
    assert mirror.upsert([], np.zeros((0, DIM))) == 0 and mirror.delete([]) == 0
    mirror.close()
    mirror.close()
    with pytest.raises(MirrorError, match="closed"):
        mirror.count()


@pytest.mark.parametrize("kind", KINDS)
def test_distance_comes_from_the_vector_index(kind: str, make: Callable[..., Any]) -> None:
    assert make(kind, L2Doc.embedding, store="l2").distance is vk.Distance.L2
    assert make(kind, L2Doc.embedding, store="ip", distance="dot").distance is vk.Distance.INNER_PRODUCT


@pytest.mark.parametrize("kind", ["memory", "chroma", "elasticsearch"])
def test_string_and_uuid_keys(kind: str, make: Callable[..., Any]) -> None:
    rng = np.random.default_rng(4)
    vecs = rng.normal(size=(3, DIM)).astype(np.float32)
    notes = make(kind, Note.embedding, store="notes")
    notes.upsert(["x", "y", "z"], vecs)
    assert notes.ids() == {"x", "y", "z"}
    assert notes.search(vecs[1], 1)[0][0] == "y"
    items = make(kind, Item.embedding, store="items")
    keys = [uuid.uuid4() for _ in range(3)]
    items.upsert([keys[0], str(keys[1]), keys[2]], vecs)
    assert items.ids() == set(keys)
    assert items.search(vecs[1], 1)[0][0] == keys[1]


# --------------------------------------------------------------------------- construction errors


def test_construction_errors(tmp_path: Any) -> None:
    with pytest.raises(InvalidMirrorError, match="2 primary key columns"):
        MemoryMirror(Pair.embedding)
    with pytest.raises(InvalidMirrorError, match="BitVector"):
        MemoryMirror(Bits.code)
    with pytest.raises(InvalidMirrorError, match="declared dimension"):
        MemoryMirror(Bits.loose)
    with pytest.raises(InvalidMirrorError, match="l1 distance"):
        MemoryMirror(Doc.embedding, distance="l1")
    with pytest.raises(vk.InvalidDistanceError):
        MemoryMirror(Doc.embedding, distance="nope")
    with pytest.raises(InvalidMirrorError, match="'colour' is not a column"):
        MemoryMirror(Doc.embedding, metadata_columns=["colour"])
    with pytest.raises(InvalidMirrorError, match="vector column itself"):
        MemoryMirror(Doc.embedding, metadata_columns=["embedding"])
    with pytest.raises(InvalidMirrorError, match="mapped attribute"):
        MemoryMirror("embedding")
    with pytest.raises(InvalidMirrorError, match="supports primary keys of type int"):
        FaissMirror(Note.embedding)
    with pytest.raises(InvalidMirrorError, match="kind 'pq'"):
        FaissMirror(Doc.embedding, kind="pq")
    with pytest.raises(InvalidMirrorError, match="train_size=3"):
        FaissMirror(Doc.embedding, kind="ivf", nlist=8, train_size=3)
    with pytest.raises(InvalidMirrorError, match="exactly one of path"):
        ChromaMirror(Doc.embedding)
    with pytest.raises(InvalidMirrorError, match="exactly one of client"):
        ElasticsearchMirror(Doc.embedding)
    with pytest.raises(InvalidMirrorError, match="index name"):
        ElasticsearchMirror(Doc.embedding, url="http://127.0.0.1:9", index="Upper")
    with pytest.raises(InvalidMirrorError, match="has no path"):
        FaissMirror(Doc.embedding).save()
    assert issubclass(MirrorError, RuntimeError) and issubclass(InvalidMirrorError, ValueError)
    assert issubclass(MirrorError, VectorKnobsError) and issubclass(InvalidMirrorError, VectorKnobsError)


# --------------------------------------------------------------------------- persistence


@pytest.mark.parametrize("kind", PERSISTENT)
def test_close_and_reopen(kind: str, make: Callable[..., Any]) -> None:
    first = make(kind, store="persist")
    wl = Workload(seed=9, n=400)
    wl.apply(first)
    first.delete([5], versions=[10])
    wl.truth.pop(5, None)
    before = [first.search(q, K) for q in wl.queries[:5]]
    first.close()

    again = make(kind, store="persist")
    assert again.count() == len(wl.truth) and again.ids() == set(wl.truth)
    got = again.get([1, 2, 300])
    for pk, vec in got.items():
        np.testing.assert_allclose(vec, wl.truth[pk], rtol=1e-5, atol=1e-6)
    assert again.upsert([5], wl.vectors[:1], versions=[9]) == 0, "tombstone versions survive a reopen"
    if kind.startswith("faiss"):
        # Faiss saves the index itself, so the reloaded graph answers exactly as before.
        for q, old in zip(wl.queries[:5], before):
            assert [pk for pk, _ in again.search(q, K)] == [pk for pk, _ in old]
    else:
        # Chroma rebuilds its HNSW graph from its own log on open, and an approximate graph built
        # in another order may rank a near tie differently: judge the reopened mirror against numpy.
        oracle = MemoryMirror(Doc.embedding, metadata_columns=["category", "rank"])
        Workload(seed=9, n=400).apply(oracle)
        oracle.delete([5])
        check_against_reference(again, oracle, wl, "cosine", exact=False)
    if kind.startswith("faiss"):
        assert again.search(wl.queries[0], K, where={"category": "a"})
        assert again.metadata(7) == wl.truth_meta[7]


def test_faiss_reopen_keeps_hnsw_tombstones_and_ivf_training(make: Callable[..., Any]) -> None:
    hnsw = make("faiss-hnsw", store="h", tombstone_ratio=1.0)
    wl = Workload(seed=4, n=300)
    wl.apply(hnsw)
    assert hnsw.tombstones == 60 + 11  # 60 updated + 11 deleted nodes stay in the graph
    hnsw.close()
    again = make("faiss-hnsw", store="h", tombstone_ratio=1.0)
    assert again.tombstones == 71 and again.count() == len(wl.truth)
    oracle = MemoryMirror(Doc.embedding, metadata_columns=["category", "rank"])
    wl2 = Workload(seed=4, n=300)
    wl2.apply(oracle)
    check_against_reference(again, oracle, wl2, "cosine", exact=False)
    again.compact()
    assert again.tombstones == 0
    check_against_reference(again, oracle, wl2, "cosine", exact=False)

    ivf = make("faiss-ivf", store="i", nlist=4, train_size=200)
    ivf.upsert(list(range(1, 151)), wl.vectors[:150])
    assert not ivf.trained
    ivf.close()
    ivf = make("faiss-ivf", store="i", nlist=4, train_size=200)
    ivf.upsert(list(range(151, 251)), wl.vectors[150:250])
    assert ivf.trained
    ivf.close()
    ivf = make("faiss-ivf", store="i", nlist=4, train_size=200)
    assert ivf.trained and ivf.count() == 250
    ivf.delete([1, 2])
    assert ivf.count() == 248 and 1 not in ivf.ids()


def test_faiss_hnsw_rebuilds_when_tombstones_pile_up(make: Callable[..., Any]) -> None:
    mirror = make("faiss-hnsw", tombstone_ratio=0.3, autosave=False)
    oracle = MemoryMirror(Doc.embedding, metadata_columns=["category", "rank"])
    wl = Workload(seed=8, n=300)
    wl.apply(mirror, oracle)
    for round_ in range(4):
        ids = list(range(200, 260))
        vecs = wl.rng.normal(size=(60, DIM)).astype(np.float32) * 3
        for m in (mirror, oracle):
            m.upsert(ids, vecs, [{"category": "a", "rank": round_}] * 60)
        for i, pk in enumerate(ids):
            wl.truth[pk], wl.truth_meta[pk] = vecs[i], {"category": "a", "rank": round_}
        assert mirror.tombstones <= 0.3 * (mirror.count() + mirror.tombstones) + 1
    check_against_reference(mirror, oracle, wl, "cosine", exact=False)
    check_against_reference(mirror, oracle, wl, "cosine", exact=False, where={"rank": 3})


@pytest.mark.parametrize("kind", ["faiss-flat", "faiss-hnsw", "faiss-ivf"])
def test_faiss_filters_through_id_selectors(kind: str, make: Callable[..., Any]) -> None:
    # exact_filter_limit=0: filters are applied inside the Faiss search (IDSelectorBatch / Bitmap)
    mirror = make(kind, exact_filter_limit=0, tombstone_ratio=1.0)
    oracle = MemoryMirror(Doc.embedding, metadata_columns=["category", "rank"])
    wl = Workload(seed=12)
    wl.apply(mirror, oracle)
    for where in ({"category": "a"}, {"category": ["b", "d"]}, {"rank": [1, 2]}):
        check_against_reference(mirror, oracle, wl, "cosine", exact=kind == "faiss-flat", where=where)


def test_faiss_ivf_is_exact_until_trained(make: Callable[..., Any]) -> None:
    mirror = make("faiss-ivf", nlist=8)  # trains at 39 * 8 = 312 vectors
    oracle = MemoryMirror(Doc.embedding, metadata_columns=["category", "rank"])
    wl = Workload(seed=6, n=200)
    wl.apply(mirror, oracle)
    assert not mirror.trained
    check_against_reference(mirror, oracle, wl, "cosine", exact=True)


def test_faiss_save_is_atomic(make: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    import faiss

    mirror = make("faiss-flat", store="atomic")
    rng = np.random.default_rng(0)
    mirror.upsert([1, 2, 3], rng.normal(size=(3, DIM)), versions=[1, 1, 1])
    mirror.save()
    path = tmp_path / "atomic.vkfaiss"
    saved = path.read_bytes()
    real_write = faiss.write_index

    def broken_write(index: Any, writer: Any) -> None:
        real_write(index, writer)  # the temp file now holds a complete-looking index...
        raise RuntimeError("disk full")  # ...but the save fails before it is committed

    monkeypatch.setattr(faiss, "write_index", broken_write)
    with pytest.raises(MirrorError, match="previous file is unchanged"):
        mirror.save()
    assert path.read_bytes() == saved
    # a save failed: the next write saves everything first, and fails the same way
    with pytest.raises(MirrorError, match="previous file is unchanged"):
        mirror.upsert([4], rng.normal(size=(1, DIM)), versions=[1])
    monkeypatch.undo()
    assert path.read_bytes() == saved
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []
    reopened = FaissMirror(Doc.embedding, path=path)
    assert reopened.ids() == {1, 2, 3}
    assert reopened.upsert([1], rng.normal(size=(1, DIM)), versions=[1]) == 0
    reopened.close()
    # retrying the failed write changes nothing in memory (it is there), but reaches the disk now
    assert mirror.upsert([4], rng.normal(size=(1, DIM)), versions=[1]) == 0
    again = FaissMirror(Doc.embedding, path=path)
    assert again.ids() == {1, 2, 3, 4}
    again.close()


def _journal(path: Any) -> Any:
    return path.with_name(path.name + ".journal")


def test_faiss_journal_makes_each_write_durable_without_a_new_snapshot(tmp_path: Any) -> None:
    path = tmp_path / "j.vkfaiss"
    rng = np.random.default_rng(1)
    live = FaissMirror(Doc.embedding, path=path, kind="hnsw", metadata_columns=["category"])
    live.upsert([1, 2, 3], rng.normal(size=(3, DIM)), [{"category": "a"}] * 3, versions=[1, 1, 1])  # first write: a snapshot
    snapshot = path.read_bytes()
    live.upsert([2], rng.normal(size=(1, DIM)), [{"category": "b"}], versions=[2])
    live.delete([3], versions=[2])
    live.upsert([4], rng.normal(size=(1, DIM)))
    assert path.read_bytes() == snapshot and _journal(path).stat().st_size > 0
    # no close(): as if the process died right here
    crashed = FaissMirror(Doc.embedding, path=path, kind="hnsw", metadata_columns=["category"])
    assert crashed.ids() == {1, 2, 4} and crashed.metadata(2) == {"category": "b"}
    np.testing.assert_allclose(crashed.get([2])[2], live.get([2])[2], rtol=1e-6)
    assert crashed.recorded_versions([2, 3]) == {2: 2, 3: 2}
    assert crashed.upsert([3], rng.normal(size=(1, DIM)), versions=[1]) == 0  # the tombstone was journaled
    crashed.close()
    live.close()


def test_faiss_journal_torn_tail_is_cut_off(tmp_path: Any) -> None:
    path = tmp_path / "torn.vkfaiss"
    rng = np.random.default_rng(2)
    with FaissMirror(Doc.embedding, path=path) as m:
        m.upsert([1], rng.normal(size=(1, DIM)))
        m.upsert([2], rng.normal(size=(1, DIM)))
        m.upsert([3], rng.normal(size=(1, DIM)))
    journal = _journal(path)
    whole = journal.read_bytes()
    journal.write_bytes(whole[:-10])  # the last append was cut short by a crash
    with FaissMirror(Doc.embedding, path=path) as m:
        assert m.ids() == {1, 2}
        assert journal.stat().st_size < len(whole) - 10  # the torn record is gone from the file
        m.upsert([5], rng.normal(size=(1, DIM)))
    with FaissMirror(Doc.embedding, path=path) as m:
        assert m.ids() == {1, 2, 5}
    journal.write_bytes(journal.read_bytes() + b"VKJ1 garbage")
    with FaissMirror(Doc.embedding, path=path) as m:
        assert m.ids() == {1, 2, 5}


def test_faiss_snapshot_skips_journal_records_it_already_holds(tmp_path: Any) -> None:
    path = tmp_path / "seq.vkfaiss"
    a, b = np.full((1, DIM), 1.0), np.full((1, DIM), 2.0)
    with FaissMirror(Doc.embedding, path=path) as m:
        m.upsert([9], np.ones((1, DIM)))
        m.upsert([1], b)  # unversioned: applies, no version
        m.upsert([1], a, versions=[5])  # then a versioned write wins
        journal = _journal(path).read_bytes()
        m.save()  # the snapshot holds both; the journal is emptied ...
    assert _journal(path).stat().st_size == 0
    _journal(path).write_bytes(journal)  # ... unless the process died between the two steps
    with FaissMirror(Doc.embedding, path=path) as m:
        np.testing.assert_allclose(m.get([1])[1], a[0])  # replaying from the snapshot would end with b


def test_faiss_journal_is_folded_into_a_snapshot_when_it_outgrows_it(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlalchemy_vectorknobs.mirrors.faiss as faiss_module

    monkeypatch.setattr(faiss_module, "MIN_JOURNAL_BYTES", 0)
    path = tmp_path / "fold.vkfaiss"
    rng = np.random.default_rng(3)
    with FaissMirror(Doc.embedding, path=path) as m:
        m.upsert(list(range(1, 11)), rng.normal(size=(10, DIM)))
        sizes = []
        for pk in range(11, 60):
            m.upsert([pk], rng.normal(size=(1, DIM)))
            sizes.append(_journal(path).stat().st_size)
        assert max(sizes) <= path.stat().st_size + 2 * (DIM * 4 + 200)
        assert 0 in sizes  # it was emptied along the way
    with FaissMirror(Doc.embedding, path=path) as m:
        assert m.count() == 59


def test_faiss_refuses_foreign_or_mismatched_files(tmp_path: Any) -> None:
    junk = tmp_path / "junk.vkfaiss"
    junk.write_bytes(b"not a faiss mirror")
    with pytest.raises(MirrorError, match="not a FaissMirror file"):
        FaissMirror(Doc.embedding, path=junk)
    path = tmp_path / "flat.vkfaiss"
    with FaissMirror(Doc.embedding, path=path) as m:
        m.upsert([1], np.ones((1, DIM)))
    with pytest.raises(InvalidMirrorError, match="kind 'flat'"):
        FaissMirror(Doc.embedding, path=path, kind="hnsw")
    with pytest.raises(InvalidMirrorError, match="distance 'cosine'"):
        FaissMirror(Doc.embedding, path=path, distance="l2")
    truncated = tmp_path / "cut.vkfaiss"
    truncated.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(MirrorError, match="could not read"):
        FaissMirror(Doc.embedding, path=truncated)


def test_faiss_autosave_off_saves_on_close(tmp_path: Any) -> None:
    path = tmp_path / "bulk.vkfaiss"
    m = FaissMirror(Doc.embedding, path=path, autosave=False)
    m.upsert([1, 2], np.ones((2, DIM)))
    assert not path.exists()
    m.close()
    assert FaissMirror(Doc.embedding, path=path).count() == 2


@pytest.mark.parametrize("kind", ["memory", "faiss-flat", "faiss-hnsw", "chroma"])
def test_zero_vector_has_cosine_distance_one(kind: str, make: Callable[..., Any]) -> None:
    mirror = make(kind)
    mirror.upsert([1, 2], [[0.0] * DIM, [1.0] * DIM])
    found = dict(mirror.search([1.0] + [0.0] * (DIM - 1), 2))
    assert close(found[1], 1.0) and close(found[2], 1.0 - 1.0 / np.sqrt(DIM))
    np.testing.assert_array_equal(mirror.get([1])[1], np.zeros(DIM, dtype=np.float32))


# --------------------------------------------------------------------------- Elasticsearch specifics


def test_elasticsearch_unreachable_server_is_a_mirror_error() -> None:
    mirror = ElasticsearchMirror(Doc.embedding, url="http://127.0.0.1:9", client_options={"max_retries": 0})
    with pytest.raises(MirrorError, match="could not reach http://127.0.0.1:9"):
        mirror.count()
    mirror.close()


def test_elasticsearch_rejections(make: Callable[..., Any]) -> None:
    mirror = make("elasticsearch", store="dims")
    mirror.upsert([1], np.ones((1, DIM)))
    with pytest.raises(MirrorError, match="zero magnitude"):
        mirror.upsert([2], np.zeros((1, DIM)))
    other = make("elasticsearch", L2Doc.embedding, store="dims")  # same index name, other similarity
    with pytest.raises(InvalidMirrorError, match="similarity=l2_norm"):
        other.count()


@pytest.mark.parametrize("kind", ["chroma", "elasticsearch"])
def test_small_pages_and_chunks(kind: str, make: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    # pages of 7 ids and write chunks of 7 documents: every listing and batch crosses boundaries
    module = sys.modules[type(make(kind, store="probe")).__module__]
    monkeypatch.setattr(module, "_PAGE", 7)
    mirror = make(kind, store="pages", **({"chunk_size": 7} if kind == "elasticsearch" else {}))
    if kind == "chroma":
        mirror._batch = 7  # Chroma's own limit is in the thousands
    wl = Workload(seed=13, n=60)
    wl.apply(mirror)
    assert mirror.ids() == set(wl.truth) and mirror.count() == len(wl.truth)
    got = mirror.get(sorted(wl.truth))
    assert set(got) == set(wl.truth)
    versions = list(range(1, 31))
    assert mirror.delete(list(range(1, 31)), versions=versions) == 30
    assert mirror.upsert(list(range(1, 31)), wl.vectors[:30], versions=[v - 1 if v > 1 else 1 for v in versions]) == 0
    assert mirror.ids() == set(wl.truth) - set(range(1, 31))


def test_chroma_never_loads_an_embedding_model(make: Callable[..., Any]) -> None:
    mirror = make("chroma")
    assert mirror.collection._embedding_function is None  # the point of the test
    mirror.upsert([1], np.ones((1, DIM)))
    assert mirror.search(np.ones(DIM), 1)[0][0] == 1


def test_importing_mirrors_loads_no_backend() -> None:
    probe = (
        "import sys, sqlalchemy_vectorknobs.mirrors as m; "
        "print(sorted(x for x in ('faiss', 'chromadb', 'elasticsearch') if x in sys.modules)); "
        "print(m.__all__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True, cwd=os.getcwd()
    ).stdout.splitlines()
    assert out[0] == "[]"
