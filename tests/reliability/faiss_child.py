"""Child process for test_faiss_faults.py (run as a script): writes a FaissMirror file in a loop, or fills the disk.

``save <path> <seed> <kind>``: step j = 1, 2, ... upserts the vectors of :func:`step` (one journal
record, durable when the call returns), then writes a snapshot with ``save()``; prints ``j`` once
both returned. The parent SIGKILLs it at a random moment.

``diskfull <path>``: writes and saves state A, then caps the file size (RLIMIT_FSIZE, SIGXFSZ
ignored, so writes fail with EFBIG like on a full disk), tries to save a larger state B, reopens
the file in a second mirror, lifts the cap and saves again; prints one JSON line of what happened.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
from typing import Any

import numpy as np
import sqlalchemy as sa

import sqlalchemy_vectorknobs as vk

DIM = 16
IDS = 300


def column() -> Any:
    md = sa.MetaData()
    t = sa.Table("faiss_child", md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("v", vk.Vector(DIM)))
    return t.c.v


def step(seed: int, j: int) -> tuple[list[int], np.ndarray]:
    """The ids and vectors step ``j`` writes (the parent recomputes them as its reference)."""
    rng = np.random.default_rng([seed, j])
    ids = sorted(int(i) + 1 for i in rng.choice(IDS, size=25, replace=False))
    return ids, rng.standard_normal((len(ids), DIM)).astype(np.float32)


def save_loop(path: str, seed: int, kind: str) -> None:
    mirror = vk.FaissMirror(column(), path=path, kind=kind, distance="l2")
    start = int(sys.argv[5])  # the step after the state the parent found in the file
    for j in range(start, 10**9):
        ids, vectors = step(seed, j)
        mirror.upsert(ids, vectors)
        mirror.save()
        print(j, flush=True)


def disk_full(path: str) -> None:
    col = column()
    out: dict[str, Any] = {}
    mirror = vk.FaissMirror(col, path=path, distance="l2")
    a = np.random.default_rng(1).standard_normal((20, DIM)).astype(np.float32)
    mirror.upsert(list(range(1, 21)), a)
    mirror.save()
    size = os.path.getsize(path)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 512, hard))
    b = np.random.default_rng(2).standard_normal((2000, DIM)).astype(np.float32)
    errors = []
    try:
        mirror.upsert(list(range(21, 2021)), b)  # the journal record alone is over the cap
    except vk.VectorKnobsError as err:
        errors.append(f"{type(err).__name__}: {err}")
    try:
        mirror.save()
    except vk.VectorKnobsError as err:
        errors.append(f"{type(err).__name__}: {err}")
    out["errors"] = errors
    other = vk.FaissMirror(col, path=path, distance="l2", autosave=False)
    out["reloaded_while_full"] = sorted(other.ids())
    out["reloaded_vectors_equal"] = bool(np.array_equal(np.stack([other.get([i])[i] for i in range(1, 21)]), a))
    other.close()
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # space is back
    mirror.save()
    out["saved_after"] = True
    mirror.close()
    final = vk.FaissMirror(col, path=path, distance="l2", autosave=False)
    out["final_count"] = final.count()
    out["final_b_equal"] = bool(np.allclose(np.stack([final.get([i])[i] for i in range(21, 2021)]), b))
    final.close()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "save":
        save_loop(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        disk_full(sys.argv[2])
