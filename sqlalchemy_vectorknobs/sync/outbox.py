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
   right after a commit, :func:`drain_committed`, claims only the rows its transaction wrote and
   skips the reads for the rows whose flushed values it was given);
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

#: ``drain``'s defaults, also used by the drain right after a commit.
MAX_ATTEMPTS = 5
BACKOFF = 0.5

#: Outbox rows per transaction of the drain right after a commit (each one is a commit, an fsync
#: on SQLite; and a mirror write that must finish within the timeout).
COMMITTED_BATCH = 5000


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
    max_attempts: int = MAX_ATTEMPTS,
    backoff: float = BACKOFF,
    ids: Iterable[int] | None = None,
    now: float | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> DrainReport:
    """Apply the pending outbox rows of ``mirrors``; see the module docstring for the steps.

    ``target`` is an Engine (or a Connection, session or session factory whose engine is used;
    each batch runs in its own transaction on its own connection). ``ids`` restricts the drain to
    those outbox rows. ``now`` is the time, in seconds
    since the epoch, that decides which delayed retries are due (default: the clock).
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
                    _process(conn, rows, by_name, kinds, clock, max_attempts, backoff, report, timeout)
        return report
    cursor = 0
    while True:
        with engine.begin() as conn:
            clock = time.time() if now is None else now
            q = base.where(t.c.available_at <= clock, t.c.id > cursor).order_by(t.c.id).limit(batch_size)
            rows = conn.execute(q.with_for_update(skip_locked=True)).all()
            if rows:
                _process(conn, rows, by_name, kinds, clock, max_attempts, backoff, report, timeout)
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


def drain_committed(
    engine: sa.Engine,
    mirrors: Sequence[Any],
    ids: Mapping[str, Sequence[int]],
    newest: Mapping[str, Mapping[Any, int]],
    known: Mapping[str, Mapping[Any, tuple[Any, Mapping[str, Any]]]],
    *,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> DrainReport:
    """The drain right after a commit, of the outbox rows that transaction wrote (``attach`` calls it).

    ``ids``: every outbox id the transaction wrote, per mirror name; ``newest``: ``{pk: outbox
    id}`` of the newest change of each key; ``known``: ``{pk: (vector, metadata)}``, the values
    right after that newest change, for the keys a session flushed whole. The claim selects the ids
    alone. When it holds the newest row of every key (the usual case) the changes are applied as
    given, without reading the outbox rows back, and the keys not ``known`` are read from the
    table. Otherwise (another drainer holds some rows, or the rows are not visible because the
    session joined a transaction it does not own) what was claimed is drained the ordinary way.
    """
    by_name = {m.name: m for m in mirrors}
    report = DrainReport()
    every = sorted(i for per_mirror in ids.values() for i in per_mirror)
    if len(every) <= COMMITTED_BATCH:
        _drain_committed(engine, by_name, every, ids, newest, known, timeout, report)
        return report
    for start in range(0, len(every), COMMITTED_BATCH):
        # A key's older rows may fall in an earlier batch than its newest: acknowledging them
        # there is safe, as the newest row (applied in its own batch, or kept) covers them.
        batch = every[start : start + COMMITTED_BATCH]
        members = set(batch)
        part_ids = {name: [i for i in per_mirror if i in members] for name, per_mirror in ids.items()}
        part_newest = {name: {pk: i for pk, i in per_pk.items() if i in members} for name, per_pk in newest.items()}
        _drain_committed(engine, by_name, batch, part_ids, part_newest, known, timeout, report)
    return report


def _drain_committed(
    engine: sa.Engine,
    by_name: Mapping[str, Any],
    every: Sequence[int],
    ids: Mapping[str, Sequence[int]],
    newest: Mapping[str, Mapping[Any, int]],
    known: Mapping[str, Mapping[Any, tuple[Any, Mapping[str, Any]]]],
    timeout: float | None,
    report: DrainReport,
) -> None:
    """One transaction of :func:`drain_committed`, for the outbox rows ``every``."""
    t = outbox_table
    support = dialects.for_dialect(engine.dialect)
    with engine.begin() as conn:
        clock = time.time()
        claim = sa.select(t.c.id).where(support.in_values(t.c.id, every), t.c.dead == 0, t.c.available_at <= clock)
        claimed = set(conn.execute(claim.with_for_update(skip_locked=True)).scalars().all())
        if not all(i in claimed for per_pk in newest.values() for i in per_pk.values()):
            if claimed:
                rows = conn.execute(sa.select(t).where(support.in_values(t.c.id, sorted(claimed))).order_by(t.c.id)).all()
                kinds = {name: pk_kind(m.pk_column) for name, m in by_name.items()}
                _process(conn, rows, by_name, kinds, clock, MAX_ATTEMPTS, BACKOFF, report, timeout)
            return
        versions = {name: {pk: version_of(i) for pk, i in per_pk.items()} for name, per_pk in newest.items()}
        errors = _write_versions(conn, by_name, versions, known, timeout)
        applied = [i for name, per_mirror in ids.items() if name not in errors for i in per_mirror if i in claimed]
        failed: list[tuple[Any, str]] = []
        if errors:
            report.errors.update(errors)
            lost = [i for name in errors for i in ids[name] if i in claimed]
            for row in conn.execute(sa.select(t).where(support.in_values(t.c.id, lost))):
                error = errors[row.mirror]
                failed.append((row, f"{type(error).__name__}: {error}"))
        _settle(conn, applied, failed, clock, MAX_ATTEMPTS, BACKOFF, report)


def _process(
    conn: sa.Connection,
    rows: Sequence[Any],
    by_name: Mapping[str, Any],
    kinds: dict[str, type],
    clock: float,
    max_attempts: int,
    backoff: float,
    report: DrainReport,
    timeout: float | None,
) -> None:
    """Apply one claimed batch and record the outcome of every row (in the claiming transaction).

    Each key is applied as read again now (a state at least as new as its newest claimed row)
    with the version of that row.
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
    errors = _write_versions(conn, by_name, versions, {}, timeout)
    report.errors.update(errors)
    applied: list[int] = []
    for name, group in members.items():
        error = errors.get(name)
        if error is None:
            applied.extend(int(row.id) for row in group)
        else:
            failed.extend((row, f"{type(error).__name__}: {error}") for row in group)
    _settle(conn, applied, failed, clock, max_attempts, backoff, report)


