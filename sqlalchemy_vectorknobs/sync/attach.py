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
  ``do_orm_execute``: ``update()``/``delete()`` with criteria have their primary keys selected in
  the same transaction just before they run, bulk UPDATE by primary key and bulk INSERT take them
  from the parameters (or from ``RETURNING`` when an INSERT does not give them).
* **Per transaction.** Keys are kept per ``SessionTransaction``: a savepoint that rolls back
  discards its keys, a released savepoint hands them to the enclosing transaction, and a rollback
  of the whole transaction discards everything. Nothing touches a mirror before the commit.
* **Apply.** When the outermost transaction has committed (and the session let go of its
  connection), the rows are read again on a fresh connection from the session's bind, so the
  mirror receives the committed values: rows present with a vector are upserted, the others
  deleted. Under an ``AsyncSession`` mirror calls run in a worker thread, off the event loop.
* **Failures.** A mirror that fails never rolls back committed data. All mirrors are tried, then
  ``on_error="raise"`` raises :class:`MirrorSyncError` from ``commit()`` (the data *is*
  committed) and ``on_error="log"`` logs it.
* **Ordering.** Without the outbox each apply carries a version taken from the clock just before
  the re-read (nanoseconds, increasing within a process), so a slow older apply cannot overwrite
  a newer one in the same process or between processes on one machine's clock. Only
  ``outbox=True`` guarantees ordering across machines and survives crashes (:mod:`.outbox`).

Not captured: SQL the session does not run as ORM statements (``text()``, Core statements on a
Connection, other programs), database-side cascades and triggers, the legacy
``bulk_save_objects``/``bulk_*_mappings`` methods, and bulk UPDATEs that change primary keys.
:func:`~sqlalchemy_vectorknobs.verify` finds such drift and :func:`~sqlalchemy_vectorknobs.rebuild`
repairs it.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional, Sequence

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Mapper, ORMExecuteState, Session, SessionTransaction, scoped_session, sessionmaker
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.sql.elements import BindParameter

from ..exc import InvalidMirrorError, VectorKnobsError
from . import outbox as _outbox
from ._apply import check_mirrors, encode_pk, next_version, pk_kind, plan_writes, read_rows, write

__all__ = ["attach", "Attachment", "MirrorSyncError", "ON_ERROR"]

log = logging.getLogger("sqlalchemy_vectorknobs.sync")

ON_ERROR = ("raise", "log")


class MirrorSyncError(VectorKnobsError, RuntimeError):
    """Committed changes could not be written to one or more mirrors (the data *is* committed).

    ``failures`` maps each failing mirror's name to the exception it raised.
    """

    def __init__(self, message: str, failures: dict[str, BaseException]) -> None:
        super().__init__(message)
        self.failures = failures


# ------------------------------------------------------------------------------ what is recorded


@dataclass
class _Buffer:
    """Changes recorded in one transaction: per mirror, ``{pk: op}``; the outbox ids written; binds."""

    changes: dict[int, dict[Any, str]] = field(default_factory=dict)
    outbox_ids: list[int] = field(default_factory=list)
    conns: dict[int, sa.Connection] = field(default_factory=dict)

    def add(self, changes: dict[int, dict[Any, str]], conns: dict[int, sa.Connection], ids: Sequence[int]) -> None:
        for index, per_pk in changes.items():
            self.changes.setdefault(index, {}).update(per_pk)
        self.conns.update(conns)
        self.outbox_ids.extend(ids)

    def merge(self, other: _Buffer) -> None:
        self.add(other.changes, other.conns, other.outbox_ids)


@dataclass(frozen=True)
class _Track:
    """One mirror as seen from one mapper: which attribute keys to watch."""

    index: int
    pk_key: str
    pk_position: Optional[int]  # position of the key in the mapper's identity, if it is there
    watched: tuple[str, ...]  # the vector and metadata attribute keys


def _transaction_boundary(transaction: Optional[SessionTransaction]) -> Optional[SessionTransaction]:
    """The innermost real transaction (root or savepoint) at or above ``transaction``."""
    while transaction is not None and not transaction.nested and transaction.parent is not None:
        transaction = transaction.parent
    return transaction


def _names(key: Any) -> set[str]:
    """The names a statement's value key may go by (attribute key, column key, column name)."""
    if isinstance(key, str):
        return {key}
    return {n for n in (getattr(key, "key", None), getattr(key, "name", None)) if isinstance(n, str)}


try:  # a result like the one SQLAlchemy returns for an INSERT without RETURNING
    from sqlalchemy.engine.cursor import _NO_RESULT_METADATA as _NO_ROWS
except ImportError:  # pragma: no cover
    _NO_ROWS = sa.engine.result.SimpleResultMetaData([])  # type: ignore[assignment]


