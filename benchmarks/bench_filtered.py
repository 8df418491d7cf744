"""Filtered vector search: recall and latency at 1 % and 10 % selectivity against unfiltered search.

Run through the suite (``benchmarks/run.py --only filtered``): it needs the tables the HNSW and
exact sections build.

* PostgreSQL: the HNSW table of the ``hnsw`` section (D2, m=16, ef_construction=64), loaded with
  an integer ``bucket`` column, ``(id * 7919) % 100`` (a deterministic spread, independent of the
  clusters; see ``BUCKET_COLUMN``), and a B-tree index on ``bucket`` (pgvector's advice for
  filtered search). ``vk.nearest(..., where=bucket < 1)`` (1 %) and ``bucket < 10`` (10 %) against
  the same ``vk.nearest`` without a filter. The plugin asks the planner how many rows the filter
  keeps: 1 % (2,000 rows) runs exactly over those rows, 10 % (20,000) with
  ``hnsw.iterative_scan = relaxed_order``. The iterative scan alone at 1 % (``exact_below=0``) is
  shown as an information row.
* SQLite: a vec0 ``VectorIndex`` with ``bucket`` as a sqlite-vec metadata column (the filter runs
  inside the KNN scan) over D1, filtered against unfiltered.

Recall@10 is measured against numpy brute force over the rows that pass the filter. Target:
filtered recall >= 0.90 at <= 3x the unfiltered latency.

The same filters written the SQLAlchemy way, ``vk.nearest(...).where(bucket < n)`` (the criterion
is moved into the search), are timed against ``where=`` in the same rounds. Target: <= 1.1x, with
the same rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa
from _common import Result, SectionResult, scale_stat
from bench_search import DIM, K, Path, make_truth, result_ids, run_rounds
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

import sqlalchemy_vectorknobs as vk
from sqlalchemy_vectorknobs.query import exact_below_default

SELECTIVITY = {"1%": 1, "10%": 10}  # bucket < value
#: The column the hnsw section adds while loading its table (before the index is built).
BUCKET_COLUMN = {"bucket": "integer AS mod(id::bigint * 7919, 100)"}
TARGET_RECALL = 0.90
TARGET_LATENCY = 3.0
TARGET_WHERE_AFTER = 1.1


def bucket_of(ids: np.ndarray) -> np.ndarray:
    return (ids * 7919) % 100


def filtered_truth(vectors: np.ndarray, queries: np.ndarray, below: int) -> np.ndarray:
    """Ids (1-based) of the exact k nearest among rows with bucket < ``below``, nearest first."""
    ids = np.arange(1, vectors.shape[0] + 1)
    keep = bucket_of(ids) < below
    sub, sub_ids = vectors[keep].astype(np.float64), ids[keep]
    sims = queries.astype(np.float64) @ sub.T
    top = np.argsort(-sims, axis=1)[:, :K]
    return np.asarray(sub_ids[top])


def recall(found: Sequence[Sequence[int]], truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t.tolist())) / K for f, t in zip(found, truth)]))


def pg_table(name: str, index_name: str) -> sa.Table:
    """The HNSW table of the hnsw section, with the bucket column (a second Table object)."""
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("embedding", vk.Vector(DIM)),
        sa.Column("bucket", sa.Integer),
        vk.VectorIndex(index_name, "embedding", distance="cosine", m=16, ef_construction=64),
    )


def lite_table(name: str) -> sa.Table:
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("embedding", vk.Vector(DIM)),
        sa.Column("bucket", sa.Integer, nullable=False),
        vk.VectorIndex(f"{name}_vec", "embedding", distance="cosine", metadata_columns=["bucket"]),
    )


#: PostgreSQL: the 1 % filter again with the plugin's exact path switched off (information).
INDEX_ONLY = "1% index scan only"


def measure(
    engine: Engine,
    table: sa.Table,
    vectors: np.ndarray,
    queries: np.ndarray,
    repeats: int,
    dialect: str,
    index_only: bool = False,
) -> tuple[list[Result], dict[str, bool], dict[str, Any]]:
    """Time unfiltered and filtered ``vk.nearest`` (Core, one connection per round)."""
    n = len(queries)
    qs = list(queries)

    def path(where: Any, options: dict[str, Any] | None = None, after: bool = False) -> Callable[[], list[Any]]:
        def run() -> list[Any]:
            with engine.connect() as conn:
                if options:
                    conn = conn.execution_options(vector_search=options)
                if after:  # the SQLAlchemy way: filter the statement nearest() returns
                    return [conn.execute(vk.nearest(table.c.embedding, q, k=K).where(where)).all() for q in qs]
                return [conn.execute(vk.nearest(table.c.embedding, q, k=K, where=where)).all() for q in qs]

        return run

    paths = [Path("unfiltered", path(None))] + [
        Path(label, path(table.c.bucket < below)) for label, below in SELECTIVITY.items()
    ] + [Path(f".where() {label}", path(table.c.bucket < below, after=True)) for label, below in SELECTIVITY.items()]
    if index_only:
        paths.append(Path(INDEX_ONLY, path(table.c.bucket < SELECTIVITY["1%"], {"exact_below": 0})))
    stats, first = run_rounds(paths, repeats)
    ms = {k: scale_stat(s, 1e3 / n) for k, s in stats.items()}

    extra: dict[str, Any] = {"queries": n, "rows": int(vectors.shape[0])}
    checks: dict[str, bool] = {}
    extra["recall_unfiltered"] = recall(result_ids(first["unfiltered"]), make_truth(vectors, queries))
    results = []

    def against_unfiltered(name: str, plugin: str, stat: Any, **target: Any) -> Result:
        return Result(section="filtered", name=name, plugin=plugin, baseline="vk.nearest(...) without a filter",
                      unit="ms/query", plugin_stat=stat, baseline_stat=ms["unfiltered"], **target)

    for label, below in SELECTIVITY.items():
        ids = result_ids(first[label])
        rec = recall(ids, filtered_truth(vectors, queries, below))
        extra[f"recall_{label}"] = rec
        checks[f"{dialect} {label}: every result passes the filter and k rows come back"] = all(
            len(row) == K and all(bucket_of(np.asarray(row)) < below) for row in ids
        )
        results.append(
            against_unfiltered(
                f"{dialect}: filtered k={K} at {label} selectivity vs unfiltered (recall@{K} {rec:.3f})",
                f"vk.nearest(..., where=bucket < {below})",
                ms[label],
                target=f"<= {TARGET_LATENCY}",
                condition=rec >= TARGET_RECALL,
                note=f"recall@{K} {rec:.3f} (needs >= {TARGET_RECALL})",
            )
        )
    for label, below in SELECTIVITY.items():
        same = result_ids(first[f".where() {label}"]) == result_ids(first[label])
        checks[f"{dialect} {label}: vk.nearest(...).where() returns the rows where= returns"] = same
        results.append(
            Result(
                section="filtered",
                name=f"{dialect}: vk.nearest(...).where() vs where= at {label} selectivity",
                plugin=f"vk.nearest(...).where(bucket < {below})",
                baseline=f"vk.nearest(..., where=bucket < {below})",
                unit="ms/query",
                plugin_stat=ms[f".where() {label}"],
                baseline_stat=ms[label],
                target=f"<= {TARGET_WHERE_AFTER}",
                condition=same,
                note="same rows" if same else "DIFFERENT rows",
            )
        )
    if index_only:
        below = SELECTIVITY["1%"]
        rec = recall(result_ids(first[INDEX_ONLY]), filtered_truth(vectors, queries, below))
        extra["recall_1%_index_only"] = rec
        results.append(
            against_unfiltered(
                f"{dialect}: 1% selectivity, HNSW iterative scan only (exact_below=0; recall@{K} {rec:.3f}) (information)",
                f"vk.nearest(..., where=bucket < {below}), vector_search={{'exact_below': 0}}",
                ms[INDEX_ONLY],
            )
        )
    return results, checks, extra


def run_pg(engine: Engine, table_name: str, index_name: str, vectors: np.ndarray, queries: np.ndarray, repeats: int) -> SectionResult:
    table = pg_table(table_name, index_name)
    t0 = time.perf_counter()
    with engine.connect() as conn:
        buckets = conn.exec_driver_sql(f"SELECT count(*) FROM {table_name} WHERE bucket = mod(id::bigint * 7919, 100)").scalar()
    if buckets != vectors.shape[0]:
        raise RuntimeError(f"{table_name} lacks the bucket column of BUCKET_COLUMN (run the hnsw section first)")
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {table_name}_bucket ON {table_name} (bucket)")
        conn.exec_driver_sql(f"ANALYZE {table_name}")
    results, checks, extra = measure(engine, table, vectors, queries, repeats, "PostgreSQL HNSW", index_only=True)
    with Session(engine) as session:
        for label, below in SELECTIVITY.items():
            plan = vk.explain(session, vk.nearest(table.c.embedding, queries[0], k=K, where=table.c.bucket < below))
            exact = vectors.shape[0] * below // 100 <= exact_below_default(DIM)  # the planner's estimate is close
            path = "runs exactly through the bucket B-tree" if exact else "uses the HNSW index"
            checks[f"PostgreSQL filtered search at {label} ({vectors.shape[0] * below // 100:,} rows) {path}"] = (
                (not plan.uses_vector_index and f"{table_name}_bucket" in plan.indexes_used)
                if exact
                else plan.uses_vector_index
            )
    extra["setup_s"] = time.perf_counter() - t0
    return SectionResult(results, checks, {"postgresql": extra})


def run_sqlite(engine: Engine, vectors: np.ndarray, queries: np.ndarray, repeats: int) -> SectionResult:
    table = lite_table("vkbf_filt")
    ids = np.arange(1, vectors.shape[0] + 1)
    with engine.begin() as conn:
        table.drop(conn, checkfirst=True)
        conn.execute(sa.schema.CreateTable(table))
        vk.bulk_load(conn, table, list(zip(ids.tolist(), vectors, bucket_of(ids).tolist())), columns=["id", "embedding", "bucket"])
        for index in table.indexes:
            index.create(conn)
    try:
        results, checks, extra = measure(engine, table, vectors, queries, repeats, "SQLite vec0")
        with Session(engine) as session:
            explained = vk.explain(session, vk.nearest(table.c.embedding, queries[0], k=K, where=table.c.bucket < 10))
        checks["SQLite filtered search uses the vec0 index"] = explained.uses_vector_index
    finally:
        with engine.begin() as conn:
            table.drop(conn, checkfirst=True)
    return SectionResult(results, checks, {"sqlite": extra})
