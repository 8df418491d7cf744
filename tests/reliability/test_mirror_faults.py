"""Mirrors that fail: one that raises and one that hangs, next to a healthy Faiss mirror.

In every case the SQL commit succeeds, the healthy mirror is updated, the outbox keeps the change
for the failing mirror, and a later ``vk.drain`` applies it once the mirror works again; a mirror
that hangs is cut off by the apply timeout (``vk.attach(timeout=)`` / ``vk.drain(timeout=)``) so
neither a commit nor a drain waits on it for longer, and its write finishing late (with its old
version) cannot overwrite a newer change.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import sqlalchemy_vectorknobs as vk
from sqlalchemy_vectorknobs import sync as vks

from ..conftest import _get_backend
from ..sync.conftest import SyncEnv, _teardown, assert_matches, make_env, vec
from .conftest import SCALE


@pytest.fixture(params=["sqlite", "pg-psycopg"])
def env(request: pytest.FixtureRequest) -> Iterator[SyncEnv]:
    e = make_env(_get_backend(request, request.param))
    yield e
    _teardown(e)


class Faulty:
    """Wraps a mirror; while ``mode`` is "raise" every write raises, while "hang" every write blocks
    until :meth:`release` (then goes through to the inner mirror, late)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.mode = "ok"
        self.gate = threading.Event()
        self.hung = 0
        self.late_writes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def release(self) -> None:
        self.mode = "ok"
        self.gate.set()

    def _enter(self) -> None:
        if self.mode == "raise":
            raise vk.MirrorError(f"Mirror '{self.inner.name}' is unreachable.")
        if self.mode == "hang":
            self.hung += 1
            assert self.gate.wait(60), "never released"
            self.late_writes += 1

    def upsert(self, ids: Any, vectors: Any, metadata: Any = None, *, versions: Any = None) -> int:
        self._enter()
        return int(self.inner.upsert(ids, vectors, metadata, versions=versions))

    def delete(self, ids: Any, *, versions: Any = None) -> int:
        self._enter()
        return int(self.inner.delete(ids, versions=versions))


