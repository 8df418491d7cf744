"""Crash acceptance: a writer killed with SIGKILL while it applies committed changes to a Faiss mirror loses nothing.

Each run starts ``kill_writer.py`` in a child process on a fresh table: it commits 50 commits of
20 ORM changes (1,000 changes) with ``outbox=True`` into a ``FaissMirror`` saved to a file
(flat and HNSW alternate). The parent waits for a commit chosen by a seeded RNG, sleeps a random
fraction of the time a commit-and-apply takes (estimated from the commits so far), and sends
SIGKILL with ``os.kill``, so the kill lands at a random point of the commit, the outbox drain, the
Faiss write or the file save. Afterwards the Faiss file is reloaded, ``vk.drain`` finishes the
outbox, and ``vk.verify`` must report zero drift; the file is then reloaded once more and compared
with the committed rows again.

``VECTORKNOBS_CRASH_RUNS`` sets the number of runs per database (default 20, the acceptance count).
"""

from __future__ import annotations

import os
import random
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

import sqlalchemy_vectorknobs as vk
from sqlalchemy_vectorknobs import sync as vks

from ..conftest import unique
from .conftest import make_model

RUNS = int(os.environ.get("VECTORKNOBS_CRASH_RUNS", "20"))
COMMITS, PER_COMMIT = 50, 20
WRITER = str(Path(__file__).with_name("kill_writer.py"))


def _read_line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        assert proc.stderr is not None
        proc.wait(timeout=30)
        raise AssertionError(f"writer exited with {proc.returncode} before it was killed: {proc.stderr.read()}")
    return line.strip()


def _run_and_kill(args: list[str], target: int, fraction: float) -> tuple[bool, int]:
    """Start the writer, SIGKILL it ``fraction`` of a commit after it announces commit ``target``.

    Returns (killed, commits announced).
    """
    proc = subprocess.Popen([sys.executable, WRITER, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _read_line(proc) == "ready"
        stamps: list[float] = []
        while True:
            line = _read_line(proc)
            if line == "done":
                proc.wait(timeout=30)
                assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
                return False, len(stamps)
            stamps.append(time.perf_counter())
            if line == f"commit {target}":
                gaps = [b - a for a, b in zip(stamps, stamps[1:])]
                typical = statistics.median(gaps) if gaps else 0.01
                time.sleep(fraction * typical)
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
                return proc.returncode == -signal.SIGKILL, len(stamps)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def _committed(engine: sa.Engine, Doc: Any) -> dict[int, tuple[Any, Any]]:
    with engine.connect() as conn:
        return {r.id: (r.embedding, r.category) for r in conn.execute(sa.select(Doc.id, Doc.embedding, Doc.category))}


def _assert_same(mirror: Any, rows: dict[int, tuple[Any, Any]]) -> None:
    want = {pk: v for pk, (v, _) in rows.items() if v is not None}
    assert mirror.ids() == set(want)
    got = mirror.get(list(want))
    for pk, v in want.items():
        np.testing.assert_allclose(got[pk], v, atol=1e-6, err_msg=f"vector of id {pk}")
        category = rows[pk][1]
        assert mirror.metadata(pk) == ({} if category is None else {"category": category})


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_sigkill_during_mirror_application_loses_nothing(database: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    rng = random.Random(f"vk-crash-{database}")
    pg_url = None
    if database == "postgresql":
        pg_url = request.getfixturevalue("pg_url").set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    killed_runs = pending_runs = changes = 0
    for run in range(RUNS):
        url = pg_url or f"sqlite:///{tmp_path / f'run{run}.db'}"
        table = unique("kill")
        Doc = make_model(table)
        kind = ("flat", "hnsw")[run % 2]
        path = tmp_path / f"run{run}.vkfaiss"
        engine = vk.create_engine(url)
        try:
            Doc.metadata.create_all(engine)
            vks.create_outbox(engine)
            args = [url, str(path), table, kind, str(rng.randrange(10**6)), str(COMMITS), str(PER_COMMIT)]
            killed, announced = _run_and_kill(args, target=rng.randrange(COMMITS), fraction=rng.random())
            killed_runs += killed
            changes += announced * PER_COMMIT
            name = f"faiss:{table}.embedding"
            with engine.connect() as conn:
                t = vks.outbox_table
                pending = conn.execute(sa.select(sa.func.count()).select_from(t).where(t.c.mirror == name)).scalar_one()
            pending_runs += pending > 0

            with vk.FaissMirror(Doc.embedding, path=path, kind=kind, metadata_columns=["category"], m=8) as mirror:
                report = vks.drain(engine, [mirror])
                assert report.ok and report.remaining == 0 and not report.dead, f"run {run}: {report}"
                with Session(engine) as s:
                    drift = vks.verify(s, mirror)
                assert drift.ok, f"run {run} ({kind}, {pending} pending): {drift}"
            rows = _committed(engine, Doc)
            with vk.FaissMirror(Doc.embedding, path=path, kind=kind, metadata_columns=["category"], m=8) as reloaded:
                with Session(engine) as s:
                    assert vks.verify(s, reloaded).ok, f"run {run}: drift after reloading the Faiss file"
                _assert_same(reloaded, rows)
        finally:
            Doc.metadata.drop_all(engine)
            with engine.begin() as conn:
                conn.execute(vks.outbox_table.delete().where(vks.outbox_table.c.table_name == table))
            engine.dispose()
    print(f"\n{database}: {RUNS} runs, {killed_runs} killed, {pending_runs} with outbox rows pending, ~{changes} changes")
    assert killed_runs >= RUNS - 1, f"only {killed_runs} of {RUNS} writers were killed before finishing"
    # The point of the test: some kills fell between a commit and its acknowledgement.
    assert pending_runs >= 1, f"no run was killed with changes committed but not yet applied ({RUNS} runs)"
