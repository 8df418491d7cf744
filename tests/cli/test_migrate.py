"""``vectorknobs migrate`` through the console script: SQLite -> PostgreSQL of 100,000 rows killed
halfway and resumed, PostgreSQL -> SQLite, incremental reruns, and one-line failures."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import sqlalchemy as sa

import sqlalchemy_vectorknobs as vk

from ._cli import VECTORKNOBS, one_line_error, scalar, vectorknobs

DIM = 16


def _items(md: sa.MetaData, half: bool = True) -> sa.Table:
    extra = [sa.Column("half", vk.HalfVector(4), nullable=True)] if half else []
    return sa.Table(
        "items",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("title", sa.Text),
        sa.Column("emb", vk.Vector(DIM), nullable=True),
        *extra,
    )


def _fill(url: str, start: int, n: int, seed: int = 0, half: bool = True) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    engine = vk.create_engine(url)
    table = _items(sa.MetaData(), half)
    table.metadata.create_all(engine)
    rows = [
        {"id": start + i, "title": f"item {start + i}", "emb": None if (start + i) % 97 == 0 else vectors[i]}
        for i in range(n)
    ]
    if half:
        for i, row in enumerate(rows):
            row["half"] = np.array([i % 7, 1, 2, 3], dtype=np.float16)
    vk.bulk_load(engine, table, rows)
    engine.dispose()
    return vectors


def _read(url: str, half: bool) -> tuple[np.ndarray, list[str | None], np.ndarray, np.ndarray | None]:
    """(ids, titles, emb matrix with NaN rows for NULL, half matrix) in id order."""
    engine = vk.create_engine(url)
    table = _items(sa.MetaData(), half)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(table).order_by(table.c.id)).all()
    engine.dispose()
    ids = np.array([r.id for r in rows])
    emb = np.stack([np.full(DIM, np.nan, np.float32) if r.emb is None else r.emb for r in rows])
    halves = np.stack([r.half for r in rows]).astype(np.float32) if half else None
    return ids, [r.title for r in rows], emb, halves


def _same(a: str, b: str, half: bool = True) -> None:
    ids_a, titles_a, emb_a, half_a = _read(a, half)
    ids_b, titles_b, emb_b, half_b = _read(b, half)
    assert np.array_equal(ids_a, ids_b)
    assert titles_a == titles_b
    assert np.array_equal(emb_a, emb_b, equal_nan=True)
    if half:
        assert half_a is not None and half_b is not None and np.array_equal(half_a, half_b)


def test_100k_rows_sqlite_to_postgresql_killed_halfway_then_resumed(tmp_path: Path, fresh_pg_url: sa.URL) -> None:
    source = f"sqlite:///{tmp_path}/source.db"
    target = fresh_pg_url.render_as_string(hide_password=False)
    _fill(source, 1, 100_000, half=False)
    batch = 500
    proc = subprocess.Popen(
        [VECTORKNOBS, "migrate", "--source", source, "--target", target, "--batch-size", str(batch), "--no-progress"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 120
    watcher = sa.create_engine(target, isolation_level="AUTOCOMMIT")
    try:
        with watcher.connect() as conn:
            while time.monotonic() < deadline and proc.poll() is None:
                if conn.exec_driver_sql("SELECT to_regclass('items') IS NOT NULL").scalar():
                    if conn.exec_driver_sql("SELECT count(*) FROM items").scalar_one() >= 20_000:
                        break
                time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        watcher.dispose()
    assert proc.returncode == -signal.SIGKILL, "the migration finished before it could be killed"
    held = scalar(target, "SELECT count(*) FROM items")
    assert 20_000 <= held < 100_000
    assert held % batch == 0, f"{held} rows: a batch was half applied"
    marker = scalar(target, "SELECT last_key FROM vk_migrate_progress WHERE table_name = 'items'")
    assert int(marker) == held == scalar(target, "SELECT max(id) FROM items")

    again = vectorknobs(tmp_path, "migrate", "--source", source, "--target", target, "--batch-size", "5000", "--no-progress")
    assert again.returncode == 0, again.stdout + again.stderr
    copied = int(re.search(r"items: (\d+) row\(s\) copied", again.stdout).group(1))  # type: ignore[union-attr]
    assert copied == 100_000 - held, again.stdout  # nothing finished before the kill was copied again
    assert f"resumed after key {held}" in again.stdout
    assert "rows 100000 source / 100000 target" in again.stdout and " equal" in again.stdout
    assert scalar(target, "SELECT count(*) FROM items") == 100_000
    assert scalar(target, "SELECT count(DISTINCT id) FROM items") == 100_000
    _same(source, target, half=False)
    # the target's key sequence continues after the copied keys: an insert without an id works
    writer = sa.create_engine(target)
    try:
        with writer.begin() as conn:
            new_id = conn.exec_driver_sql("INSERT INTO items (title) VALUES ('after') RETURNING id").scalar_one()
        assert new_id == 100_001
    finally:
        writer.dispose()


def test_postgresql_to_sqlite_then_incremental_rerun(tmp_path: Path, fresh_pg_url: sa.URL) -> None:
    source = fresh_pg_url.render_as_string(hide_password=False)
    target = f"sqlite:///{tmp_path}/target.db"
    _fill(source, 1, 1200, seed=1)
    first = vectorknobs(tmp_path, "migrate", "-s", source, "-t", target, "--table", "items", "--batch-size", "500")
    assert first.returncode == 0, first.stderr
    assert "items: 1200 row(s) copied in 3 batch(es), table created" in first.stdout
    _same(source, target)
    _fill(source, 1201, 300, seed=2)  # rows added since: a rerun copies just those
    second = vectorknobs(tmp_path, "migrate", "-s", source, "-t", target, "--no-progress")
    assert second.returncode == 0, second.stderr
    assert "items: 300 row(s) copied in 1 batch(es) (resumed after key 1200)" in second.stdout
    _same(source, target)


def test_verification_failure_exits_3(tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path}/s.db"
    target = f"sqlite:///{tmp_path}/t.db"
    _fill(source, 1, 50)
    assert vectorknobs(tmp_path, "migrate", "-s", source, "-t", target, "--no-progress").returncode == 0
    engine = vk.create_engine(target)
    with engine.begin() as conn:  # the copy drifts: one vector changed behind the migration's back
        table = _items(sa.MetaData())
        conn.execute(table.update().where(table.c.id == 7).values(emb=np.ones(DIM, np.float32)))
    engine.dispose()
    proc = vectorknobs(tmp_path, "migrate", "-s", source, "-t", target, "--no-progress")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "DIFFERENT" in proc.stdout and "verification FAILED" in proc.stdout
    report = vk.migrate(source, target, progress=False)
    assert not report.ok and report.tables[0].source_rows == report.tables[0].target_rows == 50


def test_failures_are_one_line(tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path}/s.db"
    _fill(source, 1, 10)
    target = f"sqlite:///{tmp_path}/t.db"
    engine = vk.create_engine(target)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE items (id INTEGER PRIMARY KEY, title TEXT, emb VECTOR(16), half HALFVEC(4))")
        conn.exec_driver_sql("INSERT INTO items (id, title) VALUES (1, 'mine')")
        conn.exec_driver_sql("CREATE TABLE nokey (a INTEGER, e VECTOR(2))")
    engine.dispose()
    one_line_error(vectorknobs(tmp_path, "migrate", "-s", "nonsense", "-t", target), "bad source URL")
    one_line_error(vectorknobs(tmp_path, "migrate", "-s", source, "-t", target, "--table", "ghost"), "Table 'ghost' does not exist in the source")
    one_line_error(vectorknobs(tmp_path, "migrate", "-s", source, "-t", target), "already holds 1 row(s)")
    one_line_error(vectorknobs(tmp_path, "migrate", "-s", target, "-t", source, "--table", "nokey"), "has 0 primary key columns")
    one_line_error(vectorknobs(tmp_path, "migrate", "-s", source, "-t", source), "same database")
    one_line_error(
        vectorknobs(tmp_path, "migrate", "-s", source, "-t", "postgresql+psycopg://nobody@/x?host=/nonexistent"),
        "cannot connect to",
    )
    assert scalar(target, "SELECT count(*) FROM items") == 1  # nothing was written by the refused runs
