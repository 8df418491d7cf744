"""Scale: bytes per vector on PostgreSQL (heap + HNSW index) against a linear model, and projections.

Run through the suite (``benchmarks/run.py --only scale``). For each storage type (``vk.Vector``
= pgvector ``vector``, fp32; ``vk.HalfVector`` = ``halfvec``; ``vk.BitVector`` = ``bit``, the sign
bits) a table ``(id integer primary key, embedding <type>(384))`` is filled with ``vk.bulk_load``
at a few sizes, an HNSW index (m=16, ef_construction=64; cosine, hamming for bit) is built, and
after ``VACUUM`` the sizes are read from the catalog: heap = ``pg_table_size`` (heap, TOAST, FSM,
VM), index = ``pg_relation_size`` of the HNSW index (the primary-key btree is shown apart).

The linear model ``bytes(n) = a + b n`` is fitted on the two smallest sizes; every larger point is
compared with it (target: within 5 %). Projections for 10M vectors come from the fitted line:
disk = heap + HNSW index + primary key; memory = the HNSW index (what has to stay cached for
searches at in-memory speed; the heap is read only for the k rows returned).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa
from _common import Result, SectionResult, stat_of
from sqlalchemy.engine import Engine

import sqlalchemy_vectorknobs as vk

DIM = 384
PROJECT_N = 10_000_000
TARGET_DEVIATION = 0.05


@dataclass(frozen=True)
class Point:
    precision: str
    n: int
    heap: int
    index: int
    pkey: int
    build_s: float

    @property
    def total(self) -> int:
        return self.heap + self.index

    def as_dict(self) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "n": self.n,
            "heap_bytes": self.heap,
            "hnsw_bytes": self.index,
            "pkey_bytes": self.pkey,
            "bytes_per_vector": self.total / self.n,
            "build_s": self.build_s,
        }


def _type(precision: str) -> Any:
    return {"fp32": vk.Vector(DIM), "halfvec": vk.HalfVector(DIM), "bit": vk.BitVector(DIM)}[precision]


def _values(precision: str, vectors: np.ndarray) -> Any:
    return vectors > 0 if precision == "bit" else vectors


def build_memory_mb(n: int, dim: int) -> int:
    """maintenance_work_mem for an HNSW build of ``n`` vectors of ``dim`` (fp32 at most): room for
    the whole graph (vector plus neighbour lists, with slack), at least 1 GB. pgvector builds much
    faster when the graph fits ("hnsw graph no longer fits into maintenance_work_mem" otherwise):
    at 1,000,000 x 384 with 1 GB the build took 22.8 min here."""
    per_vector = dim * 4 + 2 * 16 * 8 + 256  # float32 values, level-0 neighbours (m=16), overhead
    return max(1024, int(n * per_vector * 1.5 / 2**20) + 1)


def measure_point(engine: Engine, precision: str, vectors: np.ndarray, chunk: int = 20_000) -> Point:
    """Load ``vectors`` into a fresh table of ``precision``, build HNSW, read the sizes, drop it."""
    n = vectors.shape[0]
    name = f"vkbsc_{precision}_{n}"
    distance = "hamming" if precision == "bit" else "cosine"
    table = sa.Table(
        name,
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("embedding", _type(precision), nullable=False),
        vk.VectorIndex(f"{name}_hnsw", "embedding", distance=distance, m=16, ef_construction=64),
    )
    with engine.begin() as conn:
        table.drop(conn, checkfirst=True)
        conn.execute(sa.schema.CreateTable(table))
        values = _values(precision, vectors)
        for start in range(0, n, chunk):
            rows = [(start + i + 1, v) for i, v in enumerate(values[start : start + chunk])]
            vk.bulk_load(conn, table, rows)
    t0 = time.perf_counter()
    with engine.begin() as conn:
        conn.exec_driver_sql(f"SET LOCAL maintenance_work_mem = '{build_memory_mb(n, vectors.shape[1])}MB'")
        for index in table.indexes:
            index.create(conn)
    build = time.perf_counter() - t0
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f"VACUUM {name}")
            heap, index_bytes, pkey = conn.exec_driver_sql(
                f"SELECT pg_table_size('{name}'), pg_relation_size('{name}_hnsw'), pg_relation_size('{name}_pkey')"
            ).one()
    finally:
        with engine.begin() as conn:
            table.drop(conn, checkfirst=True)
    return Point(precision, n, int(heap), int(index_bytes), int(pkey), build)


def extend(data: np.ndarray, n: int, noise: float = 0.05) -> np.ndarray:
    """``n`` unit vectors: ``data`` followed by noisy copies of its rows (same distribution, no duplicates)."""
    rng = np.random.default_rng(1)
    extra = data[rng.integers(0, data.shape[0], n - data.shape[0])]
    extra = extra + rng.standard_normal(extra.shape, dtype=np.float32) * np.float32(noise)
    extra /= np.linalg.norm(extra, axis=1, keepdims=True)
    return np.concatenate([data, extra.astype(np.float32)])


def fit(points: Sequence[Point], attr: str = "total") -> tuple[float, float]:
    """``(a, b)`` of ``bytes = a + b n`` through the two smallest points."""
    p1, p2 = sorted(points, key=lambda p: p.n)[:2]
    y1, y2 = float(getattr(p1, attr)), float(getattr(p2, attr))
    b = (y2 - y1) / (p2.n - p1.n)
    return y1 - b * p1.n, b


def run(
    engine: Engine,
    data: np.ndarray,
    sizes: dict[str, Sequence[int]],
    extra_points: Sequence[Point] = (),
    skipped: str = "",
) -> SectionResult:
    """Measure every (precision, size) in ``sizes`` (rows taken from ``data``, repeated if needed)."""
    points: dict[str, list[Point]] = {}
    for precision, ns in sizes.items():
        for n in ns:
            vectors = data[:n] if n <= data.shape[0] else extend(data, n)
            points.setdefault(precision, []).append(measure_point(engine, precision, vectors))
    for p in extra_points:
        points.setdefault(p.precision, []).append(p)
    results: list[Result] = []
    projections: dict[str, dict[str, float]] = {}
    for precision, pts in points.items():
        pts.sort(key=lambda p: p.n)
        a, b = fit(pts)
        ai, bi = fit(pts, "index")
        ap, bp = fit(pts, "pkey")
        projections[precision] = {
            "bytes_per_vector_fitted": b,
            "disk_bytes_10M": a + b * PROJECT_N + ap + bp * PROJECT_N,
            "memory_bytes_10M": ai + bi * PROJECT_N,
        }
        for p in pts[2:]:
            predicted = a + b * p.n
            results.append(
                Result(
                    section="scale",
                    name=f"{precision}: bytes/vector (heap + HNSW) at {p.n:,} rows vs the linear model",
                    plugin=f"measured {p.total / p.n:,.1f} B/vector ({p.total / 2**20:,.1f} MiB)",
                    baseline=f"linear model from {pts[0].n:,} and {pts[1].n:,} rows: {predicted / p.n:,.1f} B/vector",
                    unit="bytes",
                    plugin_stat=stat_of([p.total]),
                    baseline_stat=stat_of([predicted]),
                    target=f"<= {1 + TARGET_DEVIATION}",
                    condition=abs(p.total / predicted - 1) <= TARGET_DEVIATION,
                    note=f"within {TARGET_DEVIATION:.0%} either side; HNSW built in {p.build_s:.1f} s",
                )
            )
    return SectionResult(
        results,
        {"scale: every precision has at least three points": all(len(p) >= 3 for p in points.values())},
        {
            "points": [p.as_dict() for pts in points.values() for p in pts],
            "projections_10M": projections,
            "skipped": skipped,
        },
    )
