"""The session listeners that keep embedded columns in step: flush, bulk INSERT and bulk UPDATE.

Installed once, the first time a model declares an ``embedded_column`` (importing the package
installs nothing). Every session then:

* **before flush** embeds new rows and rows whose source text changed (compared by content
  hash, so assigning the same value, or touching an expired/deferred attribute, costs nothing),
  one embedder call per ``batch_size`` rows;
* **on ORM bulk statements** (``session.execute(insert(Doc), rows)``, ``insert(Doc).values(...)``,
  ``update(Doc).where(...).values(...)``, bulk UPDATE by primary key) embeds the affected rows in
  the same transaction. A statement whose values cannot be read in Python (``insert ... from
  select``, multi-row ``values([...])``) leaves its rows stale, which ``vk.stale()`` lists.

Bulk statements are seen where the ORM hands them to the Core ``Connection`` (the engines'
``before_execute``; a bulk UPDATE adds ``after_execute`` to its own connection), not in the
session's ``do_orm_execute``: once any ``do_orm_execute``
listener exists, SQLAlchemy prepares every ORM statement twice, which costs a plain ``select()``
about 5 % (see docs/embedding-sync.md). They act on an INSERT or UPDATE of a table with an
embedded column that a session runs: an ORM statement, or a Core one other than the session's own
flush. SELECTs, flushes and Core statements on a connection no session uses pass untouched.

Under an ``AsyncSession`` the flush runs in SQLAlchemy's greenlet; the embedder is then awaited
on the event loop (``aembed`` if it has one, else ``embed`` in a worker thread), so the loop is
never blocked by a model.
"""

from __future__ import annotations

import gc
import logging
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Mapper, Session
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.sql.elements import BindParameter

from .. import dialects
from .._blocking import run_blocking
from ..exc import DimensionMismatchError, EmbeddingError
from .column import EmbeddedColumn, specs_of

__all__ = ["Plan", "call_embedder", "embed_rows", "install", "plans_for", "row_writer", "uninstall"]

log = logging.getLogger("sqlalchemy_vectorknobs.embedding")
_installed = False


def install() -> None:
    """Attach the listeners to every ``Session`` (idempotent)."""
    global _installed
    if _installed:
        return
    for target, name, fn, kw in _LISTENERS:
        event.listen(target, name, fn, **kw)
    _installed = True


def uninstall() -> None:
    """Detach the listeners again (embedded columns then stop syncing until :func:`install`)."""
    global _installed
    if not _installed:
        return
    for target, name, fn, _ in _LISTENERS:
        event.remove(target, name, fn)
    _installed = False


# ------------------------------------------------------------------------------ per mapper plan


@dataclass(frozen=True)
class Plan:
    """One embedded column as seen from one mapper: the attribute keys to read and write."""

    spec: EmbeddedColumn
    vector_key: str
    hash_key: str
    model_key: str
    source_keys: tuple[str, ...]
    pk_key: str


_PLANS: dict[Any, tuple[Plan, ...]] = {}


def plans_for(mapper: Any) -> tuple[Plan, ...]:
    """The embedded columns of ``mapper`` (cached; empty for models without one)."""
    plans = _PLANS.get(mapper)
    if plans is None:
        found = []

        def key(col: Any) -> str:
            return str(mapper.get_property_by_column(col).key)

        for table in mapper.tables:
            for spec in specs_of(table):
                found.append(
                    Plan(
                        spec,
                        key(spec.bound_column),
                        key(spec.hash_column),
                        key(spec.model_column),
                        tuple(key(c) for c in spec.source_columns),
                        key(spec.primary_key),
                    )
                )
        plans = _PLANS[mapper] = tuple(found)
    return plans


def _check_mapper(mapper: Any, class_: Any) -> None:
    for table in mapper.tables:
        for spec in specs_of(table):
            spec.check()
    _PLANS.pop(mapper, None)


# ------------------------------------------------------------------------------ calling a model


