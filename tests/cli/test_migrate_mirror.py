"""``vectorknobs migrate --target-mirror`` / ``vk.migrate(target_mirror=...)``: SQLite -> Faiss file of
20,000 rows killed with SIGKILL and resumed, PostgreSQL -> Chroma, verification failures (exit 3),
one-line refusals that write nothing, and the resume marker written only after a durable batch."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

import sqlalchemy_vectorknobs as vk

from ._cli import VECTORKNOBS, one_line_error, vectorknobs

DIM = 32
CATEGORIES = ("news", "blog", "paper")


def _docs(md: sa.MetaData) -> sa.Table:
    return sa.Table(
        "docs",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("category", sa.Text),
        sa.Column("emb", vk.Vector(DIM), nullable=True),
    )


def _fill(url: str, n: int, seed: int = 0) -> dict[int, tuple[np.ndarray, str]]:
    """``n`` rows (every 997th without a vector); returns {id: (vector, category)} of the rows with one."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    rows = [
        {"id": i, "category": CATEGORIES[i % 3], "emb": None if i % 997 == 0 else vectors[i - 1]}
        for i in range(1, n + 1)
    ]
    engine = vk.create_engine(url)
    table = _docs(sa.MetaData())
    table.metadata.create_all(engine)
    vk.bulk_load(engine, table, rows)
    engine.dispose()
    return {r["id"]: (r["emb"], r["category"]) for r in rows if r["emb"] is not None}


