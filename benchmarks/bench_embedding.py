"""Embedding-sync benchmark: what keeping vectors in step costs, against doing without.

Measured side by side in one process (one warm-up round, then ``repeats`` rounds, order
alternating; median, min and max reported), on SQLite + sqlite-vec and PostgreSQL + pgvector:

1. Flush of N new rows (ORM ``add_all`` + ``commit``): a model whose ``embedded_column`` is
   filled by ``HashingEmbedder(384)`` at flush time, against the same rows with the vectors
   computed beforehand (outside the timing) on a plain ``vk.Vector(384)`` column. The plugin's
   side also writes the two companion columns. Target: <= 1.3x.
2. Sync check for one primary key: ``session.execute(vk.stale(Doc).where(Doc.id == k))`` against
   ``session.execute(select(Doc).where(Doc.id == k))``, over the same random keys. Target: <= 2x.
3. Models without vector columns: an ORM insert loop (add + flush per row) and a select-by-key
   loop with the plugin attached (``vk.create_engine`` and the embedding listeners installed)
   against plain ``sqlalchemy.create_engine`` with the same DBAPI module and no listeners.
   Target: <= 3 % overhead.

Run from the repository root::

    .venv/bin/python benchmarks/bench_embedding.py            # N = 10,000, 7 repeats
    .venv/bin/python benchmarks/bench_embedding.py --quick    # N = 2,000, 3 repeats
"""

from __future__ import annotations

import argparse
import gc
import platform
import random
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import numpy as np
import sqlalchemy as sa
from _common import Stat, alternating, ensure_extension, pkg_version, print_table, start_server, verdict
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import sqlalchemy_vectorknobs as vk
from sqlalchemy_vectorknobs.embedding import listener

DIM = 384
WORDS = ["vector", "index", "query", "table", "column", "model", "session", "flush", "commit", "embedding", "cosine", "distance", "nearest", "neighbour", "search", "text", "title", "body", "migration", "database", "transaction", "batch", "row"]


class Base(DeclarativeBase):
    pass


EMBEDDER = vk.HashingEmbedder(DIM)


class Synced(Base):
    __tablename__ = "bench_synced"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    title: Mapped[str] = mapped_column(sa.String(200))
    body: Mapped[str | None] = mapped_column(sa.Text)
    embedding = vk.embedded_column(vk.Vector(DIM), source=("title", "body"), embedder=EMBEDDER, batch_size=256)


class Precomputed(Base):
    __tablename__ = "bench_precomputed"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    title: Mapped[str] = mapped_column(sa.String(200))
    body: Mapped[str | None] = mapped_column(sa.Text)
    embedding = mapped_column(vk.Vector(DIM))


class Plain(Base):
    __tablename__ = "bench_plain"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(sa.String(100))
    score: Mapped[float]


def corpus(n: int) -> list[tuple[str, str]]:
    rng = random.Random(0)
    return [
        (" ".join(rng.choices(WORDS, k=6)), " ".join(rng.choices(WORDS, k=40))) for _ in range(n)
    ]


def timed(fn: Callable[[], Any]) -> float:
    gc.collect()
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def reset(engine: sa.Engine, *tables: Any) -> None:
    Base.metadata.drop_all(engine, tables=list(tables))
    Base.metadata.create_all(engine, tables=list(tables))