def call_embedder(embedder: Any, texts: list[str], dim: int | None) -> np.ndarray:
    """Embed ``texts``; under an async session, await the model instead of blocking the loop."""
    aembed = getattr(embedder, "aembed", None)
    out = run_blocking(embedder.embed, texts, awaitable_factory=(lambda: aembed(texts)) if aembed is not None else None)
    return codec_check(embedder, out, len(texts), dim)


def codec_check(embedder: Any, out: Any, count: int, dim: int | None) -> np.ndarray:
    from .embedders import check_embeddings

    return check_embeddings(embedder, out, count, dim)


@dataclass(slots=True)
class _Job:
    spec: Any  # an EmbeddedColumn, or one seen with another embedder (_SpecWithEmbedder)
    text: str
    hash: str
    target: Any  # an InstanceState, or a parameter dict


def embed_jobs(jobs: list[_Job], batch_size: int | None = None) -> tuple[list[tuple[_Job, np.ndarray | None]], list[tuple[_Job, BaseException]]]:
    """Embed jobs grouped by (embedder, batch size), one call per batch; (done, failed).

    ``batch_size`` overrides the columns' own (a backfill batch is embedded in one call).
    """
    done: list[tuple[_Job, np.ndarray | None]] = []
    failed: list[tuple[_Job, BaseException]] = []
    groups: dict[tuple[int, int], list[_Job]] = {}
    for job in jobs:
        if job.text == "":
            done.append((job, None))  # nothing to embed: no vector, and the row is up to date
            continue
        spec = job.spec
        groups.setdefault((id(spec.embedder), batch_size or spec.batch_size), []).append(job)
    for (_, size), group in groups.items():
        spec = group[0].spec
        for start in range(0, len(group), size):
            chunk = group[start : start + size]
            try:
                matrix = call_embedder(spec.embedder, [j.text for j in chunk], spec.dim)
            except DimensionMismatchError:
                raise  # a misconfiguration, not a model failure: never swallowed
            except Exception as err:  # noqa: BLE001 - a model may raise anything; on_error decides
                failed.extend((j, err) for j in chunk)
                continue
            done.extend(zip(chunk, matrix))
    return done, failed


def handle_failures(failed: list[tuple[_Job, BaseException]], what: str) -> None:
    """Raise :class:`EmbeddingError` if any failed job's column says ``on_error="raise"``; else log."""
    if not failed:
        return
    err = failed[0][1]
    raising = [j for j, _ in failed if j.spec.on_error == "raise"]
    if raising:
        spec = raising[0].spec
        raise EmbeddingError(
            f"Embedder '{spec.embedder.name}' failed on {len(raising)} row(s) of '{spec.qualified_name}' "
            f"during {what} ({type(err).__name__}: {err}); nothing was written."
        ) from err
    log.warning(
        "embedding failed for %d row(s) during %s (%s: %s); they are left stale",
        len(failed),
        what,
        type(err).__name__,
        err,
    )


# ------------------------------------------------------------------------------ flush


#: Flushes of fewer new + dirty objects run with the garbage collector untouched.
_GC_PAUSE_ROWS = 1_000


def _before_flush(session: Session, flush_context: Any, instances: Any) -> None:
    """Embed the flush's new and changed rows.

    A large flush pauses the cyclic garbage collector while the per-row jobs are built: they
    hold no reference cycles, but tens of thousands of them trigger as many young-generation
    passes, and full passes that walk every object of the session (measured ~45 ms per 10,000
    new rows on SQLite). Mercurial's ``util.nogc`` does the same for large containers. Only if the
    collector was on, and it is switched back on afterwards, also when the embedder fails.
    """
    new, dirty = _flush_states(session)
    if len(new) + len(dirty) < _GC_PAUSE_ROWS or not gc.isenabled():
        _embed_flush(new, dirty)
        return
    gc.disable()
    try:
        _embed_flush(new, dirty)
    finally:
        gc.enable()


