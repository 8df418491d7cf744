"""Vector columns created with raw SQL reflect to the right ``vk`` types and dims, with no warnings."""

from __future__ import annotations

import warnings

import numpy as np
import sqlalchemy as sa

import sqlalchemy_vectorknobs as vk

from ..conftest import Backend, unique


def test_pgvector_columns_reflect(pg_backend: Backend) -> None:
    name = unique("refl")
    pg_backend.run(
        lambda c: c.exec_driver_sql(
            f"CREATE TABLE {name} (id int PRIMARY KEY, a vector(3), b halfvec(4), c bit(12), d sparsevec(100), e vector)"
        )
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            t = pg_backend.run(lambda c: sa.Table(name, sa.MetaData(), autoload_with=c))
        got = {col.name: (type(col.type), getattr(col.type, "dim", None)) for col in t.columns if col.name != "id"}
        assert got == {
            "a": (vk.Vector, 3),
            "b": (vk.HalfVector, 4),
            "c": (vk.BitVector, 12),
            "d": (vk.SparseVector, 100),
            "e": (vk.Vector, None),
        }
        # The reflected table is usable: insert and query through the reflected types.
        pg_backend.run(lambda c: c.execute(sa.insert(t), {"id": 1, "a": [1, 2, 3], "d": {99: 1.0}}))
        row = pg_backend.run(lambda c: c.execute(sa.select(t.c.a, t.c.d).order_by(t.c.a.l2_distance([1, 2, 3]))).one())
        np.testing.assert_array_equal(row.a, [1, 2, 3])
        assert row.d[99] == 1.0 and row.d.shape == (100,)
    finally:
        pg_backend.run(lambda c: c.exec_driver_sql(f"DROP TABLE {name}"))


def test_sqlite_vector_columns_reflect(sqlite_backend: Backend) -> None:
    md = sa.MetaData()
    t = sa.Table(
        unique("refl"),
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("a", vk.Vector(3)),
        sa.Column("b", vk.HalfVector(4)),
        sa.Column("c", vk.BitVector(16)),
    )
    sqlite_backend.run(md.create_all)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            r = sqlite_backend.run(lambda c: sa.Table(t.name, sa.MetaData(), autoload_with=c))
        got = {col.name: (type(col.type), col.type.dim) for col in r.columns if col.name != "id"}
        assert got == {"a": (vk.Vector, 3), "b": (vk.HalfVector, 4), "c": (vk.BitVector, 16)}
    finally:
        sqlite_backend.run(md.drop_all)


def test_reflection_is_per_engine(pg_url: sa.URL) -> None:
    """A plain engine (no plugin) keeps SQLAlchemy's own reflection: the plugin changes no globals."""
    plain = sa.create_engine(pg_url.set(drivername="postgresql+psycopg"))
    try:
        assert "vector" not in plain.dialect.ischema_names
    finally:
        plain.dispose()
