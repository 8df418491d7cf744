"""A small mirrored model, session factories on every backend, and a mirror wrapper that counts and fails.

Mirror contents are always compared with the committed rows read here on a separate connection
(``SyncEnv.committed``), never with what the sync layer says it did.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

import sqlalchemy_vectorknobs as vk
from sqlalchemy_vectorknobs import sync as vks
from sqlalchemy_vectorknobs.exc import MirrorError

from ..conftest import Backend, _get_backend, unique

DIM = 8
T = TypeVar("T")


def make_model(name: str | None = None) -> Any:
    class Base(DeclarativeBase):
        pass

    class Doc(Base):
        __tablename__ = name or unique("msync")
        id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
        category: Mapped[str | None] = mapped_column(sa.String(50))
        note: Mapped[str | None] = mapped_column(sa.String(200))
        embedding = mapped_column(vk.Vector(DIM), nullable=True)

    return Doc


def vec(i: int, variant: int = 0) -> np.ndarray:
    """A deterministic vector for row ``i`` (``variant`` gives it another value)."""
    return np.random.default_rng(i * 1000 + variant).standard_normal(DIM).astype(np.float32)


class Recording:
    """Wraps a mirror: records every upsert/delete call, and raises ``MirrorError`` while ``failing``.

    ``before_write`` (if set) runs at the start of each write, before anything reaches the mirror.
    """

    def __init__(self, inner: Any, *, failing: bool = False) -> None:
        self.inner = inner
        self.failing = failing
        self.calls: list[tuple[str, list[Any], list[int] | None]] = []
        self.threads: list[int] = []  # the thread of each write (off the event loop under asyncio)
        self.before_write: Callable[[str, list[Any]], None] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _enter(self, op: str, ids: Any, versions: Any) -> None:
        ids = list(ids)
        self.calls.append((op, ids, None if versions is None else list(versions)))
        self.threads.append(threading.get_ident())
        if self.before_write is not None:
            hook, self.before_write = self.before_write, None
            hook(op, ids)
        if self.failing:
            raise MirrorError(f"Mirror '{self.inner.name}' is offline.")

    def upsert(self, ids: Any, vectors: Any, metadata: Any = None, *, versions: Any = None) -> int:
        self._enter("upsert", ids, versions)
        return int(self.inner.upsert(ids, vectors, metadata, versions=versions))

    def delete(self, ids: Any, *, versions: Any = None) -> int:
        self._enter("delete", ids, versions)
        return int(self.inner.delete(ids, versions=versions))

    @property
    def writes(self) -> int:
        return len(self.calls)

    def written_ids(self) -> set[Any]:
        return {pk for _, ids, _ in self.calls for pk in ids}

    def reset(self) -> None:
        self.calls.clear()
        self.threads.clear()


@dataclass
class SyncEnv:
    """One backend, one fresh mirrored table, and the session factory the test attaches to."""

    backend: Backend
    Doc: Any
    maker: Any
    attachments: list[Any] = field(default_factory=list)

    @property
    def table(self) -> sa.Table:
        return self.Doc.__table__

    @property
    def is_async(self) -> bool:
        return self.backend.is_async

    def attach(self, mirrors: list[Any], **kw: Any) -> Any:
        attachment = vks.attach(self.maker, mirrors, **kw)
        self.attachments.append(attachment)
        return attachment

    def orm(self, fn: Callable[[Session], T]) -> T:
        """``fn(session)`` with a session from the factory (inside ``AsyncSession.run_sync`` on async backends)."""
        if not self.is_async:
            with self.maker() as session:
                return fn(session)

        async def go() -> T:
            async with self.maker() as session:
                return await session.run_sync(fn)

        return self.loop.run_until_complete(go())

    def aio(self, fn: Callable[[Any], Any]) -> Any:
        """``await fn(async_session)`` (async backends only)."""

        async def go() -> Any:
            async with self.maker() as session:
                return await fn(session)

        return self.loop.run_until_complete(go())

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self.backend.loop is not None
        return self.backend.loop

    def run(self, fn: Callable[[sa.Connection], T]) -> T:
        return self.backend.run(fn)

    def committed(self) -> dict[Any, tuple[np.ndarray | None, str | None]]:
        """``{id: (vector, category)}`` of the committed rows, read on a connection of its own."""
        t = self.table
        rows = self.run(lambda c: c.execute(sa.select(t.c.id, t.c.embedding, t.c.category)).all())
        return {r.id: (r.embedding, r.category) for r in rows}

    def seed(self, n: int, start: int = 1) -> None:
        """Insert rows ``start..start+n-1`` with raw Core (no session: nothing is mirrored)."""
        t = self.table
        rows = [{"id": i, "category": "ab"[i % 2], "note": None, "embedding": vec(i)} for i in range(start, start + n)]
        self.run(lambda c: c.execute(t.insert(), rows))

    def drain(self, mirrors: list[Any], **kw: Any) -> vks.DrainReport:
        if not self.is_async:
            return vks.drain(self.backend.engine, mirrors, **kw)
        report: vks.DrainReport = self.loop.run_until_complete(vks.adrain(self.backend.engine, mirrors, **kw))
        return report

    def outbox_rows(self, mirror: Any) -> list[Any]:
        t = vks.outbox_table
        return self.run(lambda c: c.execute(sa.select(t).where(t.c.mirror == mirror.name).order_by(t.c.id)).all())


def assert_matches(env: SyncEnv, mirror: Any, *, metadata: bool = True) -> None:
    """The mirror holds exactly the committed rows that have a vector, with their vectors and categories."""
    rows = env.committed()
    want = {pk: v for pk, (v, _) in rows.items() if v is not None}
    assert mirror.ids() == set(want), f"mirror ids {sorted(mirror.ids())} != SQL ids {sorted(want)}"
    got = mirror.get(list(want))
    for pk, v in want.items():
        np.testing.assert_allclose(got[pk], v, atol=1e-6, err_msg=f"vector of id {pk}")
    inner = getattr(mirror, "inner", mirror)
    if metadata and mirror.metadata_columns and callable(getattr(inner, "metadata", None)):
        for pk in want:
            category = rows[pk][1]
            assert inner.metadata(pk) == ({} if category is None else {"category": category}), f"metadata of id {pk}"


def memory_mirror(env: SyncEnv, **kw: Any) -> Recording:
    return Recording(vk.MemoryMirror(env.Doc.embedding, metadata_columns=["category"], **kw))


def make_env(backend: Backend) -> SyncEnv:
    Doc = make_model()
    backend.create(Doc.metadata)
    if backend.is_async:
        from sqlalchemy.ext.asyncio import async_sessionmaker

        maker: Any = async_sessionmaker(backend.engine, expire_on_commit=False)
    else:
        maker = sessionmaker(backend.engine, expire_on_commit=False)
    backend.run(vks.create_outbox)
    return SyncEnv(backend, Doc, maker)


def _teardown(env: SyncEnv) -> None:
    for attachment in env.attachments:
        attachment.detach()
    env.backend.drop(env.Doc.metadata)


@pytest.fixture
def env(session_backend: Backend) -> Iterator[SyncEnv]:
    """Session (SQLite, psycopg 3) and AsyncSession (asyncpg, aiosqlite) over a fresh table."""
    e = make_env(session_backend)
    yield e
    _teardown(e)


@pytest.fixture
def sqlite_env(sqlite_backend: Backend) -> Iterator[SyncEnv]:
    e = make_env(sqlite_backend)
    yield e
    _teardown(e)


@pytest.fixture
def async_env(async_backend: Backend) -> Iterator[SyncEnv]:
    e = make_env(async_backend)
    yield e
    _teardown(e)


@pytest.fixture(params=["sqlite", "pg-psycopg"])
def sync_env(request: pytest.FixtureRequest) -> Iterator[SyncEnv]:
    """Synchronous sessions only (tests whose mirror hooks open sessions of their own)."""
    e = make_env(_get_backend(request, request.param))
    yield e
    _teardown(e)


@pytest.fixture
def pg_sync_env(request: pytest.FixtureRequest) -> Iterator[SyncEnv]:
    """PostgreSQL with psycopg 3 only (row locks, SKIP LOCKED)."""
    e = make_env(_get_backend(request, "pg-psycopg"))
    yield e
    _teardown(e)
