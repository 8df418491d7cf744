"""examples/embedding_sync.py runs and reports what embedding sync promises, on both dialects."""

from __future__ import annotations

import re

import pytest

from .test_examples import run_example


def _check(out: str) -> None:
    assert re.search(r"1\. inserted (\d+) rows in one flush: (\d+) call\(s\), \1 text\(s\)", out), out
    assert "2. edited one title: 1 call(s), 1 text(s)" in out
    assert "edited a non-source column: 0 call(s), 0 text(s)" in out
    m = re.search(r"3\. bulk UPDATE of (\d+) rows: 1 call\(s\), (\d+) text\(s\); stale rows now: 0", out)
    assert m and m.group(1) == m.group(2) and int(m.group(1)) > 0, out
    assert "4. raw SQL edited 3 rows behind the ORM: stale rows now: 3" in out
    assert "backfill: 3 row(s) in 1 batch(es), 1 call(s), 3 text(s); stale rows now: 0" in out
    total = int(re.search(r"1\. inserted (\d+)", out).group(1))  # type: ignore[union-attr]
    assert f"5. embedder version changed: stale rows now: {total}" in out
    assert out.count("stale rows now: 0") == 3
    hits = re.findall(r"^\s+\d\.\d{3}\s+(\S+)$", out, re.MULTILINE)
    assert len(hits) == 3 and any(h.startswith("shutil.") for h in hits), out


def test_embedding_sync_example_on_sqlite() -> None:
    _check(run_example("embedding_sync.py"))


def test_embedding_sync_example_on_postgresql(pg_database: str) -> None:
    _check(run_example("embedding_sync.py", pg_database))


@pytest.mark.parametrize("flag", ["--minilm"])
def test_embedding_sync_example_with_the_real_model(flag: str) -> None:
    out = run_example("embedding_sync.py", flag)
    _check(out)
    assert "all-MiniLM-L6-v2" in out
