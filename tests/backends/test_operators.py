"""Every distance operator on every backend equals a numpy brute-force reference.

5,000 seeded random vectors per type; for each metric the top-10 ids of
``select(Doc).order_by(Doc.embedding.<metric>(q)).limit(10)`` must equal numpy's and the distances
must match within 1e-4.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, mapped_column

import sqlalchemy_vectorknobs as vk

from ..conftest import Backend, unique

N, DIM, BITS, SPARSE_DIM = 5000, 48, 72, 200
rng = np.random.default_rng(20261124)
DENSE = rng.standard_normal((N, DIM)).astype(np.float32)
HALF = rng.standard_normal((N, DIM)).astype(np.float16)
BITSET = rng.random((N, BITS)) < 0.3
SPARSE = (rng.random((N, SPARSE_DIM)) < 0.05) * rng.standard_normal((N, SPARSE_DIM))
SPARSE = SPARSE.astype(np.float32)
QUERIES = 3


def _cos(x: np.ndarray, q: np.ndarray) -> np.ndarray:
    return 1.0 - (x @ q) / (np.linalg.norm(x, axis=1) * np.linalg.norm(q))


def _jaccard(x: np.ndarray, q: np.ndarray) -> np.ndarray:
    inter = (x & q).sum(axis=1)
    union = (x | q).sum(axis=1)
    return 1.0 - inter / union


#: method name -> (numpy reference on float64 data, sort descending?)
FLOAT_METRICS: dict[str, tuple[Callable[[np.ndarray, np.ndarray], np.ndarray], bool]] = {
    "l2_distance": (lambda x, q: np.linalg.norm(x - q, axis=1), False),
    "cosine_distance": (_cos, False),
    "max_inner_product": (lambda x, q: -(x @ q), False),
    "inner_product": (lambda x, q: x @ q, True),
    "l1_distance": (lambda x, q: np.abs(x - q).sum(axis=1), False),
}
BIT_METRICS = {
    "hamming_distance": (lambda x, q: (x != q).sum(axis=1).astype(float), False),
    "jaccard_distance": (_jaccard, False),
}


class Base(DeclarativeBase):
    pass


def make_model(type_: vk.VectorType) -> type:
    name = unique("ops")
    return type(
        name,
        (Base,),
        {"__tablename__": name, "id": mapped_column(sa.Integer, primary_key=True, autoincrement=False), "embedding": mapped_column(type_)},
    )


@pytest.fixture(scope="module")
def loaded() -> dict[tuple[str, str], type]:
    return {}


def load(backend: Backend, loaded: dict[tuple[str, str], type], kind: str, data: np.ndarray, type_: vk.VectorType) -> type:
    key = (backend.id, kind)
    if key not in loaded:
        model = make_model(type_)
        backend.run(model.__table__.create)
        rows = [{"id": i, "embedding": data[i]} for i in range(N)]
        backend.run(lambda c: c.execute(sa.insert(model.__table__), rows))
        loaded[key] = model
    return loaded[key]


def check_top10(backend: Backend, model: Any, method: str, q: Any, reference: np.ndarray, descending: bool) -> None:
    col = model.embedding
    dist = getattr(col, method)(q)
    order = dist.desc() if descending else dist
    # Ties are possible for integer-valued Hamming distances: break them by id on both sides.
    stmt = sa.select(model, dist.label("d")).order_by(order, model.id).limit(10)

    def run(conn: sa.Connection) -> list[tuple[Any, float]]:
        with sa.orm.Session(bind=conn) as session:
            return [(row[0].id, row[1]) for row in session.execute(stmt)]

    got = backend.run(run)
    keyed = -reference if descending else reference
    expected = np.lexsort((np.arange(N), keyed))[:10]
    assert [i for i, _ in got] == expected.tolist(), f"{method} top-10 ids differ from numpy"
    np.testing.assert_allclose([d for _, d in got], reference[expected], atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("method", list(FLOAT_METRICS))
def test_vector_metrics_match_numpy(any_backend: Backend, loaded: dict, method: str) -> None:
    model = load(any_backend, loaded, "vector", DENSE, vk.Vector(DIM))
    ref_fn, desc = FLOAT_METRICS[method]
    for _ in range(QUERIES):
        q = rng.standard_normal(DIM).astype(np.float32)
        check_top10(any_backend, model, method, q, ref_fn(DENSE.astype(np.float64), q.astype(np.float64)), desc)


@pytest.mark.parametrize("method", list(FLOAT_METRICS))
def test_halfvec_metrics_match_numpy(backend: Backend, loaded: dict, method: str) -> None:
    model = load(backend, loaded, "halfvec", HALF, vk.HalfVector(DIM))
    ref_fn, desc = FLOAT_METRICS[method]
    q = rng.standard_normal(DIM).astype(np.float16)
    check_top10(backend, model, method, q, ref_fn(HALF.astype(np.float64), q.astype(np.float64)), desc)


@pytest.mark.parametrize("method", list(BIT_METRICS))
def test_bit_metrics_match_numpy(backend: Backend, loaded: dict, method: str) -> None:
    model = load(backend, loaded, "bit", BITSET, vk.BitVector(BITS))
    ref_fn, desc = BIT_METRICS[method]
    for _ in range(QUERIES):
        q = rng.random(BITS) < 0.3
        check_top10(backend, model, method, q, ref_fn(BITSET, q), desc)


@pytest.mark.parametrize("method", list(FLOAT_METRICS))
def test_sparsevec_metrics_match_numpy(pg_backend: Backend, loaded: dict, method: str) -> None:
    model = load(pg_backend, loaded, "sparse", SPARSE, vk.SparseVector(SPARSE_DIM))
    ref_fn, desc = FLOAT_METRICS[method]
    dense_q = ((rng.random(SPARSE_DIM) < 0.2) * rng.standard_normal(SPARSE_DIM)).astype(np.float32)
    q = {int(i): float(dense_q[i]) for i in np.flatnonzero(dense_q)}
    check_top10(pg_backend, model, method, q, ref_fn(SPARSE.astype(np.float64), dense_q.astype(np.float64)), desc)


@pytest.mark.parametrize("metric", ["l2", "euclidean", "cosine", "ip", "dot", "inner_product", "l1", "manhattan"])
def test_distance_by_metric_name_sorts_nearest_first(backend: Backend, loaded: dict, metric: str) -> None:
    model = load(backend, loaded, "vector", DENSE, vk.Vector(DIM))
    canonical = vk.Distance.parse(metric)
    method = {"l2": "l2_distance", "cosine": "cosine_distance", "inner_product": "max_inner_product", "l1": "l1_distance"}[
        canonical.value
    ]
    q = rng.standard_normal(DIM).astype(np.float32)
    stmt = sa.select(model.id).order_by(model.embedding.distance(q, metric)).limit(10)
    ids = backend.run(lambda c: c.execute(stmt).scalars().all())
    ref_fn, _ = FLOAT_METRICS[method]
    assert ids == np.argsort(ref_fn(DENSE.astype(np.float64), q.astype(np.float64)), kind="stable")[:10].tolist()


def test_vector_expression_as_query(backend: Backend, loaded: dict) -> None:
    """``q`` may be another vector expression: distances between stored rows."""
    model = load(backend, loaded, "vector", DENSE, vk.Vector(DIM))
    other = sa.orm.aliased(model)
    stmt = (
        sa.select(other.id, model.embedding.l2_distance(other.embedding))
        .select_from(model)
        .join(other, sa.true())
        .where(model.id == 0, other.id.in_([1, 2, 3]))
        .order_by(other.id)
    )
    got = backend.run(lambda c: c.execute(stmt).all())
    expected = np.linalg.norm(DENSE[[1, 2, 3]].astype(np.float64) - DENSE[0], axis=1)
    assert [r[0] for r in got] == [1, 2, 3]
    np.testing.assert_allclose([r[1] for r in got], expected, atol=1e-4)