def _no_rows() -> Any:
    return sa.engine.IteratorResult(_NO_ROWS, iter([]))


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
        restore: Optional[Callable[[], None]],
    ) -> None:
        self._target = target
        self._restore = restore
        self.mirrors: tuple[Any, ...] = tuple(mirrors)
        self.outbox = outbox
        self.on_error = on_error
        self.drain_after_commit = drain_after_commit
        self._by_table: dict[sa.Table, list[int]] = {}
        for i, mirror in enumerate(self.mirrors):
            self._by_table.setdefault(mirror.table, []).append(i)
        self._tracks: dict[Any, tuple[_Track, ...]] = {}
        self._statement_names: dict[tuple[Any, int], frozenset[str]] = {}
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

    def __enter__(self) -> Attachment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def __repr__(self) -> str:
        names = ", ".join(m.name for m in self.mirrors)
        state = "active" if self._active else "detached"
        return f"<Attachment [{names}] outbox={self.outbox} on_error={self.on_error!r} {state}>"

    # ------------------------------------------------------------------ mapper plans

    def _tracks_for(self, mapper: Any) -> tuple[_Track, ...]:
        tracks = self._tracks.get(mapper)
        if tracks is None:
            found = []
            for table in mapper.tables:
                for i in self._by_table.get(table, ()):
                    mirror = self.mirrors[i]
                    key = lambda col: mapper.get_property_by_column(col).key  # noqa: E731
                    pk_prop = mapper.get_property_by_column(mirror.pk_column)
                    position = next(
                        (n for n, col in enumerate(mapper.primary_key) if col in pk_prop.columns), None
                    )
                    watched = (key(mirror.column), *(key(table.c[n]) for n in mirror.metadata_columns))
                    found.append(_Track(i, pk_prop.key, position, watched))
            tracks = self._tracks[mapper] = tuple(found)
        return tracks

    # ------------------------------------------------------------------ collect: flush

    def _after_flush(self, session: Session, flush_context: Any) -> None:
        changes: dict[int, dict[Any, str]] = {}
        mappers: dict[int, Any] = {}

        def record(track: _Track, pk: Any, op: str, mapper: Any) -> None:
            if pk is not None:
                changes.setdefault(track.index, {})[pk] = op
                mappers.setdefault(track.index, mapper)

        for obj in session.new:
            state = instance_state(obj)
            for track in self._tracks_for(state.mapper):
                record(track, state.dict.get(track.pk_key), "upsert", state.mapper)
        for obj in session.dirty:
            state = instance_state(obj)
            if state.key is None:
                continue
            attrs = state.attrs
            for track in self._tracks_for(state.mapper):
                pk_history = attrs[track.pk_key].history
                if pk_history.deleted and pk_history.added:  # the primary key itself changed
                    record(track, pk_history.deleted[0], "delete", state.mapper)
                    record(track, pk_history.added[0], "upsert", state.mapper)
                elif any(attrs[key].history.has_changes() for key in track.watched):
                    record(track, self._identity_pk(state, track), "upsert", state.mapper)
        for obj in session.deleted:
            state = instance_state(obj)
            for track in self._tracks_for(state.mapper):
                record(track, self._identity_pk(state, track), "delete", state.mapper)
        if not changes:
            return
        by_mapper: dict[Any, dict[int, dict[Any, str]]] = {}
        for index, per_pk in changes.items():
            by_mapper.setdefault(mappers[index], {})[index] = per_pk
        for mapper, part in by_mapper.items():
            self._collect(session, part, functools.partial(session.connection, bind_arguments={"mapper": mapper}))

    @staticmethod
    def _identity_pk(state: Any, track: _Track) -> Any:
        identity = state.identity
        if identity is not None and track.pk_position is not None:
            return identity[track.pk_position]
        return state.dict.get(track.pk_key)

    def _collect(
        self, session: Session, changes: dict[int, dict[Any, str]], connection: Callable[[], sa.Connection]
    ) -> None:
        """Record ``changes`` in the current transaction (and, with the outbox, write their rows)."""
        conn = connection()
        ids: Sequence[int] = self._write_outbox(conn, changes) if self.outbox else ()
        boundary = session.get_nested_transaction() or session.get_transaction()
        if boundary is None:  # pragma: no cover - a flush or statement always runs in a transaction
            return
        with self._lock:
            self._buffers.setdefault(boundary, _Buffer()).add(changes, dict.fromkeys(changes, conn), ids)

    def _write_outbox(self, conn: sa.Connection, changes: dict[int, dict[Any, str]]) -> list[int]:
        self._check_outbox(conn)
        now = time.time()
        rows = [
            {
                "mirror": self.mirrors[index].name,
                "table_name": self.mirrors[index].table.fullname,
                "pk": encode_pk(pk),
                "op": op,
                "attempts": 0,
                "available_at": 0.0,
                "created_at": now,
                "dead": False,
            }
            for index, per_pk in changes.items()
            for pk, op in per_pk.items()
        ]
        t = _outbox.outbox_table
        return [int(i) for i in conn.execute(t.insert().returning(t.c.id), rows).scalars()]

    def _check_outbox(self, conn: sa.Connection) -> None:
        if conn.engine in self._outbox_ready:
            return
        if not sa.inspect(conn).has_table(_outbox.OUTBOX_TABLE):
            raise InvalidMirrorError(
                f"The outbox table '{_outbox.OUTBOX_TABLE}' does not exist in this database; create it with "
                "vk.create_outbox(engine) (async: `await conn.run_sync(vk.create_outbox)`) before writing."
            )
        self._outbox_ready.add(conn.engine)

    # ------------------------------------------------------------------ collect: bulk statements

    def _statement_names_for(self, mapper: Any, index: int) -> frozenset[str]:
        """Names under which a statement can set the mirror's vector, metadata or key columns."""
        names = self._statement_names.get((mapper, index))
        if names is None:
            mirror = self.mirrors[index]
            cols = [mirror.column, mirror.pk_column, *(mirror.table.c[n] for n in mirror.metadata_columns)]
            found = {n for col in cols for n in (col.key, col.name)}
            if mapper is not None:
                found.update(mapper.get_property_by_column(col).key for col in cols)
            names = self._statement_names[(mapper, index)] = frozenset(found)
        return names

    def _do_orm_execute(self, orm_state: ORMExecuteState) -> Any:
        stmt: Any = orm_state.statement
        if not stmt.is_dml:  # every SELECT passes here: keep this test cheap
            return None
        if not (orm_state.is_insert or orm_state.is_update or orm_state.is_delete):
            return None
        table = getattr(stmt, "table", None)
        indexes = self._by_table.get(table) if table is not None else None
        if not indexes:
            return None
        mapper = orm_state.bind_mapper
        params: Any = orm_state.parameters
        rows: list[dict[Any, Any]] = params if isinstance(params, list) else ([params] if params else [])
        pk_col = self.mirrors[indexes[0]].pk_column
        pk_names = {pk_col.key, pk_col.name}
        if mapper is not None:
            pk_names.add(mapper.get_property_by_column(pk_col).key)
        if orm_state.is_update:
            touched: set[str] = set()
            for key in dict(getattr(stmt, "_values", None) or {}):
                touched |= _names(key)
            for key, _ in getattr(stmt, "_ordered_values", None) or ():
                touched |= _names(key)
            by_key = set().union(*(_names(key) for row in rows for key in row)) if rows else set()
            touched |= by_key - pk_names  # in a bulk UPDATE by primary key the key selects the row
            indexes = [i for i in indexes if touched & self._statement_names_for(mapper, i)]
            if not indexes:
                return None
        session = orm_state.session
        conn = session.connection(bind_arguments=orm_state.bind_arguments)

        def pk_of(row: dict[Any, Any]) -> Any:
            for key, value in row.items():
                if _names(key) & pk_names:
                    return value.value if isinstance(value, BindParameter) else value
            return None

        if orm_state.is_insert:
            result, pks = self._bulk_insert(orm_state, stmt, rows, mapper, pk_col, pk_of)
            op = "upsert"
        else:
            where = getattr(stmt, "whereclause", None)
            if orm_state.is_executemany or (rows and where is None):  # by primary key, from the parameters
                pks = [pk for pk in map(pk_of, rows) if pk is not None]
            else:
                select = sa.select(pk_col) if where is None else sa.select(pk_col).where(where)
                pks = list(conn.execute(select, rows[0] if rows else None).scalars())
            result = orm_state.invoke_statement()
            op = "upsert" if orm_state.is_update else "delete"
        if pks:
            changes = {i: dict.fromkeys(pks, op) for i in indexes}
            self._collect(session, changes, lambda: conn)
        return result

    def _bulk_insert(
        self,
        orm_state: ORMExecuteState,
        stmt: Any,
        rows: list[dict[Any, Any]],
        mapper: Any,
        pk_col: sa.Column[Any],
        pk_of: Callable[[dict[Any, Any]], Any],
    ) -> tuple[Any, list[Any]]:
        """Run an INSERT and return (its result, the primary keys it inserted)."""
        multi = getattr(stmt, "_multi_values", None)
        values = getattr(stmt, "_values", None)
        if rows:
            given = [pk_of(row) for row in rows]
        elif multi:
            given = [pk_of(row) for group in multi for row in group if isinstance(row, dict)]
            if not given:
                given = [None]
        elif values and getattr(stmt, "select", None) is None:
            given = [pk_of(dict(values))]
            if given[0] is None:  # one row: the driver reports its key
                result = orm_state.invoke_statement()
                key = getattr(result, "inserted_primary_key", None)
                position = list(pk_col.table.primary_key.columns).index(pk_col)
                return result, [key[position]] if key is not None and key[position] is not None else []
        else:
            given = [None]  # INSERT ... FROM SELECT: only RETURNING can tell
        if all(pk is not None for pk in given):
            return orm_state.invoke_statement(), given
        # Keys generated by the database: ask for them with RETURNING, and hand the caller the
        # result it would have had (no rows, or exactly the columns it asked to return).
        pk_expr = getattr(mapper.class_, mapper.get_property_by_column(pk_col).key) if mapper is not None else pk_col
        asked = len(getattr(stmt, "_returning", ()) or ())
        result = orm_state.invoke_statement(statement=stmt.returning(pk_expr))
        if not asked:
            return _no_rows(), [pk for pk in result.scalars() if pk is not None]
        frozen = result.freeze()
        pks = [row[asked] for row in frozen.data]
        return frozen().columns(*range(asked)), pks

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
            if self.drain_after_commit and buf.outbox_ids:
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
        keys = {pk for i in indexes for pk in buf.changes[i]}
        used = buf.conns[indexes[0]]
        try:
            version = next_version()  # taken before the read: a later reader gets a larger one
            if not used.closed and used.in_transaction():
                # The session joined a transaction it does not own (Session(bind=connection)):
                # its data is visible only there, so read there.
                rows = read_rows(used, mirrors, keys)
            else:
                with used.engine.connect() as conn:
                    rows = read_rows(conn, mirrors, keys)
        except Exception as err:  # noqa: BLE001 - reported like a mirror failure: the data is committed
            failures.update({m.name: err for m in mirrors})
            return
        for index, mirror in zip(indexes, mirrors):
            try:
                write(mirror, plan_writes(mirror, buf.changes[index], rows, version))
            except Exception as err:  # noqa: BLE001 - every mirror is tried; the errors are reported together
                failures[mirror.name] = err

    def _drain_written(self, buf: _Buffer, failures: dict[str, BaseException]) -> None:
        mirrors = [self.mirrors[i] for i in buf.changes]
        by_engine: dict[sa.Engine, list[Any]] = {}
        for index, mirror in zip(buf.changes, mirrors):
            # Rows of a transaction the session does not own are not visible yet: the claim finds
            # nothing and leaves them to a later drain, once (and if) that transaction commits.
            by_engine.setdefault(buf.conns[index].engine, []).append(mirror)
        for engine, group in by_engine.items():
            try:
                report = drain_written(engine, group, buf.outbox_ids)
            except Exception as err:  # noqa: BLE001 - the rows stay in the outbox for the next drain
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


