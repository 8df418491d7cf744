"""Searches on PostgreSQL hot standbys, writes on the primary: ``vk.routing_sessionmaker``.

pgvector's indexes are WAL-logged, so a hot standby answers ``vk.nearest``, ``text_search`` and
``hybrid_search`` like its primary. A session from :func:`routing_sessionmaker` sends every
``SELECT`` to a standby (round robin) and everything else -- flushes, ``insert()`` /
``update()`` / ``delete()``, ``text()`` statements, ``SELECT ... FOR UPDATE`` -- to the primary::

    Session = vk.routing_sessionmaker(primary_engine, [standby_a, standby_b])
    with Session() as session:
        hits = session.execute(vk.nearest(Doc.embedding, q, k=10)).all()   # a standby
        session.add(Doc(title="new"))
        session.flush()                                                    # the primary
        session.execute(vk.nearest(Doc.embedding, q, k=10)).all()          # the primary now
        session.commit()

Read your own writes: once the session has written in a transaction (a flush with changes, or a
write statement), its reads go to the primary until the transaction ends. A standby only shows
what it has replayed (typically milliseconds behind): a read in a *new* transaction right after a
commit may not see it yet.

A standby that cannot be reached is skipped for ``recheck_after`` seconds (a warning is logged)
and the next one is used; when none is up, ``standby_down="primary"`` (the default) reads from the
primary and ``standby_down="raise"`` raises :class:`~sqlalchemy_vectorknobs.exc.StandbyUnavailableError`.
Reachability is checked with a ``SELECT 1`` at most every ``recheck_after`` seconds per standby,
so a standby that fails between two checks fails the statement that used it.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from .exc import InvalidSearchSettingError, StandbyUnavailableError

__all__ = ["RoutingSession", "StandbyRouter", "routing_sessionmaker"]

log = logging.getLogger(__name__)

STANDBY_DOWN = ("primary", "raise")
_WROTE = "vk_wrote"


class StandbyRouter:
    """Which standby serves the next read: round robin over those that answer, shared by every
    session of a :func:`routing_sessionmaker`."""

    def __init__(self, primary: Engine, standbys: Sequence[Engine], *, standby_down: str = "primary", recheck_after: float = 5.0) -> None:
        if not isinstance(primary, Engine):
            raise InvalidSearchSettingError(
                f"routing_sessionmaker primary={primary!r} is not valid; pass a synchronous Engine (an AsyncEngine's .sync_engine)."
            )
        engines = list(standbys)
        bad = next((e for e in engines if not isinstance(e, Engine)), None)
        if bad is not None or not engines:
            raise InvalidSearchSettingError(
                f"routing_sessionmaker standbys={standbys!r} is not valid; pass a non-empty list of synchronous Engines."
            )
        if standby_down not in STANDBY_DOWN:
            raise InvalidSearchSettingError(f"routing_sessionmaker standby_down={standby_down!r} is not valid; use 'primary' or 'raise'.")
        if isinstance(recheck_after, bool) or not isinstance(recheck_after, (int, float)) or not recheck_after >= 0:
            raise InvalidSearchSettingError(
                f"routing_sessionmaker recheck_after={recheck_after!r} is not valid; it takes a number of seconds, 0 or more."
            )
        self.primary = primary
        self.standbys = engines
        self.standby_down = standby_down
        self.recheck_after = float(recheck_after)
        self._turn = itertools.cycle(range(len(engines)))
        self._checked: dict[int, float] = {}  # standby -> when it last answered
        self._down: dict[int, float] = {}  # standby -> when to try it again
        self._lock = threading.Lock()

    def standby(self) -> Engine:
        """The engine for the next read: a standby that answers, else (see ``standby_down``) the primary."""
        for _ in range(len(self.standbys)):
            with self._lock:
                n = next(self._turn)
            if self._up(n):
                return self.standbys[n]
        if self.standby_down == "raise":
            raise StandbyUnavailableError(
                f"No standby of {len(self.standbys)} answers ({', '.join(str(e.url) for e in self.standbys)}); "
                "retry later, or build the sessionmaker with standby_down='primary' to read from the primary meanwhile."
            )
        return self.primary

    def _up(self, n: int) -> bool:
        now = time.monotonic()
        with self._lock:
            if self._down.get(n, 0.0) > now:
                return False
            if now - self._checked.get(n, -1e18) < self.recheck_after:
                return True
        engine = self.standbys[n]
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except (sa.exc.DBAPIError, OSError) as err:
            with self._lock:
                self._down[n] = now + self.recheck_after
            log.warning("standby %s does not answer (%s); skipping it for %.0f s", engine.url, str(err).splitlines()[0], self.recheck_after)
            return False
        with self._lock:
            self._checked[n] = now
            self._down.pop(n, None)
        return True


class RoutingSession(Session):
    """A ``Session`` that reads from a :class:`StandbyRouter`'s standbys and writes to its primary
    (see the module docstring). Made by :func:`routing_sessionmaker`."""

    def __init__(self, *args: Any, router: StandbyRouter, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.router = router
        event.listen(self, "before_flush", _before_flush)
        event.listen(self, "after_transaction_end", _after_transaction_end)

    def get_bind(self, mapper: Any = None, clause: Any = None, **kw: Any) -> Any:
        if self.info.get(_WROTE) or not _read_only(clause):
            if clause is not None and not isinstance(clause, sa.Select):
                self.info[_WROTE] = True  # a write (or a statement that may write): stay on the primary
            return self.router.primary
        return self.router.standby()


def _read_only(clause: Any) -> bool:
    """A ``SELECT`` that locks nothing: what a standby may answer."""
    return isinstance(clause, (sa.Select, sa.CompoundSelect)) and getattr(clause, "_for_update_arg", None) is None


def _before_flush(session: Session, context: Any, instances: Any) -> None:
    if session.new or session.dirty or session.deleted:
        session.info[_WROTE] = True


def _after_transaction_end(session: Session, transaction: Any) -> None:
    if transaction.parent is None:  # the outermost transaction: its writes are committed or gone
        session.info.pop(_WROTE, None)


def routing_sessionmaker(
    primary: Engine,
    standbys: Sequence[Engine],
    *,
    standby_down: str = "primary",
    recheck_after: float = 5.0,
    **kw: Any,
) -> sessionmaker[RoutingSession]:
    """A ``sessionmaker`` of :class:`RoutingSession`: reads from ``standbys``, writes to ``primary``.

    ``standby_down`` says what a read does when no standby answers: ``"primary"`` reads from the
    primary, ``"raise"`` raises :class:`~sqlalchemy_vectorknobs.exc.StandbyUnavailableError`.
    Other keyword arguments go to ``sessionmaker`` (``expire_on_commit=False``, ...)::

        Session = vk.routing_sessionmaker(primary, [standby], standby_down="raise")
    """
    router = StandbyRouter(primary, standbys, standby_down=standby_down, recheck_after=recheck_after)
    return sessionmaker(class_=RoutingSession, router=router, **kw)
