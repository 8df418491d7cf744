"""Concurrency acceptance: threads updating overlapping rows on PostgreSQL, mirrors attached with the outbox.

Worker threads commit for ``VECTORKNOBS_CONCURRENCY_SECONDS`` seconds (default 5 in the suite; the
acceptance run used 30, see docs/mirrors.md) random mixes of ORM inserts, vector and category
updates, deletes, and bulk ``update()``/``delete()`` statements over a small pool of keys, so
transactions collide on the same rows all the time (duplicate-key and deadlock errors are rolled
back and counted). Every commit drains its own outbox rows right away, so several drainers race on
the same mirrors. Afterwards one ``vk.drain`` must find nothing left to fail, ``vk.verify`` must
report zero drift, and every mirror must hold the latest committed vector (and category) of every
row, read straight from the table.

* Faiss (HNSW, saved to a file, so tombstones and their rebuilds happen under load) and memory,
  4 threads, plus a thread that runs ``vk.rebuild`` on the Faiss mirror in a loop, so generations
  are built and swapped while writes keep arriving.
* Chroma and memory, 2 threads.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

import sqlalchemy_vectorknobs as vk
from sqlalchemy_vectorknobs import sync as vks

from ..conftest import _get_backend
from .conftest import DIM, SyncEnv, _teardown, assert_matches, make_env

# Rows deleted by another thread between a read and the flush are expected here.
pytestmark = pytest.mark.filterwarnings("ignore:DELETE statement on table:sqlalchemy.exc.SAWarning")

SECONDS = float(os.environ.get("VECTORKNOBS_CONCURRENCY_SECONDS", "5"))
KEYS = 40


@pytest.fixture
def pg_env(request: pytest.FixtureRequest) -> Iterator[SyncEnv]:
    e = make_env(_get_backend(request, "pg-psycopg"))
    yield e
    _teardown(e)


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.errors: list[BaseException] = []

    def add(self, what: str) -> None:
        with self.lock:
            self.counts[what] = self.counts.get(what, 0) + 1


def _worker(env: SyncEnv, seed: int, stop: float, tally: Tally) -> None:
    Doc = env.Doc
    rng = random.Random(seed)
    nprng = np.random.default_rng(seed)

    def vector() -> np.ndarray:
        return nprng.standard_normal(DIM).astype(np.float32)

    while time.monotonic() < stop:
        ids = sorted(rng.sample(range(1, KEYS + 1), rng.randint(1, 4)))
        roll = rng.random()
        try:
            with env.maker() as s:
                if roll < 0.55:  # ORM: insert the missing ones, update the others
                    for pk in ids:
                        doc = s.get(Doc, pk)
                        if doc is None:
                            s.add(Doc(id=pk, category=rng.choice("abc"), embedding=vector()))
                        elif rng.random() < 0.25:
                            doc.category = rng.choice("abc")
                        else:
                            doc.embedding = vector()
                    what = "orm"
                elif roll < 0.7:
                    s.execute(sa.update(Doc).where(Doc.id.in_(ids)).values(embedding=vector(), category=rng.choice("abc")))
                    what = "bulk update"
                elif roll < 0.8:
                    for pk in ids:
                        doc = s.get(Doc, pk)
                        if doc is not None:
                            s.delete(doc)
                    what = "orm delete"
                elif roll < 0.85:
                    s.execute(sa.delete(Doc).where(Doc.id.in_(ids)))
                    what = "bulk delete"
                elif roll < 0.9:
                    s.execute(sa.update(Doc).where(Doc.id.between(ids[0], ids[0] + 3)).values(embedding=vector()))
                    what = "bulk range update"
                else:
                    for pk in ids:
                        doc = s.get(Doc, pk)
                        if doc is not None:
                            doc.embedding = None  # leaves the mirrors
                    what = "null vector"
                s.commit()
            tally.add(what)
        except (sa.exc.IntegrityError, sa.exc.OperationalError, StaleDataError):
            # two inserts of one key, a deadlock, a row deleted meanwhile: nothing committed
            tally.add("rolled back")
        except BaseException as err:  # noqa: BLE001 - reported by the test
            tally.errors.append(err)
            return


def _hammer(env: SyncEnv, threads: int, extra: Callable[[float, Tally], None] | None = None) -> Tally:
    tally = Tally()
    stop = time.monotonic() + SECONDS
    workers = [threading.Thread(target=_worker, args=(env, 1000 + n, stop, tally)) for n in range(threads)]
    if extra is not None:
        workers.append(threading.Thread(target=extra, args=(stop, tally)))
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not tally.errors, tally.errors[0]
    return tally


def _check(env: SyncEnv, mirrors: list[Any], tally: Tally) -> None:
    report = env.drain(mirrors)
    assert report.ok and report.remaining == 0 and not report.dead, report
    for mirror in mirrors:
        drift = env.orm(lambda s: vks.verify(s, mirror))
        assert drift.ok, f"{drift} after {tally.counts}"
        assert_matches(env, mirror)  # the latest committed vector and category of every row
    print(f"\n{[m.name for m in mirrors]}: {SECONDS:g} s, {tally.counts}")


def test_four_threads_with_faiss_and_memory_mirrors(pg_env: SyncEnv, tmp_path: Path) -> None:
    env = pg_env
    faiss = vk.FaissMirror(env.Doc.embedding, path=tmp_path / "doc.vkfaiss", kind="hnsw", m=8, metadata_columns=["category"])
    memory = vk.MemoryMirror(env.Doc.embedding, metadata_columns=["category"])
    env.attach([faiss, memory], outbox=True)

    def rebuilds(stop: float, tally: Tally) -> None:
        try:
            while time.monotonic() < stop:
                time.sleep(0.3)
                with Session(env.backend.engine) as s:
                    vk.rebuild(s, faiss, batch_size=16, progress=False)
                tally.add("rebuild")
        except BaseException as err:  # noqa: BLE001 - reported by the test
            tally.errors.append(err)

    tally = _hammer(env, 4, rebuilds)
    assert tally.counts.get("rebuild", 0) >= 1
    _check(env, [faiss, memory], tally)
    faiss.close()
    with vk.FaissMirror(env.Doc.embedding, path=tmp_path / "doc.vkfaiss", kind="hnsw", m=8, metadata_columns=["category"]) as again:
        assert_matches(env, again)


def test_two_threads_with_a_chroma_mirror(pg_env: SyncEnv, tmp_path: Path) -> None:
    env = pg_env
    chroma = vk.ChromaMirror(env.Doc.embedding, path=tmp_path / "chroma", metadata_columns=["category"])
    memory = vk.MemoryMirror(env.Doc.embedding, metadata_columns=["category"])
    env.attach([chroma, memory], outbox=True)
    tally = _hammer(env, 2)
    _check(env, [chroma, memory], tally)
    chroma.close()
