"""``vk.attach``: keep mirrors in step with the rows sessions commit (collect → commit → apply).

::

    maker = sessionmaker(engine)
    attachment = vk.attach(maker, mirrors=[vk.FaissMirror(Doc.embedding, path="doc.faiss")])
    with maker() as session:
        session.add(Doc(id=1, embedding=[...]))
        session.commit()          # the row is committed, then written to the Faiss index
    attachment.detach()

* **Collect.** During flush (``after_flush``) the primary keys of inserted, deleted and updated
  rows of mirrored tables are recorded, never ORM objects; an update counts only if it changed the
  vector or a metadata column (attribute history). ORM bulk statements are seen in
  ``do_orm_execute``: ``update()``/``delete()`` with criteria report the keys they changed through
  ``RETURNING`` (on databases without it, or when the statement returns columns of its own, the
  keys are selected in the same transaction just before it runs), bulk UPDATE by primary key and
  bulk INSERT take them from the parameters (or from ``RETURNING`` when an INSERT does not give them).
* **Per transaction.** Keys are kept per ``SessionTransaction``: a savepoint that rolls back
  discards its keys, a released savepoint hands them to the enclosing transaction, and a rollback
  of the whole transaction discards everything. Nothing touches a mirror before the commit.
* **Known values.** A row the flush INSERTed, or UPDATEd in every watched column, is recorded
  with its flushed vector and metadata when those are exactly what the database stores (a
  float32 ``Vector``; string, integer and boolean metadata columns holding values of that type):
  applying it needs no read. Anything else (an UPDATE of some columns only, whose other values
  may be stale; bulk statements; SQL expressions; server defaults; deletes) is read back.
* **Apply.** When the outermost transaction has committed (and the session let go of its
  connection), the rows without known values are read again on a fresh connection from the
  session's bind, so the mirror receives the committed values: rows present with a vector are
  upserted, the others deleted. Under an ``AsyncSession`` mirror calls run in a worker thread,
  off the event loop.
* **Failures.** A mirror that fails never rolls back committed data. All mirrors are tried, then
  ``on_error="raise"`` raises :class:`MirrorSyncError` from ``commit()`` (the data *is*
  committed) and ``on_error="log"`` logs it.
* **Ordering.** Without the outbox each change carries a version taken from the clock when it is
  collected (nanoseconds, increasing within a process), right after its statements ran and while
  the transaction still holds the rows' locks: a later transaction changing the same row can only
  do so after this one commits, so it gets a larger version, and a slow older apply cannot
  overwrite a newer one in the same process or between processes on one machine's clock. The
  data applied is at least as new as its version (the flushed values, or a read after the
  commit). Only ``outbox=True`` guarantees ordering across machines and survives crashes
  (:mod:`.outbox`).

Not captured: SQL the session does not run as ORM statements (``text()``, Core statements on a
Connection, other programs), database-side cascades and triggers, the legacy
``bulk_save_objects``/``bulk_*_mappings`` methods, and bulk UPDATEs that change primary keys.
:func:`~sqlalchemy_vectorknobs.verify` finds such drift and :func:`~sqlalchemy_vectorknobs.rebuild`
repairs it.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, scoped_session, sessionmaker

from .. import dialects
from ..exc import InvalidMirrorError, MirrorSyncError
from . import outbox as _outbox
from ._apply import (
    DEFAULT_TIMEOUT,
    check_mirrors,
    check_timeout,
    encode_pk,
    next_version,
    pk_kind,
    plan_changes,
    read_rows,
    write,
)
from .collect import Changes, Collector, Known

__all__ = ["ON_ERROR", "Attachment", "MirrorSyncError", "attach", "record_writes"]

log = logging.getLogger("sqlalchemy_vectorknobs.sync")

#: Every attachment not yet detached (for :func:`record_writes`).
_ATTACHMENTS: weakref.WeakSet[Attachment] = weakref.WeakSet()


def record_writes(session: Session, table: sa.Table, pks: Iterable[Any]) -> None:
    """Rows of ``table`` that ``session`` wrote with statements the ORM does not see.

    ``vk.backfill``, ``ReembedJob.fill`` and the ``Vectorizer`` write vectors with Core UPDATEs;
    they report the keys here, and every attachment listening to ``session`` with a mirror of
    ``table`` treats them like the rows of an ORM bulk UPDATE: recorded in the transaction (and
    its outbox), re-read and applied after the commit, dropped on rollback.
    """
    if not _ATTACHMENTS:
        return
    keys = list(pks)
    if keys:
        for attachment in list(_ATTACHMENTS):
            attachment.record(session, table, keys)

ON_ERROR = ("raise", "log")


# ------------------------------------------------------------------------------ what is recorded


@dataclass
class _Buffer:
    """Changes recorded in one transaction, per mirror index and primary key.

    ``changes``: the last op; ``versions``: the version of that change (a clock version taken when
    it was collected, while the transaction holds the row's lock, or with the outbox its outbox
    row id); ``known``: the flushed (vector, metadata) when they need no re-read. Plus every outbox
    id written per mirror index (a key changed twice has two) and the connection each mirror's
    changes went through.
    """

    changes: dict[int, dict[Any, str]] = field(default_factory=dict)
    versions: dict[int, dict[Any, int]] = field(default_factory=dict)
    known: Known = field(default_factory=dict)
    outbox_ids: dict[int, list[int]] = field(default_factory=dict)
    conns: dict[int, sa.Connection] = field(default_factory=dict)

    def add(
        self,
        changes: Changes,
        versions: dict[int, dict[Any, int]],
        known: Known,
        conns: dict[int, sa.Connection],
        ids: dict[int, list[int]],
    ) -> None:
        for index, per_pk in changes.items():
            self.changes.setdefault(index, {}).update(per_pk)
            self.versions.setdefault(index, {}).update(versions[index])
            mine = self.known.setdefault(index, {})
            got = known.get(index, {})
            for pk in per_pk:
                if pk in got:
                    mine[pk] = got[pk]
                else:
                    mine.pop(pk, None)  # a later change of unknown values: read the row back
        self.conns.update(conns)
        for index, written in ids.items():
            self.outbox_ids.setdefault(index, []).extend(written)

    def merge(self, other: _Buffer) -> None:
        self.add(other.changes, other.versions, other.known, other.conns, other.outbox_ids)


# Constants are SQL literals, not parameters: fewer parameters per row (a multi-row INSERT with
# them measured 1.7x faster on PostgreSQL).
_OUTBOX_COLUMNS = ("mirror", "table_name", "pk", "op", "created_at")
_OUTBOX_CONSTANTS: dict[str, Any] = {"attempts": sa.literal_column("0"), "available_at": sa.literal_column("0.0"), "dead": sa.literal_column("0")}


def _transaction_boundary(transaction: SessionTransaction | None) -> SessionTransaction | None:
    """The innermost real transaction (root or savepoint) at or above ``transaction``."""
    while transaction is not None and not transaction.nested and transaction.parent is not None:
        transaction = transaction.parent
    return transaction


# ------------------------------------------------------------------------------ the attachment


class Attachment:
    """Mirrors attached to a session factory by :func:`attach`; :meth:`detach` stops the syncing.

    Usable as a context manager (``with vk.attach(...):``) that detaches on exit.
    """

    def __init__(
        self,
        target: Any,
        mirrors: list[Any],
        *,
        outbox: bool,
        on_error: str,
        drain_after_commit: bool,
        restore: Callable[[], None] | None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> None:
        self._target = target
        self._restore = restore
        self.mirrors: tuple[Any, ...] = tuple(mirrors)
        self.outbox = outbox
        self.on_error = on_error
        self.drain_after_commit = drain_after_commit
        self.timeout = timeout
        self._collector = Collector(self.mirrors)
        self._lock = threading.Lock()
        self._buffers: weakref.WeakKeyDictionary[SessionTransaction, _Buffer] = weakref.WeakKeyDictionary()
        self._committed: weakref.WeakKeyDictionary[SessionTransaction, _Buffer] = weakref.WeakKeyDictionary()
        self._outbox_ready: weakref.WeakSet[sa.Engine] = weakref.WeakSet()
        self._listeners: list[tuple[str, Callable[..., Any]]] = [
            ("after_flush", self._after_flush),
            ("do_orm_execute", self._do_orm_execute),
            ("after_commit", self._after_commit),
            ("after_transaction_end", self._after_transaction_end),
        ]
        for name, fn in self._listeners:
            event.listen(target, name, fn)
        self._active = True
        _ATTACHMENTS.add(self)

    @property
    def active(self) -> bool:
        """False once :meth:`detach` ran."""
        return self._active

    def detach(self) -> None:
        """Remove the listeners; changes not yet applied are dropped (with the outbox they stay queued)."""
        if not self._active:
            return
        for name, fn in self._listeners:
            event.remove(self._target, name, fn)
        if self._restore is not None:
            self._restore()
        with self._lock:
            self._buffers.clear()
            self._committed.clear()
        self._active = False
        _ATTACHMENTS.discard(self)

    def __enter__(self) -> Attachment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def __repr__(self) -> str:
        names = ", ".join(m.name for m in self.mirrors)
        state = "active" if self._active else "detached"
        return f"<Attachment [{names}] outbox={self.outbox} on_error={self.on_error!r} {state}>"

    # ------------------------------------------------------------------ collect

    def _after_flush(self, session: Session, flush_context: Any) -> None:
        for mapper, changes, known in self._collector.flush(session):
            self._collect(session, changes, session.connection(bind_arguments={"mapper": mapper}), known)

    def _do_orm_execute(self, orm_state: ORMExecuteState) -> Any:
        ran = self._collector.statement(orm_state)
        if ran is None:
            return None
        result, changes, conn = ran
        if changes:
            self._collect(orm_state.session, changes, conn, {})
        return result

    def listens_to(self, session: Session) -> bool:
        """Whether this attachment's listeners see ``session``."""
        target = self._target
        if isinstance(target, Session):
            return session is target
        if isinstance(target, sessionmaker):
            return isinstance(session, target.class_)
        return isinstance(target, type) and isinstance(session, target)

    def record(self, session: Session, table: sa.Table, pks: list[Any]) -> None:
        """See :func:`record_writes`."""
        if not self._active or not self.listens_to(session):
            return
        changes = {
            index: dict.fromkeys(pks, "upsert")
            for index, mirror in enumerate(self.mirrors)
            if mirror.table is table or mirror.table.fullname == table.fullname
        }
        if changes:
            self._collect(session, changes, session.connection(), {})

    def _collect(self, session: Session, changes: Changes, conn: sa.Connection, known: Known) -> None:
        """Record ``changes`` in the current transaction (and, with the outbox, write their rows).

        Runs right after the statements that made the changes, while the transaction holds the
        rows' locks: a later transaction changing the same row gets a larger version (clock or
        outbox id), so versions order the changes of a row as the database ordered them.
        """
        ids: dict[int, list[int]] = {}
        if self.outbox:
            versions = self._write_outbox(conn, changes)
            ids = {index: list(per_pk.values()) for index, per_pk in versions.items()}
        else:
            version = next_version()
            versions = {index: dict.fromkeys(per_pk, version) for index, per_pk in changes.items()}
        boundary = session.get_nested_transaction() or session.get_transaction()
        if boundary is None:  # pragma: no cover - a flush or statement always runs in a transaction
            return
        with self._lock:
            self._buffers.setdefault(boundary, _Buffer()).add(changes, versions, known, dict.fromkeys(changes, conn), ids)

    def _write_outbox(self, conn: sa.Connection, changes: Changes) -> dict[int, dict[Any, int]]:
        """Insert one outbox row per change; return the row id of each (mirror index, pk)."""
        self._check_outbox(conn)
        now = time.time()
        keys: list[tuple[int, Any]] = []
        rows: list[tuple[Any, ...]] = []
        for index, per_pk in changes.items():
            mirror = self.mirrors[index]
            for pk, op in per_pk.items():
                keys.append((index, pk))
                rows.append((mirror.name, mirror.table.fullname, encode_pk(pk), op, now))
        # Each (mirror, pk) appears once: those two columns tell the rows apart.
        ids = dialects.for_dialect(conn.dialect).insert_ids(conn, _outbox.outbox_table, _OUTBOX_COLUMNS, rows, _OUTBOX_CONSTANTS, ("mirror", "pk"))
        out: dict[int, dict[Any, int]] = {}
        for (index, pk), row_id in zip(keys, ids):
            out.setdefault(index, {})[pk] = row_id
        return out

    def _check_outbox(self, conn: sa.Connection) -> None:
        if conn.engine in self._outbox_ready:
            return
        if not sa.inspect(conn).has_table(_outbox.OUTBOX_TABLE):
            raise InvalidMirrorError(
                f"The outbox table '{_outbox.OUTBOX_TABLE}' does not exist in this database; create it with "
                "vk.create_outbox(engine) (async: `await conn.run_sync(vk.create_outbox)`) before writing."
            )
        self._outbox_ready.add(conn.engine)

    # ------------------------------------------------------------------ transaction boundaries

    def _after_commit(self, session: Session) -> None:
        nested = session.get_nested_transaction()
        with self._lock:
            if nested is not None:  # a savepoint was released: its changes join the enclosing transaction
                buf = self._buffers.pop(nested, None)
                parent = _transaction_boundary(nested.parent)
                if buf is not None and parent is not None:
                    self._buffers.setdefault(parent, _Buffer()).merge(buf)
                return
            root = session.get_transaction()
            buf = self._buffers.pop(root, None) if root is not None else None
            if buf is not None and root is not None:
                self._committed[root] = buf  # applied once the transaction has let go of its connection

    def _after_transaction_end(self, session: Session, transaction: SessionTransaction) -> None:
        with self._lock:
            self._buffers.pop(transaction, None)  # rolled back or closed without commit: dropped
            buf = self._committed.pop(transaction, None)
        if buf is not None and buf.changes:
            self._apply(buf)

    # ------------------------------------------------------------------ apply

    def _apply(self, buf: _Buffer) -> None:
        failures: dict[str, BaseException] = {}
        if self.outbox:
            if self.drain_after_commit and any(buf.outbox_ids.values()):
                self._drain_written(buf, failures)
        else:
            by_table: dict[sa.Table, list[int]] = {}
            for index in buf.changes:
                by_table.setdefault(self.mirrors[index].table, []).append(index)
            for indexes in by_table.values():
                self._apply_table(buf, indexes, failures)
        if failures:
            self._report(failures)

    def _apply_table(self, buf: _Buffer, indexes: list[int], failures: dict[str, BaseException]) -> None:
        mirrors = [self.mirrors[i] for i in indexes]
        # Rows whose flushed values are not known (updates of some columns only, bulk statements,
        # SQL expressions, server defaults, deletes) are read back.
        keys = {pk for i in indexes for pk in buf.changes[i] if pk not in buf.known.get(i, {})}
        used = buf.conns[indexes[0]]
        rows: dict[Any, Any] = {}
        if keys:
            try:
                if not used.closed and used.in_transaction():
                    # The session joined a transaction it does not own (Session(bind=connection)):
                    # its data is visible only there, so read there.
                    rows = read_rows(used, mirrors, keys)
                else:
                    with used.engine.connect() as conn:
                        rows = read_rows(conn, mirrors, keys)
            except Exception as err:
                failures.update({m.name: err for m in mirrors})
                return
        for index, mirror in zip(indexes, mirrors):
            try:
                write(mirror, plan_changes(mirror, buf.versions[index], buf.known.get(index, {}), rows), self.timeout)
            except Exception as err:
                failures[mirror.name] = err

    def _drain_written(self, buf: _Buffer, failures: dict[str, BaseException]) -> None:
        by_engine: dict[sa.Engine, list[int]] = {}
        for index in buf.changes:
            # Rows of a transaction the session does not own are not visible yet: the claim finds
            # nothing and leaves them to a later drain, once (and if) that transaction commits.
            by_engine.setdefault(buf.conns[index].engine, []).append(index)
        for engine, indexes in by_engine.items():
            group = [self.mirrors[i] for i in indexes]
            ids = {self.mirrors[i].name: buf.outbox_ids.get(i, []) for i in indexes}
            newest = {self.mirrors[i].name: buf.versions[i] for i in indexes}
            known = {self.mirrors[i].name: buf.known.get(i, {}) for i in indexes}
            try:
                report = _outbox.drain_committed(engine, group, ids, newest, known, timeout=self.timeout)
            except Exception as err:
                failures.update({m.name: err for m in group})
            else:
                failures.update(report.errors)

    def _report(self, failures: dict[str, BaseException]) -> None:
        names = ", ".join(repr(n) for n in failures)
        first = next(iter(failures.values()))
        if self.outbox:
            tail = "the changes stay in the outbox table and vk.drain() applies them once the mirror works again"
        else:
            tail = "the mirror is behind: vk.verify() lists the drift and vk.rebuild() repairs it (outbox=True retries on its own)"
        message = (
            f"The transaction was committed, but mirror {names} could not be updated "
            f"({type(first).__name__}: {first}); {tail}."
        )
        if self.on_error == "raise":
            raise MirrorSyncError(message, failures) from first
        log.error(message)