def _flush_states(session: Session) -> tuple[Sequence[Any], Sequence[Any]]:
    """The instance states of ``session.new`` and ``session.dirty``.

    Read from the session's own collections when it has them (SQLAlchemy 2.0 and 2.1): the
    public ``session.new``/``session.dirty`` build an ``IdentitySet`` each, about 4 µs per flush,
    which was most of the plugin's cost on a flush of one row of a model without vectors.
    """
    pending = getattr(session, "_new", None)
    modified = getattr(session.identity_map, "_modified", None)
    deleted = getattr(session, "_deleted", None)
    if pending is None or modified is None or deleted is None:  # pragma: no cover - other SQLAlchemy internals
        return [instance_state(o) for o in session.new], [instance_state(o) for o in session.dirty]
    return list(pending), [st for st in modified if st not in deleted] if modified else []


def _embed_flush(new: Iterable[Any], dirty: Iterable[Any]) -> None:
    jobs: list[_Job] = []
    for state in new:
        for plan in plans_for(state.mapper):
            job = _new_row(plan, state)
            if job is not None:
                jobs.append(job)
    for state in dirty:
        if state.key is None:
            continue
        for plan in plans_for(state.mapper):
            job = _changed_row(plan, state)
            if job is not None:
                jobs.append(job)
    if not jobs:
        return
    done, failed = embed_jobs(jobs)
    handle_failures(failed, "flush")
    fingerprints: dict[int, str] = {}
    for job, vector in done:
        state, plan = job.target
        fp = fingerprints.get(id(plan))
        if fp is None:
            fp = fingerprints[id(plan)] = plan.spec.fingerprint
        if state.key is None:
            # A pending row is inserted from its instance dict: no attribute events needed.
            d = state.dict
            d[plan.vector_key] = vector
            d[plan.hash_key] = job.hash
            d[plan.model_key] = fp
        else:
            obj = state.obj()
            setattr(obj, plan.vector_key, vector)
            setattr(obj, plan.hash_key, job.hash)
            setattr(obj, plan.model_key, fp)


def _new_row(plan: Plan, state: Any) -> _Job | None:
    d = state.dict
    if d.get(plan.vector_key) is not None:
        return None  # a vector set by hand is kept as given (stale() lists it unless model/hash are set)
    spec = plan.spec
    text, h = spec.text_and_hash([d.get(k) for k in plan.source_keys])
    if text and spec.mode == "deferred":
        return None  # left for backfill / Vectorizer: no model, no hash, so stale()
    return _Job(spec, text, h, (state, plan))


def _changed_row(plan: Plan, state: Any) -> _Job | None:
    attrs = state.attrs
    if attrs[plan.vector_key].history.added:
        return None  # the vector was assigned by hand in this flush
    if not any(attrs[k].history.has_changes() for k in plan.source_keys):
        return None
    obj = state.obj()
    values = [getattr(obj, k) for k in plan.source_keys]  # loads expired/deferred sources if needed
    text, h = plan.spec.text_and_hash(values)
    if getattr(obj, plan.hash_key) == h:
        return None  # same text as stored (same-value assignment)
    if plan.spec.mode == "deferred" and text:
        return None  # the stored hash no longer matches the text: stale() lists the row
    return _Job(plan.spec, text, h, (state, plan))


# ------------------------------------------------------------------------------ bulk statements
#
# A bulk statement reaches the Core connection with column keys: parameter dicts of an INSERT (one
# dict, or a list for executemany) and ``.values()`` are keyed by ``Column.key``, and a bulk
# UPDATE by primary key binds each key under the column's label (``<table>_<key>``), as the ORM's
# flush does. ``before_execute`` adds the vectors of an INSERT (or notes the keys an UPDATE is
# about to change); ``after_execute``, on that connection, embeds those rows from their text as updated.


def _bulk_specs(conn: Connection, elem: Any) -> list[EmbeddedColumn]:
    """The inline embedded columns ``elem`` must fill: an INSERT or UPDATE of their table, run by a
    session as an ORM statement, or as a Core statement other than the session's own flush."""
    if not getattr(elem, "is_dml", False) or not (elem.is_insert or elem.is_update):
        return []  # every statement passes here, SELECTs included: keep this test cheap
    specs = specs_of(getattr(elem, "table", None))
    if not specs:
        return []
    if elem._propagate_attrs.get("compile_state_plugin") != "orm":
        session = _session_of(conn)
        if session is None or getattr(session, "_flushing", False):
            return []  # a Core statement outside a session, or a flush (its rows were embedded before it)
    return [s for s in specs if s.mode == "inline"]


