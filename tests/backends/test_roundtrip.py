"""Values round-trip as the same numpy type on every dialect and driver; ORM change tracking works."""

from __future__ import annotations

import array
from typing import Any

import numpy as np
import pgvector
import pytest
import sqlalchemy as sa
from scipy import sparse
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import sqlalchemy_vectorknobs as vk

from ..conftest import Backend, unique


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = unique("rt")
    id: Mapped[int] = mapped_column(primary_key=True)
    vec = mapped_column(vk.Vector(5), nullable=True)
    half = mapped_column(vk.HalfVector(5), nullable=True)
    bits = mapped_column(vk.BitVector(13), nullable=True)


@pytest.fixture
def items(any_backend: Backend) -> Any:
    any_backend.run(Base.metadata.create_all)
    yield Item
    any_backend.run(Base.metadata.drop_all)


VEC = np.array([0.1, -2.5, 3.25, 1e-7, 65000.0], dtype=np.float32)
BITS = np.array([1, 0, 1, 1, 0, 0, 0, 0, 1, 0, 1, 1, 1], dtype=bool)


@pytest.mark.parametrize(
    "vec_input",
    [
        VEC,
        VEC.tolist(),
        tuple(VEC.tolist()),
        VEC.astype(np.float64),
        VEC.astype(">f4"),
        array.array("f", VEC.tolist()),
        pgvector.Vector(VEC),
    ],
    ids=["ndarray", "list", "tuple", "float64", "big-endian", "array.array", "pgvector"],
)
def test_dense_inputs_round_trip_bit_exact(any_backend: Backend, items: Any, vec_input: Any) -> None:
    any_backend.session(lambda s: s.add(Item(id=1, vec=vec_input, half=vec_input, bits=BITS)))

    def fetch(session: Session) -> Item:
        return session.scalars(sa.select(Item)).one()

    got = any_backend.session(fetch)
    assert type(got.vec) is np.ndarray and got.vec.dtype == np.float32 and got.vec.shape == (5,)
    np.testing.assert_array_equal(got.vec, VEC)
    assert got.half.dtype == np.float16
    np.testing.assert_array_equal(got.half, VEC.astype(np.float16))
    assert got.bits.dtype == np.bool_
    np.testing.assert_array_equal(got.bits, BITS)


def test_nulls_round_trip(any_backend: Backend, items: Any) -> None:
    any_backend.session(lambda s: s.add(Item(id=1)))
    row = any_backend.run(lambda c: c.execute(sa.select(Item.vec, Item.half, Item.bits)).one())
    assert tuple(row) == (None, None, None)


def test_orm_change_tracking(any_backend: Backend, items: Any) -> None:
    any_backend.session(lambda s: s.add(Item(id=1, vec=VEC)))

    def same_values(session: Session) -> None:
        item = session.get(Item, 1)
        item.vec = VEC.copy()  # equal content: not a change

    any_backend.statements.clear()
    any_backend.session(same_values)
    assert not [s for s in any_backend.statements if s.lstrip().upper().startswith("UPDATE")]

    def new_values(session: Session) -> None:
        session.get(Item, 1).vec = VEC * 2

    any_backend.session(new_values)
    stored = any_backend.run(lambda c: c.execute(sa.select(Item.vec)).scalar_one())
    np.testing.assert_array_equal(stored, VEC * 2)


def test_returning_and_raw_text(any_backend: Backend, items: Any) -> None:
    """Vectors in RETURNING and in ``text()`` queries typed with ``.columns`` decode too."""
    got = any_backend.run(
        lambda c: c.execute(sa.insert(Item).returning(Item.vec), {"id": 1, "vec": VEC}).scalar_one()
    )
    np.testing.assert_array_equal(got, VEC)
    raw = any_backend.run(
        lambda c: c.execute(sa.text(f"SELECT vec FROM {Item.__tablename__}").columns(vec=vk.Vector(5))).scalar_one()
    )
    np.testing.assert_array_equal(raw, VEC)


SPARSE_EXPECTED = np.array([0, 1.5, 0, 0, 0, 0, -2, 0], dtype=np.float32)


@pytest.mark.parametrize(
    "value",
    [
        {1: 1.5, 6: -2.0},
        sparse.csr_matrix(SPARSE_EXPECTED.reshape(1, -1)),
        pgvector.SparseVector({1: 1.5, 6: -2.0}, 8),
        SPARSE_EXPECTED.tolist(),
    ],
    ids=["dict", "scipy", "pgvector", "dense"],
)
def test_sparse_round_trip(pg_backend: Backend, value: Any) -> None:
    md = sa.MetaData()
    t = sa.Table(unique("sp"), md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("v", vk.SparseVector(8)))
    pg_backend.run(md.create_all)
    try:
        pg_backend.run(lambda c: c.execute(sa.insert(t), {"id": 1, "v": value}))
        got = pg_backend.run(lambda c: c.execute(sa.select(t.c.v)).scalar_one())
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, SPARSE_EXPECTED)
    finally:
        pg_backend.run(md.drop_all)


def test_vector_parameters_are_typed(pg_backend: Backend) -> None:
    """psycopg 3 sends pgvector binary with the type's OID; every driver's parameter has a type."""
    from sqlalchemy_vectorknobs.dialects.postgresql import PgVectorValue

    if pg_backend.id == "pg-psycopg":
        from psycopg.adapt import PyFormat
        from psycopg.pq import Format

        def dumper_format(conn: sa.Connection) -> Any:
            driver = conn.connection.driver_connection
            return driver.adapters.get_dumper(PgVectorValue, PyFormat.AUTO).format

        assert pg_backend.run(dumper_format) == Format.BINARY
    # The server sees the value as a vector even where nothing else says so (vector_dims is
    # overloaded for vector and halfvec, so an untyped parameter would be ambiguous):
    q = vk.Vector(3)
    got = pg_backend.run(
        lambda c: c.execute(sa.select(sa.func.vector_dims(sa.bindparam("q", [1.0, 2.0, 3.0], type_=q)))).scalar_one()
    )
    assert got == 3


def test_async_session_with_asyncpg(pg_url: sa.URL) -> None:
    import asyncio

    async def main() -> list[Any]:
        engine = vk.create_async_engine(pg_url.set(drivername="postgresql+asyncpg"))
        try:
            async with engine.begin() as conn:
                await conn.run_sync(Base.metadata.create_all)
            async with AsyncSession(engine) as session:
                session.add_all([Item(id=i, vec=VEC + i * i) for i in range(3)])
                await session.commit()
                nearest = await session.scalars(sa.select(Item).order_by(Item.vec.l2_distance(VEC + 4)).limit(2))
                result = [(item.id, item.vec) for item in nearest]
            async with engine.begin() as conn:
                await conn.run_sync(Base.metadata.drop_all)
            return result
        finally:
            await engine.dispose()

    result = asyncio.run(main())
    assert [i for i, _ in result] == [2, 1]
    np.testing.assert_array_equal(result[0][1], VEC + 4)