# ------------------------------------------------------------------------------ attach


def _resolve_target(factory: Any) -> tuple[Any, Callable[[], None] | None, Any]:
    """(event target, undo for detach, bind if known) for a session class, session or factory."""
    if isinstance(factory, scoped_session):
        factory = factory.session_factory
    if isinstance(factory, sessionmaker):
        return factory, None, factory.kw.get("bind")
    if isinstance(factory, type) and issubclass(factory, Session):
        return factory, None, None
    if isinstance(factory, Session):
        return factory, None, factory.bind
    try:
        from sqlalchemy.ext.asyncio import AsyncSession, async_scoped_session, async_sessionmaker
    except ImportError:  # pragma: no cover - SQLAlchemy without its asyncio extension
        AsyncSession = async_sessionmaker = async_scoped_session = None  # type: ignore[assignment,misc]
    if async_scoped_session is not None and isinstance(factory, async_scoped_session):
        factory = factory.session_factory
    if AsyncSession is not None and isinstance(factory, AsyncSession):
        return factory.sync_session, None, factory.bind
    if async_sessionmaker is not None and isinstance(factory, async_sessionmaker):
        # Listen on a Session class of this factory's own, so other AsyncSessions are unaffected.
        kw = factory.kw
        had = "sync_session_class" in kw
        base = kw.get("sync_session_class") or factory.class_.sync_session_class
        own = type(f"VectorKnobs{base.__name__}", (base,), {})
        kw["sync_session_class"] = own

        def restore() -> None:
            if kw.get("sync_session_class") is own:
                if had:
                    kw["sync_session_class"] = base
                else:
                    del kw["sync_session_class"]

        return own, restore, kw.get("bind")
    if AsyncSession is not None and isinstance(factory, type) and issubclass(factory, AsyncSession):
        raise InvalidMirrorError(
            "vk.attach cannot listen to the AsyncSession class itself; pass an async_sessionmaker or an AsyncSession instance."
        )
    raise InvalidMirrorError(
        f"vk.attach needs a Session class or instance, a sessionmaker, an AsyncSession or an async_sessionmaker, got {type(factory).__name__}."
    )


