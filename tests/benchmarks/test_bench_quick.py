"""``vectorknobs bench --quick`` through the real console script: a smoke run of the whole suite.

Correctness only (never speed): every section ran and produced finite positive measurements,
recall values are in [0, 1], and the identity checks passed (exact search returns the raw
driver's ids on both dialects, HNSW returns raw psycopg's ids, filters hold). The suite runs
against a fresh database on the session's PostgreSQL server (``pg_url``).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.cli._cli import VECTORKNOBS

SECTIONS = (
    "codec",
    "orm_insert",
    "bulk_load",
    "exact",
    "binary",
    "hnsw",
    "filtered",
    "hybrid",
    "sync",
    "overhead",
    "mirrors",
    "scale",
    "replication",
)


@pytest.fixture
def bench_db(pg_url: sa.URL) -> Iterator[str]:
    """A database of its own on the session's server, dropped afterwards."""
    name = f"vkbench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(pg_url.set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield pg_url.set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_stat(stat: dict[str, Any], where: str, positive: bool) -> None:
    for key in ("median", "min", "max"):
        assert finite(stat[key]), (where, key, stat)
        if positive:
            assert stat[key] > 0, (where, key, stat)
    assert stat["min"] <= stat["median"] <= stat["max"], (where, stat)
    assert len(stat["samples"]) >= 1


def test_bench_quick_runs_every_section(bench_db: str, tmp_path: Path) -> None:
    out, report = tmp_path / "results.json", tmp_path / "docs" / "benchmarks.md"
    env = {**os.environ, "VECTORKNOBS_PG_URL": bench_db}
    proc = subprocess.run(
        [VECTORKNOBS, "bench", "--quick", "--json", str(out), "--report", str(report)],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    data = json.loads(out.read_text())
    assert data["mode"] == "quick" and data["failed"] == [] and data["not_run"] == []
    assert set(data["sections"]) == set(SECTIONS)
    for name, section in data["sections"].items():
        assert "error" not in section, (name, section.get("error"))
        assert section["results"], f"section {name} produced no measurement"
        for result in section["results"]:
            where = f"{name}: {result['name']}"
            check_stat(result["plugin_stat"], where, positive=not result["difference"])
            if result["baseline_stat"] is not None:
                check_stat(result["baseline_stat"], where, positive=True)
                assert finite(result["ratio"]), where
            if result["target"]:
                assert result["met"] in (True, False), where
        assert all(section["checks"].values()), (name, section["checks"])

    checks = {c: ok for s in data["sections"].values() for c, ok in s["checks"].items()}
    for required in (
        "exact PostgreSQL: vk ids identical to the raw driver's",
        "exact SQLite: vk ids identical to the raw driver's",
        "exact PostgreSQL: ids equal numpy's (up to float32 ties)",
        "exact SQLite: ids equal numpy's (up to float32 ties)",
        "hnsw: identical ids on every plugin path and raw psycopg (ef_search=100)",
        "hnsw: identical ids vk vs raw at every ef_search of the curve",
    ):
        assert checks.get(required) is True, required

    recalls: list[float] = []
    hnsw = data["sections"]["hnsw"]["extra"]
    for points in hnsw["curve"].values():
        assert [p["ef_search"] for p in points] == sorted(p["ef_search"] for p in points)
        recalls += [p["recall"] for p in points]
    recalls += list(hnsw["recall_ef100"].values())
    for dialect in data["sections"]["filtered"]["extra"].values():
        recalls += [v for k, v in dialect.items() if k.startswith("recall_")]
    recalls += list(data["sections"]["binary"]["extra"]["recall"].values())
    assert len(recalls) >= 15
    assert all(finite(r) and 0.0 <= r <= 1.0 for r in recalls), recalls
    # The exact (ef_search-independent) parts of recall: a real HNSW index finds most neighbours.
    assert hnsw["recall_ef100"]["orm"] >= 0.5

    scale = data["sections"]["scale"]["extra"]
    assert {p["precision"] for p in scale["points"]} == {"fp32", "halfvec", "bit"}
    per_vector = {p["precision"]: p["bytes_per_vector"] for p in scale["points"] if p["n"] >= 2000}
    assert per_vector["bit"] < per_vector["halfvec"] < per_vector["fp32"]  # 1 bit < 2 bytes < 4 bytes a dimension

    text = report.read_text()
    assert "## Summary: every target" in text and "## Machine" in text
    for section in data["sections"].values():
        assert f"### {section['title']}" in text
    if importlib.util.find_spec("matplotlib") is not None:
        assert (report.parent / "img" / "recall_qps.png").stat().st_size > 1000


def test_bench_without_a_checkout_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Installed from a wheel there is no benchmarks/run.py: exit 1 with one line, nothing run."""
    from sqlalchemy_vectorknobs import cli
    from sqlalchemy_vectorknobs.cli import bench

    assert bench.find_suite() == Path(__file__).resolve().parents[2] / "benchmarks" / "run.py"
    monkeypatch.setattr(bench, "find_suite", lambda: None)
    assert cli.main(["bench", "--quick"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "benchmarks/run.py was not found" in err[0], err
