"""Faiss persistence under SIGKILL and a full disk (child processes: ``faiss_child.py``).

* SIGKILL: a child upserts a batch (one fsynced journal record) and writes a snapshot
  (``save()``: temp file, fsync, ``os.replace``, journal reset) in a loop; the parent kills it at
  a random moment, many times, alternating flat and HNSW indexes. After each kill the file must
  load, and what it holds must equal, vector for vector, a state the child had reached: the last
  step it announced, or the one it was writing (a write is durable once the call returns, so the
  state in flight may already be on disk). The next child continues from there.
* Disk full: the child caps its file size with ``RLIMIT_FSIZE`` (SIGXFSZ ignored, so ``write``
  fails with EFBIG as on a full disk) and writes more than fits: the error is a one-sentence
  ``MirrorError`` naming the file, the previous file still loads with the previous state, and
  once the cap is lifted a save succeeds and holds everything.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import sqlalchemy_vectorknobs as vk

from . import faiss_child as child
from .conftest import SCALE

CHILD = str(Path(__file__).with_name("faiss_child.py"))
KILLS = 8 * SCALE


def _states(seed: int, upto: int) -> list[dict[int, np.ndarray]]:
    """The mirror's content after each step 0..upto (recomputed here, independently of the child)."""
    states: list[dict[int, np.ndarray]] = [{}]
    for j in range(1, upto + 1):
        ids, vectors = child.step(seed, j)
        state = dict(states[-1])
        state.update(zip(ids, vectors))
        states.append(state)
    return states


def _equal(mirror: Any, state: dict[int, np.ndarray]) -> bool:
    if mirror.ids() != set(state):
        return False
    got = mirror.get(list(state))
    return all(np.array_equal(got[pk], v) for pk, v in state.items())


def test_sigkill_during_faiss_persistence_leaves_a_committed_state(tmp_path: Path, figures: Any) -> None:
    rng = random.Random(11 if not os.environ.get("VECTORKNOBS_SOAK") else None)
    seed = 5
    path = tmp_path / "kill.faiss"
    at = 0  # the step the file holds
    kinds = ["flat", "hnsw"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")])}
    for kill in range(KILLS):
        kind = kinds[(kill // 2) % 2]
        if kill and kill % 2 == 0:  # a fresh file of the other kind every second kill
            for p in tmp_path.iterdir():
                p.unlink()
            at = 0
        proc = subprocess.Popen(
            [sys.executable, CHILD, "save", str(path), str(seed), kind, str(at + 1)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        assert proc.stdout is not None
        announced = at
        target = rng.randint(1, 6)
        for _ in range(target):
            line = proc.stdout.readline()
            if not line:
                proc.wait(30)
                raise AssertionError(f"child died: {proc.stderr.read() if proc.stderr else ''}")
            announced = int(line)
        time.sleep(rng.random() * 0.02)  # somewhere inside the next upsert + save
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        figures("faults_injected")
        for line in proc.stdout.read().split():
            announced = int(line)  # printed before the kill landed
        proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()
        states = _states(seed, announced + 1)
        reloaded = vk.FaissMirror(child.column(), path=path, kind=kind, distance="l2", autosave=False)
        matches = [j for j in (announced, announced + 1) if _equal(reloaded, states[j])]
        reloaded.close()
        figures("rows_lost", 0 if matches else 1)
        assert matches, f"after kill {kill} the file holds no committed state (announced {announced})"
        at = matches[-1]
        figures("inputs_tried", at)
    assert at > 0


def test_disk_full_during_faiss_save_keeps_the_previous_file(tmp_path: Path, figures: Any) -> None:
    path = tmp_path / "full.faiss"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, CHILD, "diskfull", str(path)], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    figures("faults_injected", len(got["errors"]))
    assert got["errors"], "writing past the file-size cap raised nothing"
    for error in got["errors"]:
        assert error.startswith("MirrorError: "), error
        assert str(path) in error and "File too large" in error and "\n" not in error, error
    assert got["reloaded_while_full"] == list(range(1, 21)), "the previous file no longer holds the previous state"
    assert got["reloaded_vectors_equal"]
    assert got["saved_after"] and got["final_count"] == 2020 and got["final_b_equal"]
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == [], f"temporary files left behind: {leftovers}"
    figures("rows_lost", 0)


@pytest.mark.parametrize("stage", ["snapshot", "journal"])
def test_write_failure_is_retried_by_the_next_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stage: str) -> None:
    """In process: a failing write (ENOSPC from os.fsync) surfaces as MirrorError; the next write saves all."""
    from sqlalchemy_vectorknobs.mirrors import _faiss_file

    path = tmp_path / f"{stage}.faiss"
    mirror = vk.FaissMirror(child.column(), path=path, distance="l2")
    mirror.upsert([1], np.ones((1, child.DIM), dtype=np.float32))
    real = os.fsync

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_faiss_file.os, "fsync", full)
    with pytest.raises(vk.MirrorError, match="No space left"):
        if stage == "snapshot":
            mirror.save()
        else:
            mirror.upsert([2], np.full((1, child.DIM), 2, dtype=np.float32))
    monkeypatch.setattr(_faiss_file.os, "fsync", real)
    before = vk.FaissMirror(child.column(), path=path, distance="l2", autosave=False)
    # A failed fsync does not unwrite the record: the file holds the old state, or (journal) the
    # failed write too. Either is a state the mirror had; the caller was told it is not durable.
    assert before.ids() in ({1}, {1, 2} if stage == "journal" else {1})
    before.close()
    mirror.upsert([3], np.full((1, child.DIM), 3, dtype=np.float32))
    mirror.close()
    after = vk.FaissMirror(child.column(), path=path, distance="l2", autosave=False)
    assert after.ids() == ({1, 3} if stage == "snapshot" else {1, 2, 3})
    after.close()
