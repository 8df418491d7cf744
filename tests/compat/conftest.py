"""Engines for the pgvector-python compatibility suite: every PostgreSQL driver, and SQLite.

A test module parametrizes ``engine`` indirectly with ids from :data:`SYNC` or :data:`ASYNC`.
Synchronous engines are the session's shared backends (tests/conftest.py). Asynchronous engines
are made for each test, as pgvector-python's suite makes them: created inside the test's own event
loop (pytest-asyncio) and disposed by the test. ``setup_engine`` is a synchronous engine on the
same database, which creates the tables and clears them between tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

import sqlalchemy_vectorknobs as vk

from ..conftest import _get_backend

#: Synchronous drivers: psycopg 3, psycopg2, pg8000, and SQLite + sqlite-vec (pysqlite3).
SYNC = ["pg-psycopg", "pg-psycopg2", "pg-pg8000", "sqlite"]
#: Asynchronous drivers: psycopg 3 async, asyncpg, and SQLite + sqlite-vec through aiosqlite.
ASYNC = ["pg-psycopg-async", "pg-asyncpg", "sqlite-aiosqlite"]
_ASYNC_DRIVERS = {"pg-psycopg-async": "postgresql+psycopg", "pg-asyncpg": "postgresql+asyncpg", "sqlite-aiosqlite": "sqlite+aiosqlite"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "postgresql_only(reason): the test needs a type only PostgreSQL has; skipped on SQLite with the reason"
    )


def _setup_backend(request: pytest.FixtureRequest, engine_id: str) -> Any:
    return _get_backend(request, "sqlite" if engine_id.startswith("sqlite") else "pg-psycopg")


@pytest.fixture
def engine_id(request: pytest.FixtureRequest) -> str:
    """Which driver ``engine`` is (``pg-asyncpg``, ``sqlite``, ...)."""
    return str(request.node.callspec.params["engine"])


@pytest.fixture
def setup_engine(request: pytest.FixtureRequest, engine_id: str) -> sa.Engine:
    """A synchronous engine on the database ``engine`` uses."""
    engine: sa.Engine = _setup_backend(request, engine_id).engine
    return engine


@pytest.fixture
def engine(request: pytest.FixtureRequest) -> Iterator[Any]:
    engine_id = str(request.param)
    if engine_id not in _ASYNC_DRIVERS:
        yield _get_backend(request, engine_id).engine
        return
    url = _setup_backend(request, engine_id).engine.url.set(drivername=_ASYNC_DRIVERS[engine_id])
    async_engine = vk.create_async_engine(url)
    yield async_engine
    # The test disposes of it in its own loop; this only closes what a failed test left open.
    try:
        asyncio.run(async_engine.dispose())
    except Exception:  # noqa: BLE001 - connections of a closed loop cannot be closed cleanly
        pass


@pytest.fixture
def dialect(engine: Any) -> str:
    return str(engine.dialect.name)


@pytest.fixture(autouse=True)
def _postgresql_only(request: pytest.FixtureRequest) -> None:
    marker = request.node.get_closest_marker("postgresql_only")
    if marker is not None and request.getfixturevalue("dialect") != "postgresql":
        pytest.skip(marker.args[0])
