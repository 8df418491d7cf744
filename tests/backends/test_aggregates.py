"""Vector aggregates: ``vk.avg`` / ``vk.sum`` and ``func.avg`` / ``func.sum`` of Vector and HalfVector
columns equal a numpy reference on every driver (NULL rows skipped, an empty set gives None), and
``func.avg`` of anything else is exactly what it was before the package registered it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.functions import Function

import sqlalchemy_vectorknobs as vk

from ..conftest import Backend, _get_backend, unique

AGGREGATE_BACKENDS = ["sqlite", "sqlite-aiosqlite", "pg-psycopg", "pg-psycopg-async", "pg-asyncpg", "pg-psycopg2", "pg-pg8000"]
DIM = 8
rng = np.random.default_rng(22)
VECTORS = rng.normal(size=(40, DIM)).astype(np.float32)
HALVES = (rng.normal(size=(40, DIM)) * 10).astype(np.float16)
GROUPS = np.arange(40) % 3  # group 2 also holds the NULL rows; group 3 only NULLs


@pytest.fixture(params=AGGREGATE_BACKENDS)
def agg_backend(request: pytest.FixtureRequest) -> Backend:
    """SQLite (pysqlite3, aiosqlite) and PostgreSQL (psycopg 3 sync and async, asyncpg, psycopg2, pg8000)."""
    return _get_backend(request, request.param)


@pytest.fixture
def docs(agg_backend: Backend) -> Iterator[sa.Table]:
    md = sa.MetaData()
    table = sa.Table(
        unique("agg"), md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("grp", sa.Integer),
        sa.Column("embedding", vk.Vector(DIM), nullable=True),
        sa.Column("half", vk.HalfVector(DIM), nullable=True),
    )
    agg_backend.create(md)
    rows: list[dict[str, Any]] = [
        {"id": i, "grp": int(GROUPS[i]), "embedding": VECTORS[i], "half": HALVES[i]} for i in range(len(VECTORS))
    ]
    rows += [{"id": 100 + i, "grp": g, "embedding": None, "half": None} for i, g in enumerate([2, 2, 3, 3])]
    agg_backend.run(lambda c: c.execute(table.insert(), rows))
    yield table
    agg_backend.drop(md)


def _per_group(backend: Backend, table: sa.Table, *columns: Any) -> dict[int, tuple[Any, ...]]:
    stmt = sa.select(table.c.grp, *columns).group_by(table.c.grp).order_by(table.c.grp)
    return {row[0]: tuple(row[1:]) for row in backend.run(lambda c: c.execute(stmt).all())}


def _sequential_sum(values: np.ndarray, dtype: Any) -> np.ndarray:
    total = values[0].astype(dtype)
    for v in values[1:]:
        total = (total.astype(np.float32) + v.astype(np.float32)).astype(dtype)
    return total


def test_avg_and_sum_equal_numpy_per_group_skipping_nulls(agg_backend: Backend, docs: sa.Table) -> None:
    got = _per_group(
        agg_backend, docs,
        vk.avg(docs.c.embedding), vk.sum(docs.c.embedding), vk.avg(docs.c.half), vk.sum(docs.c.half),
    )
    assert sorted(got) == [0, 1, 2, 3]
    for g in (0, 1, 2):
        vec, half = VECTORS[GROUPS == g], HALVES[GROUPS == g]
        v_avg, v_sum, h_avg, h_sum = got[g]
        for value, dtype in ((v_avg, np.float32), (v_sum, np.float32), (h_avg, np.float16), (h_sum, np.float16)):
            assert type(value) is np.ndarray and value.dtype == dtype and value.shape == (DIM,), (agg_backend.id, value)
        np.testing.assert_allclose(v_avg, vec.astype(np.float64).mean(axis=0), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(v_sum, vec.astype(np.float64).sum(axis=0), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(h_avg, half.astype(np.float64).mean(axis=0).astype(np.float16), rtol=1e-3, atol=1e-2)
        # halfvec sums are rounded to half precision row by row, as pgvector adds them
        np.testing.assert_allclose(h_sum, _sequential_sum(half, np.float16), rtol=1e-3, atol=0.25)
    assert got[3] == (None, None, None, None)  # only NULL vectors: NULL, as SQL's avg/sum


def test_empty_set_gives_none(agg_backend: Backend, docs: sa.Table) -> None:
    stmt = sa.select(vk.avg(docs.c.embedding), vk.sum(docs.c.half), sa.func.avg(docs.c.half), sa.func.sum(docs.c.embedding))
    row = agg_backend.run(lambda c: c.execute(stmt.where(docs.c.id < 0)).one())
    assert tuple(row) == (None, None, None, None)


def test_func_avg_and_sum_come_back_as_vectors(agg_backend: Backend, docs: sa.Table) -> None:
    got = _per_group(agg_backend, docs, sa.func.avg(docs.c.embedding), sa.func.sum(docs.c.embedding).label("total"),
                     sa.func.avg(docs.c.half), sa.func.sum(docs.c.half))
    for g in (0, 1, 2):
        vec = VECTORS[GROUPS == g].astype(np.float64)
        f_avg, f_sum, h_avg, h_sum = got[g]
        assert f_avg.dtype == np.float32 and f_sum.dtype == np.float32, agg_backend.id
        assert h_avg.dtype == np.float16 and h_sum.dtype == np.float16, agg_backend.id
        np.testing.assert_allclose(f_avg, vec.mean(axis=0), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(f_sum, vec.sum(axis=0), rtol=1e-5, atol=1e-5)
    assert got[3] == (None, None, None, None)


def test_aggregate_in_expressions_and_orm(agg_backend: Backend, docs: sa.Table) -> None:
    """An aggregate is a vector expression: distances to it, subqueries, ORM queries."""
    centroid = VECTORS.astype(np.float64).mean(axis=0)
    q = np.ones(DIM, dtype=np.float32)
    dist = agg_backend.run(lambda c: c.execute(sa.select(vk.avg(docs.c.embedding).l2_distance(q))).scalar_one())
    assert dist == pytest.approx(float(np.linalg.norm(centroid - q)), rel=1e-5)
    # nearest row to the centroid, the centroid computed by a scalar subquery
    sub = sa.select(sa.func.avg(docs.c.embedding)).scalar_subquery()
    nearest = agg_backend.run(
        lambda c: c.execute(sa.select(docs.c.id).order_by(docs.c.embedding.l2_distance(sub)).limit(1)).scalar_one()
    )
    assert nearest == int(np.argmin(np.linalg.norm(VECTORS - centroid, axis=1)))
    got = agg_backend.session(lambda s: s.scalars(sa.select(vk.sum(docs.c.embedding)).where(docs.c.grp == 1)).one())
    np.testing.assert_allclose(got, VECTORS[GROUPS == 1].astype(np.float64).sum(axis=0), rtol=1e-5, atol=1e-5)


def test_other_aggregates_are_unchanged(agg_backend: Backend, docs: sa.Table) -> None:
    row = agg_backend.run(
        lambda c: c.execute(sa.select(sa.func.avg(docs.c.id), sa.func.sum(docs.c.grp), sa.func.count(docs.c.embedding))).one()
    )
    ids = list(range(40)) + [100, 101, 102, 103]
    assert float(row[0]) == pytest.approx(np.mean(ids))
    assert int(row[1]) == int(GROUPS.sum()) + 10
    assert row[2] == 40


def test_mismatched_dimensions_are_a_clear_error(agg_backend: Backend) -> None:
    md = sa.MetaData()
    table = sa.Table(unique("aggdim"), md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("v", vk.Vector()))
    agg_backend.create(md)
    try:
        agg_backend.run(lambda c: c.execute(table.insert(), [{"id": 1, "v": [1, 2, 3]}, {"id": 2, "v": [1, 2]}]))
        if agg_backend.dialect == "sqlite":
            with pytest.raises(vk.DimensionMismatchError, match=r"vk_avg\) got a vector of 2 dimensions after vectors of 3"):
                agg_backend.run(lambda c: c.execute(sa.select(vk.avg(table.c.v))).all())
            with pytest.raises(vk.DimensionMismatchError, match=r"vk_sum\) got a vector of 2 dimensions after vectors of 3"):
                agg_backend.run(lambda c: c.execute(sa.select(sa.func.sum(table.c.v))).all())
        else:  # pgvector's own error
            with pytest.raises(sa.exc.DBAPIError, match="expected 3 dimensions, not 2"):
                agg_backend.run(lambda c: c.execute(sa.select(vk.avg(table.c.v))).all())
        # the connection is fine afterwards
        assert agg_backend.run(lambda c: c.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()) == 2
    finally:
        agg_backend.drop(md)


def test_sum_beyond_the_type_range_is_an_error(sqlite_backend: Backend) -> None:
    md = sa.MetaData()
    table = sa.Table(
        unique("aggover"), md, sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("v", vk.Vector(2)), sa.Column("h", vk.HalfVector(2)),
    )
    sqlite_backend.create(md)
    try:
        big = np.float32(3e38)
        sqlite_backend.run(lambda c: c.execute(table.insert(), [{"id": i, "v": [big, 1], "h": [60000, 1]} for i in range(2)]))
        with pytest.raises(vk.InvalidVectorError, match=r"vk_sum\) overflows float32 at index 0"):
            sqlite_backend.run(lambda c: c.execute(sa.select(vk.sum(table.c.v))).all())
        with pytest.raises(vk.InvalidVectorError, match=r"vk_sum\) overflows half precision at index 0"):
            sqlite_backend.run(lambda c: c.execute(sa.select(vk.sum(table.c.h))).all())
        avg = sqlite_backend.run(lambda c: c.execute(sa.select(vk.avg(table.c.v), vk.avg(table.c.h))).one())
        np.testing.assert_array_equal(avg[0], np.array([big, 1], dtype=np.float32))
        np.testing.assert_array_equal(avg[1], np.array([60000, 1], dtype=np.float16))
    finally:
        sqlite_backend.drop(md)


# ---------------------------------------------------------------------------- construction and SQL

T = sa.table("t", sa.column("v", vk.Vector(3)), sa.column("h", vk.HalfVector(3)), sa.column("b", vk.BitVector(3)),
             sa.column("n", sa.Integer), sa.column("s", sa.String))


def test_func_avg_of_non_vectors_is_the_plain_function_it_was() -> None:
    for arg in (T.c.n, T.c.s, 5, sa.literal(1.5), T.c.b):
        expr = sa.func.avg(arg)
        assert type(expr) is Function and expr.name == "avg"
        assert isinstance(expr.type, sa.types.NullType)
        plain = Function("avg", arg)
        for dialect in (postgresql.dialect(), sqlite.dialect(), None):
            assert str(expr.compile(dialect=dialect)) == str(plain.compile(dialect=dialect))
        assert expr._generate_cache_key() == plain._generate_cache_key()
    assert isinstance(sa.func.avg(T.c.n, type_=sa.Float).type, sa.Float)


def test_func_avg_and_sum_of_vectors_are_typed_as_their_argument() -> None:
    for col in (T.c.v, T.c.h):
        for expr in (sa.func.avg(col), sa.func.sum(col), vk.avg(col), vk.sum(col)):
            assert expr.type is col.type or type(expr.type) is type(col.type), expr
    assert isinstance(sa.func.avg(T.c.v, type_=sa.Float).type, sa.Float)


def test_sqlite_renders_the_package_aggregates_only_for_vectors() -> None:
    engine = vk.create_engine("sqlite://")
    try:
        def sql(expr: Any) -> str:
            return str(sa.select(expr).compile(engine))

        assert "vk_avg(t.v)" in sql(sa.func.avg(T.c.v))
        assert "vk_sum(t.v)" in sql(sa.func.sum(T.c.v))
        assert "vk_avg(t.h, 'halfvec')" in sql(vk.avg(T.c.h))
        assert "vk_sum(t.h, 'halfvec')" in sql(vk.sum(T.c.h))
        for expr in (sa.func.avg(T.c.n), sa.func.sum(T.c.n), sa.func.max(T.c.v), sa.func.count(T.c.v)):
            assert sql(expr) == str(sa.select(expr).compile(dialect=sqlite.dialect()))
        # a bare SQLite dialect (no engine) renders vk.avg / vk.sum the same way
        assert "vk_avg(t.v)" in str(sa.select(vk.avg(T.c.v)).compile(dialect=sqlite.dialect()))
        assert "avg(t.v)" in str(sa.select(vk.avg(T.c.v)).compile(dialect=postgresql.dialect()))
    finally:
        engine.dispose()


@pytest.mark.parametrize("make", [vk.avg, vk.sum])
def test_vk_aggregates_refuse_other_columns(make: Any) -> None:
    name = make.__name__
    with pytest.raises(vk.IncompatibleOperatorError, match=rf"^vk\.{name} applies to Vector and HalfVector .*BitVector\.$"):
        make(sa.Table("d", sa.MetaData(), sa.Column("bits", vk.BitVector(8))).c.bits)
    with pytest.raises(vk.IncompatibleOperatorError, match=rf"^vk\.{name} applies to Vector and HalfVector .*Integer"):
        make(T.c.n)


def test_an_avg_registered_before_the_package_is_kept() -> None:
    code = textwrap.dedent(
        """
        import warnings
        warnings.simplefilter("error")
        import sqlalchemy as sa
        from sqlalchemy.sql.functions import GenericFunction

        class avg(GenericFunction):
            type = sa.Float()
            inherit_cache = True

        import sqlalchemy_vectorknobs as vk
        t = sa.table("t", sa.column("v", vk.Vector(3)))
        assert type(sa.func.avg(t.c.v)) is avg, type(sa.func.avg(t.c.v))
        assert type(vk.avg(t.c.v)).__name__ == "VectorAvg"
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
