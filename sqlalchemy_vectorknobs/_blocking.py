"""Running blocking work (a model, a mirror's I/O) from code that SQLAlchemy may call under asyncio.

An ``AsyncSession`` runs flushes and session events inside a greenlet; calling a slow function
there would stall the event loop. :func:`run_blocking` detects that case and awaits the function
in a worker thread instead (or awaits ``awaitable_factory()`` when one is given); in ordinary
synchronous code it simply calls the function.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

try:  # SQLAlchemy 2.1
    from sqlalchemy.util.concurrency import await_ as _await
except ImportError:  # pragma: no cover - SQLAlchemy 2.0
    from sqlalchemy.util.concurrency import await_only as _await
try:
    from sqlalchemy.util.concurrency import in_greenlet as _sa_in_greenlet
except ImportError:  # pragma: no cover
    _sa_in_greenlet = None  # type: ignore[assignment]


def in_greenlet() -> bool:
    """True inside SQLAlchemy's asyncio greenlet (an ``AsyncSession``'s flush, ``run_sync``)."""
    if _sa_in_greenlet is None:
        return False
    try:
        return bool(_sa_in_greenlet())
    except ImportError:
        # SQLAlchemy 2.1 raises this when greenlet is not installed (no asyncio extra): then no
        # async session can be running, so this is ordinary synchronous code.
        return False


__all__ = ["in_greenlet", "run_blocking"]

T = TypeVar("T")


def run_blocking(
    fn: Callable[..., T], *args: Any, awaitable_factory: Callable[[], Awaitable[T]] | None = None
) -> T:
    """``fn(*args)``, or under an async session the same without blocking the event loop."""
    if in_greenlet():
        if awaitable_factory is not None:
            return _await(awaitable_factory())
        return _await(asyncio.to_thread(fn, *args))
    return fn(*args)