def bench_flush(engine: sa.Engine, texts: list[tuple[str, str]], repeats: int) -> tuple[Stat, Stat, Stat]:
    """(synced, by hand, precomputed) ms per flush of ``texts`` as new rows.

    "by hand" is what a user writes without the plugin: call the same embedder on the texts, set
    the vectors, commit. "precomputed" leaves the embedder out of the timing altogether."""
    joined = [f"{t}\n{b}" for t, b in texts]
    vectors = EMBEDDER.embed(joined)

    def synced() -> None:
        with Session(engine) as s:
            s.add_all([Synced(id=i, title=t, body=b) for i, (t, b) in enumerate(texts)])
            s.commit()

    def by_hand() -> None:
        made = EMBEDDER.embed(joined)
        with Session(engine) as s:
            s.add_all([Precomputed(id=i, title=t, body=b, embedding=made[i]) for i, (t, b) in enumerate(texts)])
            s.commit()

    def precomputed() -> None:
        with Session(engine) as s:
            s.add_all([Precomputed(id=i, title=t, body=b, embedding=vectors[i]) for i, (t, b) in enumerate(texts)])
            s.commit()

    runs: dict[str, list[float]] = {"synced": [], "by_hand": [], "precomputed": []}
    paths = {
        "synced": (synced, Synced.__table__),
        "by_hand": (by_hand, Precomputed.__table__),
        "precomputed": (precomputed, Precomputed.__table__),
    }
    for round_, name in alternating(list(paths), repeats):
        fn, table = paths[name]
        reset(engine, table)
        took = timed(fn)
        if round_:
            runs[name].append(took * 1000)
    with Session(engine) as s:  # the synced rows really hold the vectors of their text
        got = s.scalar(sa.select(Synced.embedding).where(Synced.id == 7))
        assert got is not None and np.allclose(got, vectors[7], atol=1e-6)
    return Stat(tuple(runs["synced"])), Stat(tuple(runs["by_hand"])), Stat(tuple(runs["precomputed"]))


def bench_check(engine: sa.Engine, n: int, repeats: int, lookups: int) -> tuple[Stat, Stat]:
    keys = [random.Random(1).randrange(n) for _ in range(lookups)]

    def check() -> None:
        with Session(engine) as s:
            for k in keys:
                s.execute(vk.stale(Synced).where(Synced.id == k)).first()

    def by_key() -> None:
        with Session(engine) as s:
            for k in keys:
                s.execute(sa.select(Synced).where(Synced.id == k)).first()

    runs: dict[str, list[float]] = {"check": [], "select": []}
    paths = {"check": check, "select": by_key}
    for round_, name in alternating(list(paths), repeats):
        took = timed(paths[name])
        if round_:
            runs[name].append(took / lookups * 1e6)
    return Stat(tuple(runs["check"])), Stat(tuple(runs["select"]))


def bench_plain(plain: sa.Engine, attached: sa.Engine, n: int, repeats: int) -> dict[str, Stat]:
    def inserts(engine: sa.Engine) -> Callable[[], None]:
        def go() -> None:
            with Session(engine) as s:
                for i in range(n):
                    s.add(Plain(id=i, name=f"row {i}", score=i / 3))
                    s.flush()
                s.commit()

        return go

    def selects(engine: sa.Engine) -> Callable[[], None]:
        def go() -> None:
            with Session(engine) as s:
                for i in range(n):
                    s.execute(sa.select(Plain).where(Plain.id == i)).scalar_one()

        return go

    def noop(state: Any) -> None:
        return None

    runs: dict[str, list[float]] = {k: [] for k in ("insert off", "insert on", "select off", "select on", "select noop")}
    for round_, name in alternating(list(runs), repeats):
        on = name.endswith("on")
        engine = attached if on else plain
        if on:
            listener.install()
        else:
            listener.uninstall()
        # "noop": plain SQLAlchemy plus a do_orm_execute listener that does nothing, to show
        # what SQLAlchemy itself charges once any such listener exists.
        if name.endswith("noop"):
            sa.event.listen(Session, "do_orm_execute", noop)
        if name.startswith("insert"):
            reset(engine, Plain.__table__)
            took = timed(inserts(engine))
        else:
            took = timed(selects(engine))
        if sa.event.contains(Session, "do_orm_execute", noop):
            sa.event.remove(Session, "do_orm_execute", noop)
        if round_:
            runs[name].append(took / n * 1e6)
    listener.install()
    return {k: Stat(tuple(v)) for k, v in runs.items()}


