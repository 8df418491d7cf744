"""Every example script runs as a user would run it, and its output says what it should."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
import pytest
import sqlalchemy as sa

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(name: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.fixture
def pg_database(fresh_pg_url: sa.URL) -> str:
    return fresh_pg_url.render_as_string(hide_password=False)


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
    assert out.rstrip().endswith("OK"), out


def test_alembic_example_on_sqlite() -> None:
    out = run_example("alembic/run.py")
    assert "index document_embedding_idx: vec0" in out and "No new upgrade operations detected." in out, out
    assert out.rstrip().endswith("downgraded to base"), out


def test_alembic_example_on_postgresql(pg_database: str) -> None:
    out = run_example("alembic/run.py", pg_database)
    assert "index document_embedding_idx: hnsw vector_cosine_ops {'m': '16', 'ef_construction': '128'}" in out, out
    assert "No new upgrade operations detected." in out and out.rstrip().endswith("downgraded to base"), out
