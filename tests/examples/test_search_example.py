"""examples/hybrid_search.py runs and shows what the search features promise, on both dialects."""

from __future__ import annotations

import re

from .test_examples import run_example


def _check(out: str, dialect: str) -> None:
    loaded = re.search(r"1\. loaded (\d+) docstrings from (\d+) modules in [\d.]+ s on (\w+)", out)
    assert loaded and int(loaded.group(1)) >= 2000 and loaded.group(3) == dialect, out
    assert out.count("hybrid (RRF, 1 SQL statement):") == 3, out
    for question in ("copy a file with its permissions", "parse a JSON string", "wait for a thread lock"):
        assert f"'{question}'" in out
    ranks = re.findall(r"^\s+(\d)\. (\d\.\d{4})  d=(\d\.\d{3})  (\S+)$", out, re.MULTILINE)
    assert [int(r[0]) for r in ranks] == [1, 2, 3, 4, 5] * 3, out
    for block in range(3):
        scores = [float(r[1]) for r in ranks[5 * block : 5 * block + 5]]
        assert scores == sorted(scores, reverse=True), out
    assert "shutil.copystat" in out and "json.loads" in out and "threading.Condition" in out
    weighted = re.findall(r"^\s+\d\. (\d\.\d{3})  (\w+)\s+(\S+)$", out, re.MULTILINE)
    assert weighted and all(kind == "function" and float(score) >= 0.5 for score, kind, _ in weighted), out
    mmr = re.search(r"nearest 6 come from (\d) module\(s\), vk\.mmr\(lambda_=0\.3\) from (\d)", out)
    assert mmr and int(mmr.group(2)) >= int(mmr.group(1)), out
    assert "mmr(lambda_=1) equals nearest: yes" in out
    assert out.rstrip().endswith("OK"), out


def test_search_example_on_sqlite() -> None:
    out = run_example("hybrid_search.py")
    _check(out, "sqlite")
    assert "indexes in the hybrid plan: vector ['example_search_docs_vec'], full text example_search_docs_fts" in out


def test_search_example_on_postgresql(pg_database: str) -> None:
    _check(run_example("hybrid_search.py", pg_database), "postgresql")
