"""The outbox: changes written in the data's own transaction, applied to mirrors by ``drain``.

With ``vk.attach(..., outbox=True)`` every change to a mirrored row also INSERTs one row per
mirror into ``vk_outbox``, on the session's connection and in the same transaction: a rollback
drops it with the data, a commit makes both durable together. ``drain`` then applies what the
outbox holds, and only acknowledges (deletes) a row once its mirror accepted the write::

    vk.create_outbox(engine)                      # once; idempotent (attach does it when it can)
    vk.attach(Session, mirrors=[faiss], outbox=True)
    ...
    report = vk.drain(engine, [faiss])            # from a worker, a cron job, or at start-up
    print(report)   # drained 120 outbox row(s): 120 applied, 0 failed, 0 dead, 0 remaining

How a drain works, per batch of ``batch_size`` rows in id order:

1. claim pending rows (not dead, ``available_at`` reached) with ``SELECT ... FOR UPDATE SKIP
   LOCKED`` on PostgreSQL, so concurrent drainers never take the same rows (SQLite renders no
   locking clause: run a single drainer there);
2. coalesce them by (mirror, primary key), keeping the highest outbox id as the version;
3. re-read the current committed rows and upsert those present (with a vector) or delete the
   others, passing ``versions=`` the outbox ids (plus :data:`VERSION_BASE`), so an older change
   that arrives late is ignored by the mirror and can never resurrect an old vector (the drain
   right after a commit skips the read for rows whose flushed values it was given: the state
   right after that outbox row's change, see ``known``);
4. delete the applied rows; a failed row gets ``attempts + 1``, ``last_error`` and an
   ``available_at`` pushed back exponentially (``backoff * 2 ** (attempts - 1)`` seconds), and
   after ``max_attempts`` it is marked ``dead``: kept in the table, listed in the report, never
   retried (fix the cause, then ``UPDATE vk_outbox SET dead = false, attempts = 0``).

A crash anywhere leaves the rows in place, so the next ``drain`` finishes the work: delivery is
at least once, and the versions make applying a change twice harmless.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from .. import dialects
from .._blocking import in_greenlet
from ..exc import InvalidMirrorError
from ._apply import (
    CHUNK,
    DEFAULT_TIMEOUT,
    check_mirrors,
    check_timeout,
    decode_pk,
    pk_kind,
    plan_changes,
    read_rows,
    write,
)

__all__ = [
    "OUTBOX_TABLE",
    "DeadLetter",
    "DrainReport",
    "adrain",
    "create_outbox",
    "drain",
    "outbox_metadata",
    "outbox_table",
    "version_of",
]

#: Name of the outbox table.
OUTBOX_TABLE = "vk_outbox"

#: The outbox's own MetaData (add the table to yours with ``outbox_table.to_metadata(Base.metadata)``
#: to manage it with Alembic).
outbox_metadata = sa.MetaData()

#: ``vk_outbox``: one row per change per mirror, deleted once applied.
outbox_table = sa.Table(
    OUTBOX_TABLE,
    outbox_metadata,
    # BIGINT on PostgreSQL; INTEGER on SQLite, where only INTEGER PRIMARY KEY autoincrements.
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("mirror", sa.String(255), nullable=False),
    sa.Column("table_name", sa.String(255), nullable=False),
    sa.Column("pk", sa.Text(), nullable=False),
    sa.Column("op", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False, default=0),
    sa.Column("available_at", sa.Double(), nullable=False, default=0.0),
    sa.Column("created_at", sa.Double(), nullable=False, default=time.time),
    sa.Column("last_error", sa.Text(), nullable=True),
    # 0 = pending, 1 = given up. (A SmallInteger, not Boolean: a Boolean column hooks a schema
    # event when the table is built, and importing the package must register nothing.)
    sa.Column("dead", sa.SmallInteger(), nullable=False, default=0),
    sa.Index("vk_outbox_pending", "dead", "mirror", "id"),
    # Ids are versions, so they must never be reused: SQLite's AUTOINCREMENT guarantees that
    # (a plain INTEGER PRIMARY KEY hands out max(id) + 1 again once applied rows are deleted).
    sqlite_autoincrement=True,
)

#: Added to an outbox id to make its version: outbox versions then sort above the clock versions
#: (nanoseconds since 1970, below 2**62 until the year 2116) of attachments without the outbox,
#: so a mirror can move to ``outbox=True`` without a rebuild.
VERSION_BASE = 2**62


def version_of(outbox_id: int) -> int:
    """The mirror version of a change recorded as outbox row ``outbox_id``."""
    return VERSION_BASE + outbox_id

_ERROR_CHARS = 2000


def create_outbox(bind: Any) -> None:
    """Create ``vk_outbox`` (and its index) if it does not exist; ``bind`` is an Engine or Connection.

    With an async engine, run it like ``metadata.create_all``::

        async with engine.begin() as conn:
            await conn.run_sync(vk.create_outbox)
    """
    if hasattr(bind, "sync_engine") or hasattr(bind, "sync_connection"):
        raise InvalidMirrorError(
            "vk.create_outbox needs a synchronous Engine or Connection; with an async engine use "
            "`async with engine.begin() as conn: await conn.run_sync(vk.create_outbox)`."
        )
    outbox_metadata.create_all(bind, checkfirst=True)


@dataclass(frozen=True)
class DeadLetter:
    """An outbox row given up on after ``max_attempts`` failures (it stays in the table)."""

    id: int
    mirror: str
    table_name: str
    pk: str
    op: str
    attempts: int
    last_error: str


@dataclass
class DrainReport:
    """What one :func:`drain` call did.

    ``applied``: outbox rows applied and deleted. ``failed``: rows whose mirror write failed in
    this call (kept for a retry, or dead). ``dead``: the rows this call marked dead.
    ``remaining``: rows of these mirrors still pending afterwards, including delayed retries (not
    counted when ``ids=`` restricts the drain). ``errors``: the last error of each failing mirror.
    """

    applied: int = 0
    failed: int = 0
    dead: list[DeadLetter] = field(default_factory=list)
    remaining: int = 0
    errors: dict[str, BaseException] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return self.failed == 0

    def __str__(self) -> str:
        total = self.applied + self.failed
        text = (
            f"drained {total} outbox row(s): {self.applied} applied, {self.failed} failed, "
            f"{len(self.dead)} dead, {self.remaining} remaining"
        )
        for name, err in self.errors.items():
            text += f"; {name}: {type(err).__name__}: {err}"
        return text


def _engine_of(target: Any, mirrors: Sequence[Any], owner: str) -> sa.Engine:
    """The synchronous Engine behind an engine, connection, session or session factory."""
    from sqlalchemy.orm import Session, scoped_session, sessionmaker

    bind: Any = target
    clause = mirrors[0].table if mirrors else None
    try:
        from sqlalchemy.ext.asyncio import AsyncSession, async_scoped_session, async_sessionmaker
    except ImportError:  # pragma: no cover - SQLAlchemy without its asyncio extension
        pass
    else:
        if isinstance(bind, async_scoped_session):
            bind = bind.session_factory
        if isinstance(bind, async_sessionmaker):
            bind = bind.kw.get("bind")
        elif isinstance(bind, AsyncSession):
            bind = bind.sync_session
    if isinstance(bind, scoped_session):
        bind = bind.session_factory
    if isinstance(bind, sessionmaker):
        bind = bind.kw.get("bind")
    elif isinstance(bind, Session):
        bind = bind.get_bind(clause=clause)
    if hasattr(bind, "sync_engine"):  # AsyncEngine / AsyncConnection
        bind = bind.sync_engine
    if isinstance(bind, sa.Connection):
        bind = bind.engine
    if not isinstance(bind, sa.Engine):
        raise InvalidMirrorError(
            f"{owner} needs an Engine, a Connection, or a session or session factory with a bind, got {type(target).__name__}."
        )
    if bind.dialect.is_async and not in_greenlet():
        raise InvalidMirrorError(f"{owner} got an async engine; use `await vk.adrain(engine, mirrors)` instead.")
    return bind


def _check_positive(owner: str, name: str, value: Any, *, low: float = 1, integer: bool = True) -> None:
    wrong_kind = isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int))
    if wrong_kind or value < low:
        what = "a whole number" if integer else "a number"
        raise InvalidMirrorError(f"{owner} {name}={value!r} is not valid; pass {what} of at least {low:g}.")


def drain(
    target: Any,
    mirrors: Iterable[Any],
    *,
    batch_size: int = 500,
    max_attempts: int = 5,
    backoff: float = 0.5,
    ids: Iterable[int] | None = None,
    now: float | None = None,
    known: Mapping[str, Mapping[Any, tuple[int, Any, Mapping[str, Any]]]] | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> DrainReport:
    """Apply the pending outbox rows of ``mirrors``; see the module docstring for the steps.

    ``target`` is an Engine (or a Connection, session or session factory whose engine is used;
    each batch runs in its own transaction on its own connection). ``ids`` restricts the drain to
    those outbox rows (what ``attach`` does after a commit). ``now`` is the time, in seconds
    since the epoch, that decides which delayed retries are due (default: the clock).
    ``known`` maps a mirror name to ``{pk: (outbox id, vector, metadata)}``: the values the row had
    right after that outbox row's change (what a session flushed); a key whose newest claimed row
    is that one is applied from them instead of being read again (``attach`` passes them).
    ``timeout`` (seconds, default 60; None waits forever) bounds each mirror write: a mirror that
    hangs counts as failed, so its rows are retried later and the claim on them is released::

        report = vk.drain(engine, [faiss_mirror], batch_size=1000)
        if report.dead:
            log.error("outbox rows given up on: %s", report.dead)
    """
    checked = check_mirrors(mirrors, "vk.drain")
    _check_positive("vk.drain", "batch_size", batch_size)
    _check_positive("vk.drain", "max_attempts", max_attempts)
    _check_positive("vk.drain", "backoff", backoff, low=0, integer=False)
    timeout = check_timeout("vk.drain", timeout)
    report = DrainReport()
    if not checked:
        return report
    engine = _engine_of(target, checked, "vk.drain")
    by_name = {m.name: m for m in checked}
    kinds = {m.name: pk_kind(m.pk_column) for m in checked}
    t = outbox_table
    base = sa.select(t).where(t.c.mirror.in_(list(by_name)), t.c.dead == 0)
    if ids is not None:
        wanted = sorted(set(ids))
        support = dialects.for_dialect(engine.dialect)
        batches: Iterable[Any] = (
            base.where(support.in_values(t.c.id, wanted[i : i + batch_size])) for i in range(0, len(wanted), batch_size)
        )
        for q in batches:
            with engine.begin() as conn:
                clock = time.time() if now is None else now
                rows = conn.execute(q.where(t.c.available_at <= clock).order_by(t.c.id).with_for_update(skip_locked=True)).all()
                if rows:
                    _process(conn, rows, by_name, kinds, clock, max_attempts, backoff, report, known, timeout)
        return report
    cursor = 0
    while True:
        with engine.begin() as conn:
            clock = time.time() if now is None else now
            q = base.where(t.c.available_at <= clock, t.c.id > cursor).order_by(t.c.id).limit(batch_size)
            rows = conn.execute(q.with_for_update(skip_locked=True)).all()
            if rows:
                _process(conn, rows, by_name, kinds, clock, max_attempts, backoff, report, timeout=timeout)
        if len(rows) < batch_size:
            break
        cursor = rows[-1].id  # each row is looked at once per call, even a retry that became due
    with engine.connect() as conn:
        report.remaining = conn.execute(
            sa.select(sa.func.count()).select_from(t).where(t.c.mirror.in_(list(by_name)), t.c.dead == 0)
        ).scalar_one()
    return report


async def adrain(target: Any, mirrors: Iterable[Any], **kw: Any) -> DrainReport:
    """:func:`drain` for an ``AsyncEngine`` (or async session factory); mirror calls run off the loop::

        report = await vk.adrain(async_engine, [mirror])
    """
    try:  # SQLAlchemy's own bridge from asyncio into its synchronous core (what AsyncSession uses)
        from sqlalchemy.util.concurrency import greenlet_spawn
    except ImportError:  # pragma: no cover
        raise InvalidMirrorError("vk.adrain needs SQLAlchemy's asyncio support; install sqlalchemy[asyncio].") from None

    def run() -> DrainReport:
        return drain(target, mirrors, **kw)

    result: DrainReport = await greenlet_spawn(run)
    return result


def _process(
    conn: sa.Connection,
    rows: Sequence[Any],
    by_name: dict[str, Any],
    kinds: dict[str, type],
    clock: float,
    max_attempts: int,
    backoff: float,
    report: DrainReport,
    known: Mapping[str, Mapping[Any, tuple[int, Any, Mapping[str, Any]]]] | None = None,
    timeout: float | None = None,
) -> None:
    """Apply one claimed batch and record the outcome of every row (in the claiming transaction).

    Each key is applied with the version of its newest claimed row: with the ``known`` values of
    that very row when there are some (the row's state right after that change), else as read
    again now (a state at least that new).
    """
    versions: dict[str, dict[Any, int]] = {}
    members: dict[str, list[Any]] = {}
    failed: list[tuple[Any, str]] = []
    for row in rows:
        try:
            pk = decode_pk(row.pk, kinds[row.mirror])
        except (ValueError, TypeError) as err:
            failed.append((row, f"{type(err).__name__}: outbox key {row.pk!r} is not a valid key: {err}"))
            continue
        per_pk = versions.setdefault(row.mirror, {})
        per_pk[pk] = max(per_pk.get(pk, 0), version_of(int(row.id)))
        members.setdefault(row.mirror, []).append(row)
    given: dict[str, dict[Any, tuple[Any, Mapping[str, Any]]]] = {}
    for name, per_pk in versions.items():
        offered = (known or {}).get(name) or {}
        given[name] = {
            pk: (vector, metadata)
            for pk, (outbox_id, vector, metadata) in offered.items()
            if per_pk.get(pk) == version_of(outbox_id)
        }
    # One read per table, shared by every mirror of that table.
    by_table: dict[Any, list[Any]] = {}
    for name in versions:
        by_table.setdefault(by_name[name].table, []).append(by_name[name])
    current: dict[Any, Any] = {}
    for table, table_mirrors in by_table.items():
        keys = {
            pk
            for m in table_mirrors
            for pk in versions[m.name]
            if pk not in given[m.name]
        }
        current[table] = read_rows(conn, table_mirrors, keys) if keys else {}
    applied: list[int] = []
    for name, per_pk in versions.items():
        mirror = by_name[name]
        try:
            write(mirror, plan_changes(mirror, per_pk, given[name], current[mirror.table]), timeout)
        except Exception as err:
            report.errors[name] = err
            failed.extend((row, f"{type(err).__name__}: {err}") for row in members[name])
        else:
            applied.extend(int(row.id) for row in members[name])
    t = outbox_table
    support = dialects.for_dialect(conn.dialect)
    for start in range(0, len(applied), CHUNK):
        conn.execute(t.delete().where(support.in_values(t.c.id, applied[start : start + CHUNK])))
    report.applied += len(applied)
    if not failed:
        return
    updates = []
    for row, error in failed:
        attempts = int(row.attempts) + 1
        dead = attempts >= max_attempts
        updates.append(
            {
                "b_id": row.id,
                "b_attempts": attempts,
                "b_available_at": clock + backoff * 2 ** (attempts - 1),
                "b_error": error[:_ERROR_CHARS],
                "b_dead": int(dead),
            }
        )
        if dead:
            report.dead.append(DeadLetter(int(row.id), row.mirror, row.table_name, row.pk, row.op, attempts, error))
    conn.execute(
        t.update()
        .where(t.c.id == sa.bindparam("b_id"))
        .values(
            attempts=sa.bindparam("b_attempts"),
            available_at=sa.bindparam("b_available_at"),
            last_error=sa.bindparam("b_error"),
            dead=sa.bindparam("b_dead"),
        ),
        updates,
    )
    report.failed += len(failed)
