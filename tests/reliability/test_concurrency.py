"""Concurrent writers with embedding sync and two mirrors (memory + Faiss file) on the outbox.

tests/sync/test_concurrency.py races plain vector updates; here the vector is an
``embedded_column`` (``HashingEmbedder`` over ``title``), so every write also embeds, and the
writers are threads (psycopg 3) and asyncio tasks (asyncpg) on the same PostgreSQL table at once,
plus SQLite writers on separate engines. After a final ``vk.drain``: no drift (``vk.verify``),
each mirror equal to the SQL rows and its top-10 equal to a numpy brute force over them, every
vector equal to the embedder's output for its row's title. Deadlocks and duplicate keys between
writers are rolled back and retried; everything runs under timeouts.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

import sqlalchemy_vectorknobs as vk
from sqlalchemy_vectorknobs import sync as vks

from ..conftest import _get_backend, unique
from .conftest import SCALE

pytestmark = pytest.mark.filterwarnings("ignore:DELETE statement on table:sqlalchemy.exc.SAWarning")

DIM = 16
KEYS = 30
SECONDS = 2.0 * SCALE
WORDS = "alpha beta gamma delta vector index mirror drift commit flush".split()
RETRYABLE = (sa.exc.IntegrityError, sa.exc.OperationalError, sa.exc.InternalError, StaleDataError)
#: Deadlock and serialization failure: psycopg raises them as OperationalError, SQLAlchemy's asyncpg
#: dialect as a bare DBAPIError carrying the SQLSTATE.
RETRY_SQLSTATES = ("40P01", "40001")


def retryable(err: BaseException) -> bool:
    """A conflict between the racing transactions, which an application retries."""
    if isinstance(err, RETRYABLE):
        return True
    if not isinstance(err, sa.exc.DBAPIError):
        return False
    orig = err.orig
    codes = {getattr(orig, "sqlstate", None), getattr(getattr(orig, "__cause__", None), "sqlstate", None)}
    return bool(codes & set(RETRY_SQLSTATES))


def make_model() -> Any:
    class Base(DeclarativeBase):
        pass

    class Doc(Base):
        __tablename__ = unique("rcon")
        id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[str | None] = mapped_column(sa.Text)
        embedding = vk.embedded_column(vk.Vector(DIM), source="title", embedder=vk.HashingEmbedder(DIM))

    return Doc


def title(rng: random.Random) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(1, 5)))


def one_op(s: Any, Doc: Any, rng: random.Random) -> None:
    """One random transaction over overlapping keys: ORM upserts, deletes, or a bulk UPDATE of titles."""
    roll = rng.random()
    ids = sorted(rng.sample(range(1, KEYS + 1), rng.randint(1, 3)))
    if roll < 0.6:
        for pk in ids:
            doc = s.get(Doc, pk)
            if doc is None:
                s.add(Doc(id=pk, title=title(rng)))
            else:
                doc.title = title(rng)
    elif roll < 0.8:
        for pk in ids:
            doc = s.get(Doc, pk)
            if doc is not None:
                s.delete(doc)
    else:
        s.execute(sa.update(Doc).where(Doc.id.in_(ids)).values(title=title(rng)))


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ops = 0
        self.retried = 0
        self.errors: list[BaseException] = []

    def add(self, ok: bool) -> None:
        with self.lock:
            if ok:
                self.ops += 1
            else:
                self.retried += 1


def check_all(engine: sa.Engine, Doc: Any, mirrors: list[Any], figures: Any) -> None:
    report = vks.drain(engine, mirrors)
    assert report.ok and report.remaining == 0, report
    with sa.orm.Session(engine) as s:
        rows = s.execute(sa.select(Doc.id, Doc.title, Doc.embedding)).all()
        drift = 0
        parts: dict[str, Any] = {}
        for mirror in mirrors:
            r = vk.verify(s, mirror)
            drift += len(r.missing) + len(r.extra) + len(r.mismatched)
            parts[f"verify {mirror.name}"] = (r.missing, r.extra, r.mismatched)
    # Every vector is the embedder's output for the row's title (embedding sync under races).
    want = vk.HashingEmbedder(DIM).embed([r.title for r in rows])
    stale = sum(not np.array_equal(r.embedding, w) for r, w in zip(rows, want))
    ids = np.array([r.id for r in rows])
    matrix = np.stack([r.embedding for r in rows]) if rows else np.zeros((0, DIM), np.float32)
    for mirror in mirrors:
        assert mirror.ids() == set(ids.tolist())
        got = mirror.get(ids.tolist())
        drift += sum(not np.allclose(got[pk], v, atol=1e-6) for pk, v in zip(ids.tolist(), matrix))
        for q in np.random.default_rng(0).standard_normal((5, DIM)).astype(np.float32):  # fresh brute force
            q = q / np.linalg.norm(q)
            normed = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
            ref = np.sort(1 - normed @ q)[:5]  # distances, not ids: equal titles tie exactly
            found = np.array([d for _, d in mirror.search(q, 5)])
            if not np.allclose(found, ref, atol=1e-5):
                drift += 1
                parts.setdefault(f"search {mirror.name}", []).append((found.tolist(), ref.tolist()))
    figures("drift_after_drain", drift)
    figures("rows_lost", stale)
    assert drift == 0 and stale == 0, (drift, stale, parts)


def test_threads_and_asyncio_tasks_race_on_pg_with_embedding_sync_and_two_mirrors(
    request: pytest.FixtureRequest, tmp_path: Path, figures: Any
) -> None:
    sync_backend = _get_backend(request, "pg-psycopg")
    async_backend = _get_backend(request, "pg-asyncpg")
    Doc = make_model()
    engine = sync_backend.engine
    Doc.metadata.create_all(engine)
    vks.create_outbox(engine)
    memory = vk.MemoryMirror(Doc.embedding, distance="cosine")
    faiss = vk.FaissMirror(Doc.embedding, path=tmp_path / "c.faiss", kind="hnsw", distance="cosine")
    mirrors = [memory, faiss]
    maker = sessionmaker(engine, expire_on_commit=False)
    from sqlalchemy.ext.asyncio import async_sessionmaker

    amaker = async_sessionmaker(async_backend.engine, expire_on_commit=False)
    attachments = [vks.attach(maker, mirrors, outbox=True), vks.attach(amaker, mirrors, outbox=True)]
    tally = Tally()
    stop = time.monotonic() + SECONDS

    def thread_worker(seed: int) -> None:
        rng = random.Random(seed)
        while time.monotonic() < stop:
            try:
                with maker() as s:
                    one_op(s, Doc, rng)
                    s.commit()
                tally.add(True)
            except BaseException as err:  # noqa: BLE001 - reported below unless retryable
                if not retryable(err):
                    tally.errors.append(err)
                    return
                tally.add(False)
                time.sleep(rng.random() * 0.01)

    async def task_worker(seed: int) -> None:
        rng = random.Random(seed)
        while time.monotonic() < stop:
            try:
                async with amaker() as s:
                    await s.run_sync(lambda ss: one_op(ss, Doc, rng))
                    await s.commit()
                tally.add(True)
            except BaseException as err:  # noqa: BLE001 - reported below unless retryable
                if not retryable(err):
                    tally.errors.append(err)
                    return
                tally.add(False)
                await asyncio.sleep(rng.random() * 0.01)

    async def tasks() -> None:
        await asyncio.wait_for(asyncio.gather(*(task_worker(100 + i) for i in range(3))), SECONDS + 60)

    threads = [threading.Thread(target=thread_worker, args=(i,), daemon=True) for i in range(3)]
    for t in threads:
        t.start()
    assert async_backend.loop is not None
    async_backend.loop.run_until_complete(tasks())
    for t in threads:
        t.join(SECONDS + 60)
        assert not t.is_alive(), "a writer thread is stuck (deadlock?)"
    assert not tally.errors, tally.errors[:3]
    figures("concurrent_operations", tally.ops + tally.retried)
    assert tally.ops > 20
    for a in attachments:
        a.detach()
    check_all(engine, Doc, mirrors, figures)
    faiss.close()
    Doc.metadata.drop_all(engine)


def test_sqlite_concurrent_writers_on_separate_engines(sqlite_dir: str, tmp_path: Path, figures: Any) -> None:
    """Writers on separate engines (separate connections, as separate processes would have) on one
    SQLite file: lock conflicts surface as ``OperationalError: database is locked`` and are retried
    with backoff; the file passes ``PRAGMA integrity_check`` and nothing drifts."""
    path = f"{sqlite_dir}/{uuid.uuid4().hex}.db"
    Doc = make_model()
    setup = vk.create_engine(f"sqlite:///{path}")
    Doc.metadata.create_all(setup)
    vks.create_outbox(setup)
    memory = vk.MemoryMirror(Doc.embedding, distance="cosine")
    faiss = vk.FaissMirror(Doc.embedding, path=tmp_path / "s.faiss", distance="cosine")
    mirrors = [memory, faiss]
    tally = Tally()
    messages: set[str] = set()
    stop = time.monotonic() + SECONDS
    engines = [vk.create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.05}) for _ in range(3)]
    makers = [sessionmaker(e, expire_on_commit=False) for e in engines]
    # drain_after_commit=False: with SQLite one drainer (below) applies the outbox.
    attachments = [vks.attach(m, mirrors, outbox=True, drain_after_commit=False) for m in makers]

    def worker(i: int) -> None:
        rng = random.Random(i)
        backoff = 0.002
        while time.monotonic() < stop:
            try:
                with makers[i]() as s:
                    one_op(s, Doc, rng)
                    s.commit()
                tally.add(True)
                backoff = 0.002
            except sa.exc.OperationalError as err:
                messages.add(str(err.orig))
                tally.add(False)
                time.sleep(backoff * (1 + rng.random()))
                backoff = min(backoff * 2, 0.2)
            except (sa.exc.IntegrityError, StaleDataError):
                tally.add(False)
            except BaseException as err:  # noqa: BLE001
                tally.errors.append(err)
                return

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(SECONDS + 60)
        assert not t.is_alive()
    assert not tally.errors, tally.errors[:3]
    assert messages <= {"database is locked"}, messages
    figures("concurrent_operations", tally.ops + tally.retried)
    assert tally.ops > 10
    for a in attachments:
        a.detach()
    with setup.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
    check_all(setup, Doc, mirrors, figures)
    faiss.close()
    for e in [*engines, setup]:
        e.dispose()