def _write_versions(
    conn: sa.Connection,
    by_name: Mapping[str, Any],
    versions: Mapping[str, Mapping[Any, int]],
    known: Mapping[str, Mapping[Any, tuple[Any, Mapping[str, Any]]]],
    timeout: float | None,
) -> dict[str, BaseException]:
    """Write each mirror's keys with their versions: the ``known`` values, else the rows read now
    (one read per table, shared by its mirrors); the error of each mirror that failed."""
    by_table: dict[Any, list[Any]] = {}
    for name in versions:
        by_table.setdefault(by_name[name].table, []).append(by_name[name])
    current: dict[Any, Any] = {}
    for table, table_mirrors in by_table.items():
        keys = {pk for m in table_mirrors for pk in versions[m.name] if pk not in known.get(m.name, {})}
        current[table] = read_rows(conn, table_mirrors, keys) if keys else {}
    errors: dict[str, BaseException] = {}
    for name, per_pk in versions.items():
        mirror = by_name[name]
        try:
            write(mirror, plan_changes(mirror, per_pk, known.get(name, {}), current[mirror.table]), timeout)
        except Exception as err:
            errors[name] = err
    return errors


def _settle(
    conn: sa.Connection,
    applied: Sequence[int],
    failed: Sequence[tuple[Any, str]],
    clock: float,
    max_attempts: int,
    backoff: float,
    report: DrainReport,
) -> None:
    """Delete the ``applied`` outbox rows; give each ``failed`` (row, error) one more attempt, later, or mark it dead."""
    t = outbox_table
    support = dialects.for_dialect(conn.dialect)
    if applied:  # integer ids: one parameter on both databases, however many
        conn.execute(t.delete().where(support.in_values(t.c.id, applied)))
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