def report(dialect: str, flush: tuple[Stat, Stat, Stat], check: tuple[Stat, Stat], plain: dict[str, Stat], n: int) -> list[str]:
    out = []
    ratio = flush[0].median / flush[1].median
    pre = flush[0].median / flush[2].median
    print_table(
        f"[{dialect}] 1. flush of {n:,} new rows (ms)",
        "ms",
        [
            ("embedded_column + HashingEmbedder", flush[0], f"{ratio:.2f}x"),
            ("by hand: HashingEmbedder.embed, then add_all", flush[1], "1.00x"),
            ("vectors computed beforehand, untimed (information)", flush[2], f"{flush[2].median / flush[1].median:.2f}x"),
        ],
        note="target <= 1.3x",
    )
    out.append(f"{dialect}: flush {ratio:.2f}x by hand ({verdict(ratio <= 1.3)}); {pre:.2f}x untimed precomputed vectors")
    ratio = check[0].median / check[1].median
    print_table(
        f"[{dialect}] 2. sync check for one primary key (µs per key)",
        "µs",
        [("vk.stale(Doc).where(id == k)", check[0], f"{ratio:.2f}x"), ("select(Doc).where(id == k)", check[1], "1.00x")],
        note="target <= 2x",
    )
    out.append(f"{dialect}: sync check {ratio:.2f}x a primary-key SELECT ({verdict(ratio <= 2)})")
    rows = []
    for what in ("insert", "select"):
        r = plain[f"{what} on"].median / plain[f"{what} off"].median
        rows += [(f"{what}, plugin attached", plain[f"{what} on"], f"{r:.3f}x"), (f"{what}, plain SQLAlchemy", plain[f"{what} off"], "1.000x")]
        out.append(f"{dialect}: model without vectors, {what} loop {100 * (r - 1):+.1f} % ({verdict(r <= 1.03)})")
    r = plain["select noop"].median / plain["select off"].median
    rows.append(("select, plain + no-op do_orm_execute", plain["select noop"], f"{r:.3f}x"))
    out.append(f"{dialect}:   of which SQLAlchemy's do_orm_execute dispatch alone: {100 * (r - 1):+.1f} %")
    print_table(f"[{dialect}] 3. model without vector columns (µs per row)", "µs", rows, note="target <= 3 % overhead")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="N = 2,000 and 3 repeats")
    ap.add_argument("--rows", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None)
    args = ap.parse_args()
    n = args.rows or (2_000 if args.quick else 10_000)
    repeats = args.repeats or (3 if args.quick else 7)
    print(f"embedding-sync benchmark: N={n:,}, {repeats} repeats, Python {platform.python_version()}, "
          f"SQLAlchemy {pkg_version('sqlalchemy')}, sqlite-vec {pkg_version('sqlite-vec')}, psycopg {pkg_version('psycopg')}")
    texts = corpus(n)
    summary: list[str] = []
    with ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="vkbenchemb"))
        server = start_server(stack)
        import pysqlite3.dbapi2 as pysqlite3  # the same DBAPI module vk.create_engine uses on SQLite

        targets = {
            "sqlite": (vk.create_engine(f"sqlite:///{tmp}/vk.db"), sa.create_engine(f"sqlite:///{tmp}/plain.db", module=pysqlite3)),
            "postgresql": (vk.create_engine(server.url), sa.create_engine(server.url)),
        }
        ensure_extension(targets["postgresql"][0])
        for dialect, (engine, plain_engine) in targets.items():
            flush = bench_flush(engine, texts, repeats)
            check = bench_check(engine, n, repeats, lookups=min(n, 2_000))
            plain = bench_plain(plain_engine, engine, min(n, 3_000), repeats)
            summary += report(dialect, flush, check, plain, n)
            engine.dispose()
            plain_engine.dispose()
    print("\nsummary")
    for line in summary:
        print(f"  {line}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