def _key_of(key: Any) -> str:
    return key if isinstance(key, str) else str(getattr(key, "key", None) or getattr(key, "name", key))


def _column_keys(spec: EmbeddedColumn) -> tuple[str, str, str, list[str]]:
    """(vector, hash, model, sources): the keys of the Core parameters and values of ``spec``'s columns."""
    return spec.bound_column.key, spec.hash_column.key, spec.model_column.key, [c.key for c in spec.source_columns]


def _before_execute(conn: Connection, elem: Any, multiparams: Any, params: Any, execution_options: Any) -> tuple[Any, Any, Any]:
    specs = _bulk_specs(conn, elem)
    if not specs:
        return elem, multiparams, params
    rows = list(multiparams) or ([params] if params else [])
    if elem.is_insert:
        return _bulk_insert(elem, multiparams, params, rows, specs)
    _before_update(conn, elem, rows, specs)
    return elem, multiparams, params


def _bulk_insert(elem: Any, multiparams: Any, params: Any, rows: list[Any], specs: list[EmbeddedColumn]) -> tuple[Any, Any, Any]:
    if rows:
        new = [dict() for _ in rows]  # type: list[dict[str, Any]]
        jobs = []
        for spec in specs:
            vk_, hk, mk, sk = _column_keys(spec)
            for row, out in zip(rows, new):
                if row.get(vk_) is not None:
                    continue
                text, h = spec.text_and_hash([row.get(k) for k in sk])
                jobs.append(_Job(spec, text, h, (out, vk_, hk, mk)))
        _fill(jobs, "a bulk INSERT")
        if not any(new):
            return elem, multiparams, params
        # Every row needs the same keys (executemany); rows with a failed or hand-set vector keep theirs.
        keys = {k for d in new for k in d}
        merged = [{**{k: row.get(k) for k in keys}, **row, **out} for row, out in zip(rows, new)]
        return (elem, merged, {}) if multiparams else (elem, [], merged[0])
    set_values: Any = getattr(elem, "_values", None)
    if not set_values or getattr(elem, "_multi_values", None) or getattr(elem, "select", None) is not None:
        return elem, multiparams, params  # multi-row VALUES / INSERT FROM SELECT: rows stay stale, vk.stale() lists them
    given = {_key_of(k): v for k, v in set_values.items()}
    extra: dict[str, Any] = {}
    jobs = []
    for spec in specs:
        vk_, hk, mk, sk = _column_keys(spec)
        if vk_ in given:
            continue
        literal = [given.get(k) for k in sk]
        if not all(v is None or (isinstance(v, BindParameter) and v.callable is None) for v in literal):
            continue  # a SQL expression as source: cannot be read in Python, the row stays stale
        text, h = spec.text_and_hash([None if v is None else v.value for v in literal])
        jobs.append(_Job(spec, text, h, (extra, vk_, hk, mk)))
    _fill(jobs, "an INSERT")
    return (elem.values(extra), multiparams, params) if extra else (elem, multiparams, params)


def _fill(jobs: list[_Job], what: str) -> None:
    """Embed ``jobs`` and write each vector, text hash and model into its target parameter dict."""
    done, failed = embed_jobs(jobs)
    handle_failures(failed, what)
    for job, vector in done:
        out, vk_, hk, mk = job.target
        out.update({vk_: vector, hk: job.hash, mk: job.spec.fingerprint})


#: Per connection: the UPDATE about to run, the embedded columns and keys it changes, and (for an
#: UPDATE with a WHERE clause) the SELECT of the keys it matches.
_PENDING: weakref.WeakKeyDictionary[Connection, tuple[Any, list[EmbeddedColumn], list[Any], Any]] = weakref.WeakKeyDictionary()
#: The session each connection last began a transaction for (whose Core statements count, and
#: whose objects a bulk UPDATE's re-embedding expires).
_SESSIONS: weakref.WeakKeyDictionary[Connection, weakref.ref[Session]] = weakref.WeakKeyDictionary()


