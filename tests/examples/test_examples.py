"""Every example script runs as a user would run it, and its output says what it should."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(name: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_quickstart_on_sqlite() -> None:
    out = run_example("quickstart.py")
    assert "Stored 320 products" in out
    rows = [line for line in out.splitlines() if line.split(" ")[0].endswith(("distance", "product"))]
    assert len(rows) == 4 and all(line.rstrip().endswith("yes") for line in rows), out
    assert all("kitchen,kitchen,kitchen,kitchen,kitchen" in line for line in rows), out


def test_quickstart_on_postgresql(pg_database: str) -> None:
    out = run_example("quickstart.py", pg_database)
    assert out.count(" yes") == 4, out


def test_indexed_search_on_sqlite() -> None:
    out = run_example("indexed_search.py")
    assert "bulk_load: 20000 rows" in out and "index used: ['article_embedding_idx']" in out, out
    assert out.rstrip().endswith("OK"), out


def test_indexed_search_on_postgresql(pg_database: str) -> None:
    out = run_example("indexed_search.py", pg_database)
    assert "on postgresql" in out and "index used: ['article_embedding_idx']" in out, out
    assert "of author 42 (exact over their 20 articles; vector index used: [])" in out, out
    assert out.rstrip().endswith("OK"), out


def test_alembic_example_on_sqlite() -> None:
    out = run_example("alembic/run.py")
    assert "index document_embedding_idx: vec0" in out and "No new upgrade operations detected." in out, out
    assert out.rstrip().endswith("downgraded to base"), out


def test_alembic_example_on_postgresql(pg_database: str) -> None:
    out = run_example("alembic/run.py", pg_database)
    assert "index document_embedding_idx: hnsw vector_cosine_ops {'m': '16', 'ef_construction': '128'}" in out, out
    assert "No new upgrade operations detected." in out and out.rstrip().endswith("downgraded to base"), out


def _check_mirrors_example(out: str) -> None:
    import re

    m = re.search(r"1\. inserted (\d+) rows: faiss holds (\d+), memory holds (\d+), outbox pending 0", out)
    assert m and m.group(1) == m.group(2) == m.group(3), out
    m = re.search(r"2\. revised 5, moved 3 to 'misc', deleted 4: table (\d+), faiss (\d+), memory (\d+)", out)
    assert m and m.group(1) == m.group(2) == m.group(3), out
    assert "edited a note: mirrors still hold" in out and "(unchanged: True)" in out, out
    assert re.search(r"3\. bulk update\(\) moved [1-9]\d* rows to 'serialisation'", out), out
    assert "same order as exact SQL search: yes" in out, out
    assert "0 missing, 1 extra, 2 mismatched" in out and "(repaired); now:" in out, out
    assert re.search(r"6\. worker mode: outbox pending ([1-9]\d*) after commit; drain: drained \1 outbox row\(s\): \1 applied, 0 failed, 0 dead, 0 remaining; pending now 0", out), out
    assert re.search(r"7\. reopened articles.vkfaiss: \d+ vectors; mirror 'faiss:\S+' in step: .*memory: mirror 'memory:\S+' in step", out), out
    assert out.rstrip().endswith("OK"), out


def test_mirrors_example_on_sqlite() -> None:
    out = run_example("mirrors.py")
    assert "database: sqlite" in out
    _check_mirrors_example(out)


def test_mirrors_example_on_postgresql(pg_database: str) -> None:
    out = run_example("mirrors.py", pg_database)
    assert "database: postgresql" in out
    _check_mirrors_example(out)


def example_scripts() -> list[str]:
    """Every runnable script under examples/: top-level ``*.py`` and each project's ``<dir>/run.py``."""
    scripts = [p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_")]
    scripts += [f"{p.parent.name}/run.py" for p in EXAMPLES.glob("*/run.py")]
    return sorted(scripts)


def test_every_example_is_run_and_checked_by_a_test() -> None:
    """A new example cannot be forgotten: some test in tests/examples runs it through run_example."""
    import re

    called = set()
    for test_file in Path(__file__).parent.glob("test_*.py"):
        called |= set(re.findall(r"run_example\(\s*\"([^\"]+)\"", test_file.read_text(encoding="utf-8")))
    scripts = example_scripts()
    assert len(scripts) >= 6, scripts
    missing = sorted(set(scripts) - called)
    assert not missing, f"examples without a test that runs them and checks their output: {missing}"
