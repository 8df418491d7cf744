"""Engines: the plugin, extension setup with clear errors, SQLite driver fallback, inspect_vectors."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import sqlalchemy_vectorknobs as vk
from sqlalchemy_vectorknobs.dialects import postgresql as vk_pg

from ..conftest import Backend, unique


def _doc_table(md: sa.MetaData) -> sa.Table:
    return sa.Table(
        unique("eng"), md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("embedding", vk.Vector(3))
    )


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_plain_create_engine_with_plugin_creates_extension(fresh_pg_url: sa.URL, driver: str) -> None:
    engine = sa.create_engine(fresh_pg_url.set(drivername=f"postgresql+{driver}"), plugins=["vectorknobs"])
    md = sa.MetaData()
    t = _doc_table(md)
    try:
        md.create_all(engine)
        with engine.begin() as conn:
            assert conn.exec_driver_sql("SELECT extversion FROM pg_extension WHERE extname = 'vector'").scalar()
            conn.execute(sa.insert(t), [{"id": 1, "embedding": [1, 2, 3]}, {"id": 2, "embedding": [3, 2, 1]}])
            nearest = conn.execute(sa.select(t.c.id).order_by(t.c.embedding.l2_distance([3, 2, 0]))).scalars().all()
        assert nearest == [2, 1]
    finally:
        engine.dispose()


def test_connections_opened_before_the_extension_get_binary_codecs(fresh_pg_url: sa.URL) -> None:
    """A pooled connection opened before CREATE EXTENSION learns the types on its next checkout."""
    engine = vk.create_engine(fresh_pg_url.set(drivername="postgresql+psycopg"), pool_size=2)
    try:
        with engine.connect() as c1, engine.connect() as c2:
            c1.exec_driver_sql("SELECT 1")
            md = sa.MetaData()
            t = _doc_table(md)
            md.create_all(c2)
            c2.commit()
        with engine.begin() as conn:  # may be either pooled connection
            conn.execute(sa.insert(t), {"id": 1, "embedding": [1, 2, 3]})
        with engine.connect() as c1, engine.connect() as c2:
            for conn in (c1, c2):
                assert conn.connection.info.get("vk_types_pending") is False
                np.testing.assert_array_equal(conn.execute(sa.select(t.c.embedding)).scalar_one(), [1, 2, 3])
    finally:
        engine.dispose()


def test_missing_privilege_gives_clear_error(fresh_pg_url: sa.URL, pg_url: sa.URL) -> None:
    role = f"vk_user_{uuid.uuid4().hex[:6]}"
    admin = sa.create_engine(pg_url.set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN NOSUPERUSER")
    engine = vk.create_engine(fresh_pg_url.set(drivername="postgresql+psycopg", username=role))
    md = sa.MetaData()
    _doc_table(md)
    try:
        with pytest.raises(vk.ExtensionError, match=r"^The current role may not create the pgvector extension; .*\.$"):
            md.create_all(engine)
        with engine.connect() as conn:
            assert not sa.inspect(conn).get_table_names()
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE {fresh_pg_url.database} WITH (FORCE)")  # frees the role
            conn.exec_driver_sql(f"DROP ROLE {role}")
        admin.dispose()


def test_missing_extension_gives_clear_error(fresh_pg_url: sa.URL, monkeypatch: pytest.MonkeyPatch) -> None:
    # The server really lacks an extension by this name: its real error is what gets explained.
    monkeypatch.setattr(vk_pg, "EXTENSION", "vector_not_installed_here")
    engine = vk.create_engine(fresh_pg_url.set(drivername="postgresql+psycopg"))
    md = sa.MetaData()
    _doc_table(md)
    try:
        with pytest.raises(vk.ExtensionError, match=r"^The PostgreSQL server has no pgvector extension to create; install"):
            md.create_all(engine)
    finally:
        engine.dispose()


def test_sparse_vector_on_sqlite_refused_at_ddl(sqlite_backend: Backend) -> None:
    md = sa.MetaData()
    t = sa.Table(unique("sp"), md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("s", vk.SparseVector(10)))
    with pytest.raises(vk.UnsupportedDialectError, match=rf"^Column '{t.name}\.s' uses SparseVector, which SQLite"):
        sqlite_backend.run(md.create_all)
    assert t.name not in sqlite_backend.run(lambda c: sa.inspect(c).get_table_names())


def test_sqlite_engine_loads_sqlite_vec_through_a_capable_driver(sqlite_backend: Backend) -> None:
    dbapi = sqlite_backend.engine.dialect.dbapi
    import sqlite3

    if not hasattr(sqlite3.Connection, "enable_load_extension"):
        assert dbapi.__name__ in ("pysqlite3.dbapi2", "sqlean.dbapi2")
    version = sqlite_backend.run(lambda c: c.exec_driver_sql("SELECT vec_version()").scalar())
    assert version.startswith("v0.")


def test_sqlite_plugin_via_plain_create_engine(tmp_path: object) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path}/x.db", plugins=["vectorknobs"])
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT vec_distance_l2(vec_f32('[0,0]'), vec_f32('[3,4]'))").scalar() == 5.0
    finally:
        engine.dispose()


def test_unsupported_dialect_is_refused() -> None:
    with pytest.raises(vk.UnsupportedDialectError, match="^Dialect 'mysql' is not supported"):
        vk.create_engine("mysql://u@localhost/db")


def test_inspect_vectors(backend: Backend) -> None:
    md = sa.MetaData()
    t = sa.Table(
        unique("insp"),
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("a", vk.Vector(3)),
        sa.Column("b", vk.HalfVector(4)),
        sa.Column("c", vk.BitVector(16)),
    )
    backend.run(md.create_all)
    try:
        report = backend.run(vk.inspect_vectors)
        assert report.extension_version
        assert report.extension == ("sqlite-vec" if backend.dialect == "sqlite" else "pgvector")
        mine = sorted((c.column, c.type, c.dim) for c in report.columns if c.table == t.name)
        assert mine == [("a", "Vector", 3), ("b", "HalfVector", 4), ("c", "BitVector", 16)]
    finally:
        backend.run(md.drop_all)


def test_inspect_vectors_reports_pg_indexes(pg_backend: Backend) -> None:
    md = sa.MetaData()
    t = _doc_table(md)
    pg_backend.run(md.create_all)
    try:
        pg_backend.run(
            lambda c: c.exec_driver_sql(
                f"CREATE INDEX {t.name}_hnsw ON {t.name} USING hnsw (embedding vector_cosine_ops) WITH (m = 8)"
            )
        )
        report = pg_backend.run(vk.inspect_vectors)
        (index,) = [i for i in report.indexes if i.table == t.name]
        assert (index.method, index.opclass, index.options, index.expression) == ("hnsw", "vector_cosine_ops", {"m": "8"}, "embedding")
    finally:
        pg_backend.run(md.drop_all)


def test_async_sqlite_engine(tmp_path: object) -> None:
    """aiosqlite gets sqlite-vec too, through pysqlite3/sqlean where the stdlib sqlite3 cannot."""
    import asyncio

    from sqlalchemy.ext.asyncio import AsyncSession

    class Base(DeclarativeBase):
        pass

    class Doc(Base):
        __tablename__ = "doc"
        id: Mapped[int] = mapped_column(primary_key=True)
        embedding = mapped_column(vk.Vector(3))

    async def main() -> tuple[list[int], str]:
        engine = vk.create_async_engine(f"sqlite+aiosqlite:///{tmp_path}/a.db")
        try:
            async with engine.begin() as conn:
                await conn.run_sync(Base.metadata.create_all)
            async with AsyncSession(engine) as session:
                session.add_all([Doc(id=1, embedding=[1, 2, 3]), Doc(id=2, embedding=[3, 2, 1])])
                await session.commit()
                ids = list(await session.scalars(sa.select(Doc.id).order_by(Doc.embedding.max_inner_product([3, 2, 0]))))
                session.add(Doc(id=3, embedding=[1, 2]))
                try:
                    await session.flush()
                except vk.DimensionMismatchError as err:
                    message = str(err)
            return ids, message
        finally:
            await engine.dispose()

    ids, message = asyncio.run(main())
    assert ids == [2, 1]
    assert message == "Column 'doc.embedding' expects 3 dimensions, got 2."