def _before_update(conn: Connection, elem: Any, rows: list[Any], specs: list[EmbeddedColumn]) -> None:
    touched = {_key_of(k) for k in (getattr(elem, "_values", None) or {})}
    for row in rows:
        touched.update(row)
    specs = [s for s in specs if touched.intersection(_column_keys(s)[3])]
    if not specs:
        return
    pk = specs[0].primary_key
    label = getattr(pk, "_label", None)
    if rows:  # bulk UPDATE by primary key
        if label not in rows[0]:
            return  # parameters bind the WHERE clause some other way: the rows stay stale, vk.stale() lists them
        _pend(conn, (elem, specs, [row[label] for row in rows if label in row], None))
        return
    where = elem.whereclause
    matched = sa.select(pk) if where is None else sa.select(pk).where(where)
    _pend(conn, (elem, specs, list(conn.execute(matched).scalars()), matched))


def _pend(conn: Connection, pending: tuple[Any, list[EmbeddedColumn], list[Any], Any]) -> None:
    """Note the UPDATE about to run on ``conn``, to be re-embedded by ``_after_execute``.

    That listener goes on this connection alone, the first time it runs such an UPDATE: an
    ``after_execute`` on every engine would cost every statement SQLAlchemy's event path once more.
    """
    _PENDING[conn] = pending
    if not event.contains(conn, "after_execute", _after_execute):
        event.listen(conn, "after_execute", _after_execute)


def _after_execute(conn: Connection, elem: Any, multiparams: Any, params: Any, execution_options: Any, result: Any) -> None:
    pending = _PENDING.get(conn)
    if pending is None or pending[0] is not elem:
        return
    del _PENDING[conn]
    _, specs, pks, matched = pending
    done: list[Any] = []
    for spec in specs:
        if matched is None:
            handle_failures(embed_rows(conn, spec, pks), "a bulk UPDATE")
            done.extend(pks)
            continue
        rows = _stale_after(conn, spec, pks, matched)
        handle_failures(embed_rows(conn, spec, [r[0] for r in rows], rows=rows), "a bulk UPDATE")
        done.extend(r[0] for r in rows)
    session = _session_of(conn)
    mapper = getattr(elem._propagate_attrs.get("plugin_subject"), "mapper", None)
    if session is not None and mapper is not None and done:
        _expire(session, mapper, specs, dict.fromkeys(done))


def _stale_after(conn: Connection, spec: EmbeddedColumn, before: list[Any], matched: Any) -> list[Any]:
    """The rows ``(pk, *sources)`` to re-embed after an UPDATE with a WHERE clause, in key order.

    Those selected before it, and (under READ COMMITTED the UPDATE also changes rows another
    transaction committed after that SELECT) those that match it now; of both, only the rows whose
    vector is out of date with their text, so no row the UPDATE left alone is locked and written,
    and rows are locked in key order, as a flush does. Their text comes with them, for ``embed_rows``.
    """
    from .maintenance import spec_stale_condition

    stale = spec_stale_condition(spec)
    pk = spec.primary_key
    cols = [pk, *spec.source_columns]
    found = {r[0]: r for r in conn.execute(matched.with_only_columns(*cols).where(stale))}
    if before:
        in_before = dialects.for_dialect(conn.dialect).in_values(pk, before)
        found.update((r[0], r) for r in conn.execute(sa.select(*cols).where(in_before).where(stale)))
    return [found[key] for key in sorted(found)]


def _remember_session(session: Session, transaction: Any, connection: Connection) -> None:
    _SESSIONS[connection] = weakref.ref(session)


def _session_of(conn: Connection) -> Session | None:
    ref = _SESSIONS.get(conn)
    return ref() if ref is not None else None


def _expire(session: Session, mapper: Any, specs: list[EmbeddedColumn], pks: Iterable[Any]) -> None:
    plans = [p for p in plans_for(mapper) if p.spec in specs]
    keys = [k for p in plans for k in (p.vector_key, p.hash_key, p.model_key)]
    for pk in pks:
        obj = session.identity_map.get(mapper.identity_key_from_primary_key([pk]))
        if obj is not None:
            session.expire(obj, keys)


