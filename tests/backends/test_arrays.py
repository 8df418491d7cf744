"""``ARRAY(vk.Vector(n))`` and friends round-trip on every PostgreSQL driver: psycopg 3 (sync and
async), asyncpg, psycopg2 and pg8000. Elements come back as the element type's numpy vectors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pgvector
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import sqlalchemy_vectorknobs as vk

from ..conftest import Backend, _get_backend, unique

PG_ALL = ["pg-psycopg", "pg-psycopg-async", "pg-asyncpg", "pg-psycopg2", "pg-pg8000"]


@pytest.fixture(params=PG_ALL)
def pg_any(request: pytest.FixtureRequest) -> Backend:
    return _get_backend(request, request.param)


class Base(DeclarativeBase):
    pass


class Holder(Base):
    __tablename__ = unique("arrays")
    id: Mapped[int] = mapped_column(primary_key=True)
    # dimensions=1: a list of lists is a list of vectors, not a 2-D array of numbers (as in pgvector-python)
    vecs = mapped_column(ARRAY(vk.Vector(3), dimensions=1), nullable=True)
    halves = mapped_column(ARRAY(vk.HalfVector(3), dimensions=1), nullable=True)
    bits = mapped_column(ARRAY(vk.BitVector(4), dimensions=1), nullable=True)
    sparse = mapped_column(ARRAY(vk.SparseVector(5), dimensions=1), nullable=True)
    loose = mapped_column(ARRAY(vk.Vector(3)), nullable=True)  # numpy elements need no dimensions=


@pytest.fixture
def holders(pg_any: Backend) -> Iterator[type[Holder]]:
    pg_any.run(Base.metadata.create_all)
    yield Holder
    pg_any.run(Base.metadata.drop_all)


def assert_vectors(got: Any, expected: list[Any], dtype: Any) -> None:
    assert isinstance(got, list) and len(got) == len(expected), got
    for g, e in zip(got, expected):
        if e is None:
            assert g is None
            continue
        assert type(g) is np.ndarray and g.dtype == dtype, g
        np.testing.assert_array_equal(g, np.asarray(e).astype(dtype))


VECS = [[1.5, 2, 3], [4, 5, 6.25]]
HALVES = [np.array([1, 2, 3.5]), np.array([-4, 5, 6])]
BITS = ["1010", [True, True, False, False], pgvector.Bit("0001")]
SPARSE = [{0: 1.5, 4: -2.0}, pgvector.SparseVector({1: 3.0}, 5), [0, 0, 7, 0, 0]]


def test_arrays_of_every_type_round_trip(pg_any: Backend, holders: type[Holder]) -> None:
    pg_any.session(lambda s: s.add(Holder(id=1, vecs=VECS, halves=HALVES, bits=BITS, sparse=SPARSE,
                                          loose=[np.array([1, 2, 3]), pgvector.Vector([4, 5, 6])])))
    got = pg_any.session(lambda s: s.scalars(sa.select(Holder)).one())
    assert_vectors(got.vecs, VECS, np.float32)
    assert_vectors(got.halves, HALVES, np.float16)
    assert_vectors(got.bits, [[1, 0, 1, 0], [1, 1, 0, 0], [0, 0, 0, 1]], np.bool_)
    assert_vectors(got.sparse, [[1.5, 0, 0, 0, -2], [0, 3, 0, 0, 0], [0, 0, 7, 0, 0]], np.float32)
    assert_vectors(got.loose, [[1, 2, 3], [4, 5, 6]], np.float32)


def test_empty_null_and_null_element_arrays(pg_any: Backend, holders: type[Holder]) -> None:
    rows = [{"id": 1, "vecs": [], "halves": None}, {"id": 2, "vecs": [[1, 2, 3], None], "halves": [None]}]
    pg_any.run(lambda c: c.execute(sa.insert(Holder.__table__), rows))
    got = pg_any.run(lambda c: c.execute(sa.select(Holder.vecs, Holder.halves).order_by(Holder.id)).all())
    assert got[0].vecs == [] and got[0].halves is None
    assert_vectors(got[1].vecs, [[1, 2, 3], None], np.float32)
    assert got[1].halves == [None]


def test_array_elements_in_sql(pg_any: Backend, holders: type[Holder]) -> None:
    """Compared as a whole, indexed (1-based, PostgreSQL's), and measured element by element."""
    pg_any.run(lambda c: c.execute(sa.insert(Holder.__table__), [{"id": 1, "vecs": VECS}, {"id": 2, "vecs": [[0, 0, 1]]}]))
    assert pg_any.run(lambda c: c.execute(sa.select(Holder.id).where(Holder.vecs == VECS)).scalars().all()) == [1]
    second = pg_any.run(lambda c: c.execute(sa.select(Holder.vecs[2]).where(Holder.id == 1)).scalar_one())
    assert second.dtype == np.float32 and second.tolist() == VECS[1]
    q = np.array([1, 2, 3], dtype=np.float32)
    dist = pg_any.run(lambda c: c.execute(sa.select(Holder.vecs[1].l2_distance(q)).where(Holder.id == 1)).scalar_one())
    assert dist == pytest.approx(float(np.linalg.norm(np.array(VECS[0]) - q)))


def test_a_bad_element_fails_before_anything_is_sent(pg_any: Backend, holders: type[Holder]) -> None:
    pg_any.statements.clear()
    with pytest.raises(vk.DimensionMismatchError, match=r"expects 3 dimensions, got 2\.$"):
        pg_any.session(lambda s: s.add(Holder(id=1, vecs=[[1, 2, 3], [1, 2]])))
    assert not any(s.lstrip().upper().startswith("INSERT") for s in pg_any.statements)
    with pytest.raises(vk.InvalidVectorError, match="finite numbers"):
        pg_any.session(lambda s: s.add(Holder(id=1, halves=[[1, 2, float("nan")]])))


def test_lists_in_an_array_without_dimensions_get_a_clear_error(pg_any: Backend, holders: type[Holder]) -> None:
    """``ARRAY(vk.Vector(3))`` (no ``dimensions=1``) takes a list of lists for a 2-D array of
    numbers: the error says so and what to declare, before anything is sent."""
    pg_any.statements.clear()
    with pytest.raises(vk.VectorTypeError, match=r"declare ARRAY\(Vector\(3\), dimensions=1\), or give the elements as numpy arrays\.$"):
        pg_any.session(lambda s: s.add(Holder(id=1, loose=[[1, 2, 3], [4, 5, 6]])))
    assert not any(s.lstrip().upper().startswith("INSERT") for s in pg_any.statements)


def test_one_array_type_on_two_columns_stays_an_array_on_both(pg_backend: Backend) -> None:
    """A type instance shared by two columns: each column keeps ``ARRAY(vk.Vector(3))`` (the second
    became a bare ``Vector(3)``: the element type took the column for its own)."""
    shared = ARRAY(vk.Vector(3), dimensions=1)
    md = sa.MetaData()
    t = sa.Table(unique("arrays2"), md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("a", shared), sa.Column("b", shared))
    assert isinstance(t.c.a.type, ARRAY) and isinstance(t.c.b.type, ARRAY)
    pg_backend.run(md.create_all)
    try:
        pg_backend.run(lambda c: c.execute(t.insert(), [{"id": 1, "a": VECS, "b": VECS[::-1]}]))
        row = pg_backend.run(lambda c: c.execute(sa.select(t.c.a, t.c.b)).one())
        assert_vectors(row.a, VECS, np.float32)
        assert_vectors(row.b, VECS[::-1], np.float32)
    finally:
        pg_backend.run(md.drop_all)
