"""Shared pieces of the reliability suite: the soak switch and the figures every test adds to.

``VECTORKNOBS_SOAK=1`` (or a number, the multiplier) multiplies hypothesis example counts, fault
repetitions and concurrency durations. Each test adds what it did to :data:`FIGURES` (inputs tried,
faults injected, concurrent operations run, rows lost, drift after drain); at the end of the run
the totals are printed in the terminal summary and written to ``reliability-figures.json`` in
pytest's base temp dir (or to the path in ``VECTORKNOBS_RELIABILITY_FIGURES``).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

_SOAK_ENV = os.environ.get("VECTORKNOBS_SOAK", "").strip()
#: 1 in normal runs; the multiplier (10 for ``VECTORKNOBS_SOAK=1``) in soak runs.
SOAK = 0 if _SOAK_ENV in ("", "0") else (10 if _SOAK_ENV == "1" else int(_SOAK_ENV))
SCALE = max(SOAK, 1)


def examples(n: int) -> Any:
    """Hypothesis settings for ``n`` examples (times the soak multiplier), no deadline."""
    return settings(
        max_examples=n * SCALE,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
        derandomize=not SOAK,  # normal runs are reproducible; soak runs explore new examples
    )


class Figures:
    """Thread-safe counters summed over the run (each key is one figure of docs/reliability.md)."""

    KEYS = ("inputs_tried", "faults_injected", "concurrent_operations", "rows_lost", "drift_after_drain")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.totals: dict[str, int] = dict.fromkeys(self.KEYS, 0)
        self.by_test: dict[str, dict[str, int]] = {}

    def add(self, key: str, n: int = 1, test: str = "") -> None:
        assert key in self.totals, key
        with self._lock:
            self.totals[key] += n
            if test:
                per = self.by_test.setdefault(test, {})
                per[key] = per.get(key, 0) + n


FIGURES = Figures()


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Any:
    """``figures(key, n)`` adds ``n`` to a figure, attributed to the running test."""
    name = request.node.nodeid.split("::", 1)[-1]

    def add(key: str, n: int = 1) -> None:
        FIGURES.add(key, n, name)

    return add


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if not FIGURES.by_test:
        return
    mode = f"soak x{SCALE}" if SOAK else "normal"
    out = {"mode": mode, "totals": FIGURES.totals, "by_test": FIGURES.by_test}
    target = os.environ.get("VECTORKNOBS_RELIABILITY_FIGURES")
    if target:
        path = Path(target)
    else:
        path = Path(str(config._tmp_path_factory.getbasetemp())) / "reliability-figures.json"  # type: ignore[attr-defined]
    path.write_text(json.dumps(out, indent=2, sort_keys=True))
    terminalreporter.section(f"reliability figures ({mode})")
    for key, value in FIGURES.totals.items():
        terminalreporter.write_line(f"{key:>24}: {value}")
    terminalreporter.write_line(f"{'written to':>24}: {path}")