def _cosine_knn(ids: np.ndarray, matrix: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    dist = 1.0 - unit @ (query / np.linalg.norm(query))
    return [int(ids[i]) for i in np.argsort(dist, kind="stable")[:k]]


def _copied(stdout: str) -> int:
    found = re.search(r"docs -> mirror '[^']+': (\d+) row\(s\) copied", stdout)
    assert found, stdout
    return int(found.group(1))


def _files(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


def test_20k_rows_sqlite_to_faiss_killed_then_resumed(tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path}/source.db"
    expected = _fill(source, 20_000)
    index = tmp_path / "docs.vkfaiss"
    state = tmp_path / "docs.vkfaiss.vkmigrate.json"
    target = f"faiss:///{index.name}?metadata_columns=category"
    args = ["migrate", "--source", source, "--target-mirror", target, "--table", "docs", "--vector-field", "emb", "--no-progress"]
    batch = 50  # small batches (each one fsyncs the journal and the marker) so the kill lands mid-run
    proc = subprocess.Popen([VECTORKNOBS, *args, "--batch-size", str(batch)], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if state.exists() and next(iter(json.loads(state.read_text())["runs"].values()))["copied"] >= 1_000:
                break
            time.sleep(0.002)
    finally:
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, f"the migration finished before it could be killed: {out} {err}"
    (marker,) = json.loads(state.read_text())["runs"].values()
    done = marker["copied"]
    assert 1_000 <= done < 20_000 and done % batch == 0 and int(marker["last_key"]) == done
    killed = vk.FaissMirror(_docs(sa.MetaData()).c.emb, path=index, metadata_columns=["category"])
    # every batch the marker covers is durable in the mirror (the batch after it may be too)
    assert {pk for pk in expected if pk <= done} <= killed.ids()
    assert killed.count() <= len([pk for pk in expected if pk <= done + batch])
    killed.close()

    again = vectorknobs(tmp_path, *args, "--batch-size", "5000")
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"(resumed after key {done})" in again.stdout
    assert _copied(again.stdout) == 20_000 - done  # continued after the marker, not from zero
    assert f"vectors {len(expected)} source / {len(expected)} mirror" in again.stdout
    assert "0 missing, 0 extra, 0 mismatched (in step)" in again.stdout

    # The mirror, loaded fresh from disk, against numpy: ids, vectors, metadata, nearest neighbours.
    mirror = vk.FaissMirror(_docs(sa.MetaData()).c.emb, path=index, metadata_columns=["category"])
    try:
        assert mirror.ids() == set(expected) and mirror.count() == len(expected)
        ids = np.array(sorted(expected))
        matrix = np.stack([expected[int(pk)][0] for pk in ids])
        stored = mirror.get(ids.tolist())
        assert np.allclose(np.stack([stored[int(pk)] for pk in ids]), matrix, atol=1e-5)
        assert all(mirror.metadata(int(pk)) == {"category": expected[int(pk)][1]} for pk in ids[::97])
        rng = np.random.default_rng(7)
        for query in rng.standard_normal((5, DIM)).astype(np.float32):
            assert [pk for pk, _ in mirror.search(query, k=10)] == _cosine_knn(ids, matrix, query, 10)
        news = ids[np.array([expected[int(pk)][1] == "news" for pk in ids])]
        query = rng.standard_normal(DIM).astype(np.float32)
        got = [pk for pk, _ in mirror.search(query, k=5, where={"category": "news"})]
        assert got == _cosine_knn(news, np.stack([expected[int(pk)][0] for pk in news]), query, 5)
    finally:
        mirror.close()


def test_postgresql_to_chroma_from_a_config_file(tmp_path: Path, fresh_pg_url: sa.URL) -> None:
    source = fresh_pg_url.render_as_string(hide_password=False)
    expected = _fill(source, 3_000, seed=3)
    (tmp_path / "mirrors.toml").write_text(
        '[[mirrors]]\nbackend = "chroma"\npath = "chroma-data"\ncollection = "docs"\nmetadata_columns = ["category"]\n'
    )
    proc = vectorknobs(tmp_path, "migrate", "-s", source, "--target-mirror", "mirrors.toml", "--table", "docs",
                       "--batch-size", "1000")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "docs -> mirror 'chroma:docs.emb': 3000 row(s) copied in 3 batch(es)" in proc.stdout
    assert f"vectors {len(expected)} source / {len(expected)} mirror; 3000 row(s) checked: 0 missing, 0 extra, 0 mismatched" in proc.stdout
    assert "migrate docs -> chroma:docs.emb" in proc.stderr  # the progress bar
    assert json.loads((tmp_path / "chroma-data" / "vk_migrate.json").read_text())["format"] == 1

    mirror = vk.ChromaMirror(_docs(sa.MetaData()).c.emb, path=tmp_path / "chroma-data", collection="docs",
                             metadata_columns=["category"])
    try:
        assert mirror.ids() == set(expected)
        some = sorted(expected)[::50]
        stored = mirror.get(some)
        assert all(np.allclose(stored[pk], expected[pk][0], atol=1e-5) for pk in some)
        for pk in some[:5]:  # a stored vector's nearest neighbour is its own row
            assert mirror.search(expected[pk][0], k=1)[0][0] == pk
        hits = mirror.search(expected[some[0]][0], k=20, where={"category": "blog"})
        assert hits and all(expected[pk][1] == "blog" for pk, _ in hits)
    finally:
        mirror.close()
    rerun = vectorknobs(tmp_path, "migrate", "-s", source, "--target-mirror", "mirrors.toml", "--table", "docs", "--no-progress")
    assert rerun.returncode == 0 and _copied(rerun.stdout) == 0 and "(resumed after key 3000)" in rerun.stdout, rerun.stdout


def test_a_mirror_that_does_not_match_exits_3(tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path}/s.db"
    expected = _fill(source, 600, seed=5)
    args = ["migrate", "-s", source, "--target-mirror", "faiss:///d.vkfaiss", "--table", "docs", "--no-progress"]
    assert vectorknobs(tmp_path, *args).returncode == 0
    table = _docs(sa.MetaData())
    with vk.FaissMirror(table.c.emb, path=tmp_path / "d.vkfaiss") as mirror:  # drift behind the migration's back
        mirror.delete([1, 2, 3])
        mirror.upsert([7], [np.ones(DIM, np.float32)])
    proc = vectorknobs(tmp_path, *args)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert _copied(proc.stdout) == 0  # the marker says everything was copied; the verification finds the drift
    assert "3 missing, 0 extra, 1 mismatched (DIFFERENT)" in proc.stdout and "verification FAILED" in proc.stdout
    assert f"vectors {len(expected)} source / {len(expected) - 3} mirror" in proc.stdout

    fixed = vectorknobs(tmp_path, *args, "--no-resume")  # copies every row again: upserts replace by key
    assert fixed.returncode == 0 and _copied(fixed.stdout) == 600, fixed.stdout + fixed.stderr

    engine = vk.create_engine(source)
    with engine.begin() as conn:  # rows deleted at the source stay in the mirror: extra ids
        conn.execute(table.delete().where(table.c.id.in_([10, 11])))
    engine.dispose()
    proc = vectorknobs(tmp_path, *args)
    assert proc.returncode == 3 and "0 missing, 2 extra, 0 mismatched (DIFFERENT)" in proc.stdout, proc.stdout
    report = vk.migrate(source, target_mirror=vk.FaissMirror(table.c.emb, path=tmp_path / "d.vkfaiss"), progress=False)
    assert not report.ok and report.tables[0].drift.extra == [10, 11]


def test_bad_inputs_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path}/s.db"
    _fill(source, 20)
    engine = vk.create_engine(source)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE two (id INTEGER PRIMARY KEY, a VECTOR(4), b VECTOR(4))")
        conn.exec_driver_sql("CREATE TABLE named (name TEXT PRIMARY KEY, e VECTOR(4))")
    engine.dispose()
    before = _files(tmp_path)
    base = ["migrate", "-s", source]
    both = vectorknobs(tmp_path, *base, "-t", f"sqlite:///{tmp_path}/t.db", "--target-mirror", "faiss:///m.vkfaiss")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    neither = vectorknobs(tmp_path, *base, "--table", "docs")
    assert neither.returncode == 2 and "one of the arguments --target/-t --target-mirror is required" in neither.stderr
    mirror = ["--target-mirror", "faiss:///m.vkfaiss"]
    one_line_error(vectorknobs(tmp_path, *base, *mirror, "--table", "ghost"), "Table 'ghost' does not exist")
    one_line_error(vectorknobs(tmp_path, *base, "--target-mirror", "qdrnt:///m", "--table", "docs"), "Mirror backend 'qdrnt' is not known")
    one_line_error(vectorknobs(tmp_path, *base, "--target-mirror", "faiss://host/m", "--table", "docs"), "takes a local path")
    one_line_error(vectorknobs(tmp_path, *base, "--target-mirror", "nothere.toml", "--table", "docs"), "cannot read mirror config")
    one_line_error(vectorknobs(tmp_path, *base, *mirror, "--table", "two"), "has vector columns a, b; name the one")
    one_line_error(vectorknobs(tmp_path, *base, *mirror, "--table", "docs", "--vector-field", "category"), "needs a dense Vector(dim)")
    one_line_error(vectorknobs(tmp_path, *base, *mirror, "--table", "named", "--vector-field", "e"), "supports primary keys of type int")
    one_line_error(vectorknobs(tmp_path, *base, *mirror, "--table", "docs", "--table", "two"), "copies one table")
    one_line_error(vectorknobs(tmp_path, *base, *mirror), "names no column")
    one_line_error(vectorknobs(tmp_path, *base, "-t", f"sqlite:///{tmp_path}/t.db", "--state", "x.json"), "--state goes with --target-mirror")
    one_line_error(vectorknobs(tmp_path, "migrate", "-s", "nonsense", *mirror, "--table", "docs"), "bad source URL")
    # Without the faiss extra: one line naming the package, nothing written.
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['faiss'] = None\n")
    env = {"PYTHONPATH": str(blocker), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([VECTORKNOBS, *base, *mirror, "--table", "docs"], cwd=tmp_path, capture_output=True, text=True,
                          env=env, timeout=120)
    one_line_error(proc, "requires the 'faiss-cpu' package")
    assert _files(tmp_path) == before | {"blocker"}


def _failing(base: type[Any]) -> type[Any]:
    """``base`` whose ``fail_at``-th upsert raises, like a backend going away mid-run."""

    class Failing(base):  # type: ignore[misc,valid-type]
        def __init__(self, column: Any, fail_at: int, **options: Any) -> None:
            super().__init__(column, **options)
            self.calls = 0
            self.fail_at = fail_at

        def upsert(self, *args: Any, **kwargs: Any) -> int:
            self.calls += 1
            if self.calls == self.fail_at:
                raise vk.MirrorError("backend went away")
            return int(super().upsert(*args, **kwargs))

    return Failing


def test_marker_is_written_only_after_a_batch_reached_the_mirror(tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path}/s.db"
    expected = _fill(source, 1_000, seed=9)
    column = _docs(sa.MetaData()).c.emb
    state = tmp_path / "state.json"
    flaky = _failing(vk.MemoryMirror)(column, fail_at=3)
    with pytest.raises(vk.MirrorError, match="went away"):
        vk.migrate(source, target_mirror=flaky, state=state, batch_size=200, progress=False)
    (marker,) = json.loads(state.read_text())["runs"].values()
    assert marker["copied"] == 400 and marker["last_key"] == "400"  # batch 3 failed: no marker for it
    report = vk.migrate(source, target_mirror=flaky, state=state, batch_size=200, progress=False)
    entry = report.tables[0]
    assert report.ok and entry.resumed_after == 400 and entry.copied == 600 and entry.batches == 3
    reference = vk.MemoryMirror(column)
    reference.upsert(sorted(expected), [expected[pk][0] for pk in sorted(expected)])
    got, want = flaky.get(sorted(expected)), reference.get(sorted(expected))
    assert flaky.ids() == reference.ids() and all(np.array_equal(got[pk], want[pk]) for pk in want)
    # An empty mirror with a marker (a new mirror, same state file) is filled from the first row.
    fresh = vk.MemoryMirror(column)
    again = vk.migrate(source, target_mirror=fresh, state=state, batch_size=500, progress=False)
    assert again.ok and again.tables[0].resumed_after is None and again.copied == 1_000 and fresh.ids() == set(expected)


def test_faiss_without_autosave_is_saved_after_each_batch(tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path}/s.db"
    expected = _fill(source, 1_000, seed=11)
    column = _docs(sa.MetaData()).c.emb
    index = tmp_path / "d.vkfaiss"
    flaky = _failing(vk.FaissMirror)(column, fail_at=4, path=index, autosave=False)
    with pytest.raises(vk.MirrorError, match="went away"):
        vk.migrate(source, target_mirror=flaky, batch_size=300, progress=False)
    # Read from disk by a second mirror before the failed one is closed (closing would save too).
    with vk.FaissMirror(column, path=index) as on_disk:
        assert on_disk.ids() == {pk for pk in expected if pk <= 900}
    (marker,) = json.loads((tmp_path / "d.vkfaiss.vkmigrate.json").read_text())["runs"].values()
    assert marker["copied"] == 900
    flaky.close()
    with vk.FaissMirror(column, path=index, autosave=False) as mirror:
        report = vk.migrate(source, target_mirror=mirror, batch_size=300, progress=False)
        assert report.ok and report.tables[0].resumed_after == 900 and report.copied == 100
    with vk.FaissMirror(column, path=index) as on_disk:
        assert on_disk.ids() == set(expected)


def test_python_api_refusals(tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path}/s.db"
    _fill(source, 5)
    mirror = vk.MemoryMirror(_docs(sa.MetaData()).c.emb)
    with pytest.raises(vk.MigrationError, match="exactly one of target= .* or target_mirror="):
        vk.migrate(source, f"sqlite:///{tmp_path}/t.db", target_mirror=mirror)
    with pytest.raises(vk.MigrationError, match="exactly one of target="):
        vk.migrate(source)
    with pytest.raises(vk.MigrationError, match="mirrors table 'docs'"):
        vk.migrate(source, tables=["other"], target_mirror=mirror)
    other = vk.MemoryMirror(sa.Table("elsewhere", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True),
                                     sa.Column("v", vk.Vector(3))).c.v)
    with pytest.raises(vk.MigrationError, match="Table 'elsewhere' of mirror .* does not exist in the source"):
        vk.migrate(source, target_mirror=other)
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(vk.MigrationError, match="is not a vk.migrate state file"):
        vk.migrate(source, target_mirror=mirror, state=tmp_path / "bad.json")
    assert mirror.count() == 0