def _bounded(fn: Any, seconds: float) -> Any:
    """Run ``fn`` in a thread; fail the test (instead of hanging it) if it takes longer than ``seconds``."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as err:  # re-raised in the test thread
            box["error"] = err

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still blocked after {seconds} s: no timeout cut the hanging mirror off"
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _drift(env: SyncEnv, mirror: Any) -> int:
    report = env.orm(lambda s: vk.verify(s, mirror))
    return len(report.missing) + len(report.extra) + len(report.mismatched)


def _mirrors(env: SyncEnv, tmp_path: Path) -> tuple[Faulty, Any]:
    faulty = Faulty(vk.MemoryMirror(env.Doc.embedding, metadata_columns=["category"]))
    faiss = vk.FaissMirror(env.Doc.embedding, path=tmp_path / "m.faiss", metadata_columns=["category"])
    return faulty, faiss


@pytest.mark.parametrize("on_error", ["raise", "log"])
def test_a_raising_mirror_never_loses_a_committed_change(env: SyncEnv, tmp_path: Path, on_error: str, figures: Any) -> None:
    Doc = env.Doc
    faulty, faiss = _mirrors(env, tmp_path)
    env.attach([faulty, faiss], outbox=True, on_error=on_error)
    rounds = 3 * SCALE
    for r in range(rounds):
        faulty.mode = "raise"

        def change(s: Any, r: int = r) -> None:
            for i in range(1, 6):
                doc = s.get(Doc, i)
                if doc is None:
                    s.add(Doc(id=i, category="a", embedding=vec(i, r)))
                else:
                    doc.embedding = vec(i, r)
            if r and (gone := s.get(Doc, 6 + r)):
                s.delete(gone)
            s.add(Doc(id=6 + r + 1, category="b", embedding=vec(6 + r + 1)))
            s.commit()

        if on_error == "raise":
            with pytest.raises(vk.MirrorSyncError) as info:
                env.orm(change)
            assert faulty.name in info.value.failures
        else:
            env.orm(change)
        figures("faults_injected")
        # Committed in SQL, applied to the healthy mirror, kept in the outbox for the failing one.
        assert {1, 2, 3, 4, 5} <= set(env.committed())
        assert_matches(env, faiss)
        assert env.outbox_rows(faulty), "the failing mirror's changes left the outbox"
        assert not env.outbox_rows(faiss)
        report = env.drain([faulty, faiss], now=time.time() + 3600)  # the mirror is still down
        assert report.failed and not report.applied
        faulty.mode = "ok"
        report = env.drain([faulty, faiss], now=time.time() + 7200)  # past the retry's backoff
        assert report.ok and report.remaining == 0, report
        assert_matches(env, faulty)
        lost = _drift(env, faulty) + _drift(env, faiss)
        figures("rows_lost", lost)
        figures("drift_after_drain", lost)
        assert lost == 0
    faiss.close()


def test_a_hanging_mirror_is_cut_off_by_the_timeout_and_drained_later(env: SyncEnv, tmp_path: Path, figures: Any) -> None:
    Doc = env.Doc
    faulty, faiss = _mirrors(env, tmp_path)
    env.attach([faulty, faiss], outbox=True, on_error="raise", timeout=0.3)
    env.orm(lambda s: (s.add_all([Doc(id=i, category="a", embedding=vec(i)) for i in range(1, 4)]), s.commit()))
    assert_matches(env, faulty)

    faulty.mode = "hang"

    def update(variant: int) -> Any:
        def go(s: Any) -> None:
            s.get(Doc, 1).embedding = vec(1, variant)
            s.commit()

        return lambda: env.orm(go)

    # The commit returns (with MirrorSyncError: the data is committed) instead of waiting on the mirror.
    with pytest.raises(vk.MirrorSyncError, match="did not finish a write"):
        _bounded(update(1), 20)
    figures("faults_injected")
    np.testing.assert_array_equal(env.committed()[1][0], vec(1, 1))
    assert_matches(env, faiss)
    assert len(env.outbox_rows(faulty)) == 1
    # A drain while it still hangs is cut off too and keeps the row.
    report = _bounded(lambda: env.drain([faulty], timeout=0.3, now=time.time() + 3600), 20)
    assert report.failed == 1 and report.applied == 0 and "did not finish" in str(report.errors[faulty.name])
    figures("faults_injected")
    # A newer change commits while the old writes are still stuck.
    with pytest.raises(vk.MirrorSyncError):
        _bounded(update(2), 20)
    figures("faults_injected")
    faulty.release()  # the stuck writes (carrying vec(1, 1) and older versions) now finish, late
    deadline = time.monotonic() + 20
    while faulty.late_writes < faulty.hung and time.monotonic() < deadline:
        time.sleep(0.01)
    assert faulty.late_writes == faulty.hung >= 3
    report = _bounded(lambda: env.drain([faulty, faiss], now=time.time() + 7200), 20)
    assert report.ok and report.remaining == 0, report
    # The newest committed vector wins: late writes of older versions did not resurrect vec(1, 1).
    np.testing.assert_array_equal(faulty.get([1])[1], vec(1, 2))
    assert_matches(env, faulty)
    assert_matches(env, faiss)
    drift = _drift(env, faulty) + _drift(env, faiss)
    figures("drift_after_drain", drift)
    assert drift == 0
    faiss.close()


def test_a_hanging_mirror_without_outbox_reports_and_verify_finds_it(env: SyncEnv, figures: Any) -> None:
    Doc = env.Doc
    faulty = Faulty(vk.MemoryMirror(Doc.embedding, metadata_columns=["category"]))
    env.attach([faulty], on_error="log", timeout=0.2)
    faulty.mode = "hang"
    _bounded(lambda: env.orm(lambda s: (s.add(Doc(id=1, category="a", embedding=vec(1))), s.commit())), 20)
    figures("faults_injected")
    assert 1 in env.committed()
    report = env.orm(lambda s: vk.verify(s, faulty))
    assert report.missing == [1]
    faulty.release()
    env.orm(lambda s: vk.verify(s, faulty, repair=True))
    assert _drift(env, faulty) == 0


@pytest.mark.parametrize("timeout", [0, -1, "5", float("nan"), float("inf"), True])
def test_bad_timeouts_are_refused(env: SyncEnv, timeout: Any) -> None:
    mirror = vk.MemoryMirror(env.Doc.embedding)
    with pytest.raises(vk.InvalidMirrorError, match="timeout"):
        vks.attach(env.maker, [mirror], timeout=timeout)
    with pytest.raises(vk.InvalidMirrorError, match="timeout"):
        vks.drain(env.backend.sync_engine, [mirror], timeout=timeout)