def drain_written(engine: sa.Engine, mirrors: list[Any], ids: Sequence[int]) -> _outbox.DrainReport:
    """The after-commit drain of the outbox rows one transaction wrote (a seam for tests)."""
    return _outbox.drain(engine, mirrors, ids=ids)


# ------------------------------------------------------------------------------ attach


def _resolve_target(factory: Any) -> tuple[Any, Optional[Callable[[], None]], Any]:
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
) -> Attachment:
    """Keep ``mirrors`` in step with what sessions from ``session_factory`` commit.

    ``session_factory`` is a ``Session`` subclass (every session of that class) or instance, a
    ``sessionmaker``, an ``AsyncSession`` or an ``async_sessionmaker``. ``outbox=True`` also writes
    each change to ``vk_outbox`` in the same transaction (created now when the factory has a
    synchronous bind; otherwise create it with :func:`create_outbox`) and applies it after commit
    through :func:`drain`; ``drain_after_commit=False`` leaves all applying to a worker that calls
    ``drain``. ``on_error`` is ``"raise"`` (:class:`MirrorSyncError` from ``commit()``) or
    ``"log"``::

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
    if not drain_after_commit and not outbox:
        raise InvalidMirrorError("vk.attach drain_after_commit=False needs outbox=True (without it nothing would apply the changes).")
    if outbox:
        for mirror in checked:
            pk_kind(mirror.pk_column)  # refuses key types the outbox cannot store
    target, restore, bind = _resolve_target(session_factory)
    if outbox and isinstance(bind, sa.Engine) and not bind.dialect.is_async:
        _outbox.create_outbox(bind)
    return Attachment(
        target, checked, outbox=outbox, on_error=on_error, drain_after_commit=drain_after_commit, restore=restore
    )