_LISTENERS: list[tuple[Any, str, Any, dict[str, Any]]] = [
    (Session, "before_flush", _before_flush, {}),
    (Session, "after_begin", _remember_session, {}),
    (Engine, "before_execute", _before_execute, {"retval": True}),
    (Mapper, "mapper_configured", _check_mapper, {}),
]


# ------------------------------------------------------------------------------ writing rows


_CHUNK = 500


def row_writer(spec: EmbeddedColumn, names: tuple[str, str, str]) -> Any:
    """UPDATE of (vector, model, hash) named ``names`` for one row, guarded by its text's hash.

    The guard (``WHERE pk = :pk AND <SQL source hash> = :h``) makes a write whose text changed
    in the meantime a no-op, so an older text's vector never overwrites a newer one.
    """
    vec_name, model_name, hash_name = names
    light = sa.table(
        spec.table.name,
        sa.column(spec.primary_key.name, spec.primary_key.type),
        *[sa.column(c.name, c.type) for c in spec.source_columns],
        sa.column(vec_name, spec.bound_column.type),
        sa.column(model_name, sa.String(255)),
        sa.column(hash_name, sa.String(64)),
        schema=spec.table.schema,
    )
    c = light.c
    return (
        light.update()
        .where(c[spec.primary_key.name] == sa.bindparam("vk_pk"))
        .where(spec.source_hash_sql([c[n] for n in spec.source]) == sa.bindparam("vk_guard"))
        .values({vec_name: sa.bindparam("vk_vec", type_=spec.bound_column.type), model_name: sa.bindparam("vk_model"), hash_name: sa.bindparam("vk_hash")})
    )


def embed_rows(
    conn: sa.Connection,
    spec: EmbeddedColumn,
    pks: Sequence[Any],
    *,
    embedder: Any = None,
    names: tuple[str, str, str] | None = None,
    rows: Sequence[Sequence[Any]] | None = None,
    batch_size: int | None = None,
) -> list[tuple[_Job, BaseException]]:
    """Embed rows (by primary key) from their current text and write them; return the failures.

    ``rows`` (``(pk, *source values)``) saves the read when the caller has them already.
    ``embedder``/``names`` default to the spec's embedder and columns (``vk.reembed`` passes the
    new model and the shadow columns).
    """
    embedder = embedder if embedder is not None else spec.embedder
    names = names or (spec.bound_column.name, spec.model_column_name, spec.hash_column_name)
    fp = fingerprint_of(embedder, spec)
    if rows is None:
        rows = []
        cols = [spec.primary_key, *spec.source_columns]
        for start in range(0, len(pks), _CHUNK):
            chunk = list(pks[start : start + _CHUNK])
            rows.extend(conn.execute(sa.select(*cols).where(spec.primary_key.in_(chunk))).all())
    view = _SpecWithEmbedder(spec, embedder)
    jobs = []
    for r in rows:
        text, digest = view.text_and_hash(list(r[1:]))
        jobs.append(_Job(view, text, digest, r[0]))
    done, failed = embed_jobs(jobs, batch_size)
    if done:
        conn.execute(
            row_writer(spec, names),
            [
                {"vk_pk": job.target, "vk_guard": job.hash, "vk_vec": vector, "vk_model": fp, "vk_hash": job.hash}
                for job, vector in done
            ],
        )
    return failed


def fingerprint_of(embedder: Any, spec: EmbeddedColumn) -> str:
    from .column import fingerprint

    return fingerprint(embedder, spec.template)


class _SpecWithEmbedder:
    """A spec seen with another embedder (a model switch), for ``embed_jobs``."""

    def __init__(self, spec: EmbeddedColumn, embedder: Any) -> None:
        self._spec = spec
        self.embedder = embedder

    def __getattr__(self, name: str) -> Any:
        return getattr(self._spec, name)

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(self.embedder, self._spec)
