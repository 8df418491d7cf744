"""Values users bring from pgvector-python and the drivers are accepted on every backend, and pg8000
is a full PostgreSQL driver: every type read and written, every operator equal to numpy."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import asyncpg
import numpy as np
import pgvector
import pytest
import sqlalchemy as sa

import sqlalchemy_vectorknobs as vk

from ..conftest import Backend, _get_backend, unique

EVERY_BACKEND = ["sqlite", "sqlite-aiosqlite", "pg-psycopg", "pg-psycopg-async", "pg-asyncpg", "pg-psycopg2", "pg-pg8000"]
PG_ALL = ["pg-psycopg", "pg-psycopg-async", "pg-asyncpg", "pg-psycopg2", "pg-pg8000"]
DENSE = [0.5, -1.25, 3.0, 0.0]
BITS = [True, False, True, True]


@pytest.fixture(params=EVERY_BACKEND)
def every(request: pytest.FixtureRequest) -> Backend:
    return _get_backend(request, request.param)


@pytest.fixture(params=PG_ALL)
def pg_any(request: pytest.FixtureRequest) -> Backend:
    return _get_backend(request, request.param)


def _table(backend: Backend) -> tuple[sa.MetaData, sa.Table]:
    md = sa.MetaData()
    cols = [
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("v", vk.Vector(4)),
        sa.Column("h", vk.HalfVector(4)),
        sa.Column("b", vk.BitVector(4)),
    ]
    if backend.dialect == "postgresql":
        cols.append(sa.Column("s", vk.SparseVector(4)))
    return md, sa.Table(unique("inputs"), md, *cols)


@pytest.fixture
def table(every: Backend) -> Iterator[sa.Table]:
    md, t = _table(every)
    every.create(md)
    yield t
    every.drop(md)


# (column, value object, what the column holds) for every pgvector-python value class
PGVECTOR_OBJECTS = [
    ("v", pgvector.Vector(DENSE), DENSE),
    ("v", pgvector.HalfVector(DENSE), DENSE),
    ("v", pgvector.SparseVector(DENSE), DENSE),
    ("h", pgvector.HalfVector(DENSE), DENSE),
    ("h", pgvector.Vector(DENSE), DENSE),
    ("b", pgvector.Bit(BITS), BITS),
    ("b", pgvector.Bit("1011"), BITS),
    ("s", pgvector.SparseVector(DENSE), DENSE),
    ("s", pgvector.SparseVector({0: 0.5, 1: -1.25, 2: 3.0}, 4), DENSE),
    ("s", pgvector.Vector(DENSE), DENSE),
    ("b", asyncpg.BitString("1011"), BITS),
]


@pytest.mark.parametrize(("column", "value", "expected"), PGVECTOR_OBJECTS, ids=lambda x: type(x).__name__ if not isinstance(x, (str, list)) else str(x)[:3])
def test_pgvector_and_asyncpg_values_bind_on_every_backend(
    every: Backend, table: sa.Table, column: str, value: Any, expected: list[Any]
) -> None:
    if column not in table.c:
        pytest.skip("sparsevec is a pgvector type; SQLite + sqlite-vec cannot store SparseVector")
    every.run(lambda c: c.execute(table.insert(), [{"id": 1, column: value}]))
    got = every.run(lambda c: c.execute(sa.select(table.c[column])).scalar_one())
    np.testing.assert_array_equal(got, np.asarray(expected, dtype=got.dtype))
    # the same object as a query parameter: distance 0 to itself
    metric = "hamming" if column == "b" else "l2"
    dist = every.run(lambda c: c.execute(sa.select(table.c[column].distance(value, metric))).scalar_one())
    assert dist == 0


def test_bitstring_binds_as_a_parameter_of_its_own(every: Backend, table: sa.Table) -> None:
    """asyncpg's BitString where pgvector-python's asyncpg users have them: in ORM objects and filters."""
    rows = [{"id": 1, "b": asyncpg.BitString("1011")}, {"id": 2, "b": "0100"}, {"id": 3, "b": asyncpg.BitString("1111")}]
    every.run(lambda c: c.execute(table.insert(), rows))
    stmt = sa.select(table.c.id).order_by(table.c.b.hamming_distance(asyncpg.BitString("1011")), table.c.id)
    assert every.run(lambda c: c.execute(stmt).scalars().all()) == [1, 3, 2]


@pytest.mark.parametrize("bad", [asyncpg.BitString("101"), asyncpg.BitString("10111")])
def test_a_bitstring_of_the_wrong_length_is_refused(every: Backend, table: sa.Table, bad: Any) -> None:
    with pytest.raises(vk.DimensionMismatchError, match=rf"expects 4 dimensions, got {len(bad)}\.$"):
        every.run(lambda c: c.execute(table.insert(), [{"id": 1, "b": bad}]))


# ---------------------------------------------------------------------------- every operator, every PG driver

DIM, N = 6, 30
rng = np.random.default_rng(8000)
VECS = rng.normal(size=(N, DIM)).astype(np.float32)
HALF = VECS.astype(np.float16)
BITSET = rng.random((N, DIM)) < 0.5
BITSET[0] = False  # an all-zero row: Jaccard's 0/0 case
Q = rng.normal(size=DIM).astype(np.float32)
QBITS = rng.random(DIM) < 0.5


def _jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    inter = (a & b).sum(axis=-1)
    union = (a | b).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union == 0, np.nan, 1 - inter / np.maximum(union, 1))


def _cos(x: np.ndarray, q: np.ndarray) -> np.ndarray:
    return np.asarray(1 - x @ q / (np.linalg.norm(x, axis=1) * np.linalg.norm(q)))


FLOAT_REFERENCES = {
    "l2_distance": lambda x, q: np.linalg.norm(x - q, axis=1),
    "cosine_distance": _cos,
    "max_inner_product": lambda x, q: -(x @ q),
    "inner_product": lambda x, q: x @ q,
    "l1_distance": lambda x, q: np.abs(x - q).sum(axis=1),
}


@pytest.fixture
def loaded(pg_any: Backend) -> Iterator[sa.Table]:
    md = sa.MetaData()
    t = sa.Table(
        unique("ops"), md, sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("v", vk.Vector(DIM)), sa.Column("h", vk.HalfVector(DIM)),
        sa.Column("b", vk.BitVector(DIM)), sa.Column("s", vk.SparseVector(DIM)),
    )
    pg_any.create(md)
    rows = [{"id": i, "v": VECS[i], "h": HALF[i], "b": BITSET[i], "s": VECS[i]} for i in range(N)]
    pg_any.run(lambda c: c.execute(t.insert(), rows))
    yield t
    pg_any.drop(md)


@pytest.mark.parametrize("method", sorted(FLOAT_REFERENCES))
@pytest.mark.parametrize("column", ["v", "h", "s"])
def test_float_operators_equal_numpy(pg_any: Backend, loaded: sa.Table, method: str, column: str) -> None:
    data = {"v": VECS, "h": HALF, "s": VECS}[column].astype(np.float64)
    q = Q.astype(np.float16) if column == "h" else Q
    expr = getattr(loaded.c[column], method)(q)
    got = dict(pg_any.run(lambda c: c.execute(sa.select(loaded.c.id, expr)).all()))
    ref = FLOAT_REFERENCES[method](data, q.astype(np.float64))
    np.testing.assert_allclose([got[i] for i in range(N)], ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("method", ["hamming_distance", "jaccard_distance"])
def test_bit_operators_equal_numpy(pg_any: Backend, loaded: sa.Table, method: str) -> None:
    expr = getattr(loaded.c.b, method)(QBITS)
    got = dict(pg_any.run(lambda c: c.execute(sa.select(loaded.c.id, expr)).all()))
    ref = (BITSET != QBITS).sum(axis=1) if method == "hamming_distance" else _jaccard(BITSET, QBITS)
    for i in range(N):
        if np.isnan(ref[i]):  # pgvector: Jaccard distance of two empty sets
            continue
        assert got[i] == pytest.approx(float(ref[i]), abs=1e-6), (pg_any.id, i)
    # sorted by the operator, as pgvector-python's users write it
    order = pg_any.run(lambda c: c.execute(sa.select(loaded.c.id).order_by(expr, loaded.c.id).limit(5)).scalars().all())
    assert [float(got[i]) for i in order] == sorted(float(got[i]) for i in range(N))[:5]


def test_every_type_reads_and_writes_nulls_and_values(pg_any: Backend, loaded: sa.Table) -> None:
    pg_any.run(lambda c: c.execute(loaded.insert(), [{"id": 1000}]))
    row = pg_any.run(lambda c: c.execute(sa.select(loaded.c.v, loaded.c.h, loaded.c.b, loaded.c.s).where(loaded.c.id == 1000)).one())
    assert tuple(row) == (None, None, None, None)
    row = pg_any.run(lambda c: c.execute(sa.select(loaded.c.v, loaded.c.h, loaded.c.b, loaded.c.s).where(loaded.c.id == 3)).one())
    for got, want, dtype in zip(row, (VECS[3], HALF[3], BITSET[3], VECS[3]), (np.float32, np.float16, np.bool_, np.float32)):
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, want)