def attach(
    session_factory: Any,
    mirrors: Iterable[Any],
    outbox: bool = False,
    on_error: str = "raise",
    *,
    drain_after_commit: bool = True,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> Attachment:
    """Keep ``mirrors`` in step with what sessions from ``session_factory`` commit.

    ``session_factory`` is a ``Session`` subclass (every session of that class) or instance, a
    ``sessionmaker``, an ``AsyncSession`` or an ``async_sessionmaker``. ``outbox=True`` also writes
    each change to ``vk_outbox`` in the same transaction (created now when the factory has a
    synchronous bind; otherwise create it with :func:`create_outbox`) and applies it after commit
    through :func:`drain`; ``drain_after_commit=False`` leaves all applying to a worker that calls
    ``drain``. ``on_error`` is ``"raise"`` (:class:`MirrorSyncError` from ``commit()``) or
    ``"log"``. ``timeout`` (seconds, default 60; None waits forever) bounds each mirror write
    after a commit: a mirror that hangs counts as failed (with the outbox its rows stay queued for
    :func:`drain`), so a commit never waits on it for longer::

        mirror = vk.MemoryMirror(Doc.embedding, metadata_columns=["category"])
        attachment = vk.attach(sessionmaker(engine), mirrors=[mirror], outbox=True)
    """
    checked = check_mirrors(mirrors, "vk.attach")
    if not checked:
        raise InvalidMirrorError("vk.attach needs at least one mirror.")
    if on_error not in ON_ERROR:
        raise InvalidMirrorError(f"vk.attach on_error={on_error!r} is not valid; use 'raise' or 'log'.")
    if not isinstance(outbox, bool):
        raise InvalidMirrorError(f"vk.attach outbox={outbox!r} is not valid; pass True or False.")
    timeout = check_timeout("vk.attach", timeout)
    if not drain_after_commit and not outbox:
        raise InvalidMirrorError("vk.attach drain_after_commit=False needs outbox=True (without it nothing would apply the changes).")
    if outbox:
        for mirror in checked:
            pk_kind(mirror.pk_column)  # refuses key types the outbox cannot store
    target, restore, bind = _resolve_target(session_factory)
    if outbox and isinstance(bind, sa.Engine) and not bind.dialect.is_async:
        _outbox.create_outbox(bind)
    return Attachment(
        target,
        checked,
        outbox=outbox,
        on_error=on_error,
        drain_after_commit=drain_after_commit,
        restore=restore,
        timeout=timeout,
    )
