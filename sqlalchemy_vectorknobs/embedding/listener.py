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

Under an ``AsyncSession`` the flush runs in SQLAlchemy's greenlet; the embedder is then awaited
on the event loop (``aembed`` if it has one, else ``embed`` in a worker thread), so the loop is
never blocked by a model.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Mapper, ORMExecuteState, Session
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.sql.elements import BindParameter

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
    event.listen(Session, "before_flush", _before_flush)
    event.listen(Session, "do_orm_execute", _do_orm_execute)
    event.listen(Mapper, "mapper_configured", _check_mapper)
    _installed = True


def uninstall() -> None:
    """Detach the listeners again (embedded columns then stop syncing until :func:`install`)."""
    global _installed
    if not _installed:
        return
    event.remove(Session, "before_flush", _before_flush)
    event.remove(Session, "do_orm_execute", _do_orm_execute)
    event.remove(Mapper, "mapper_configured", _check_mapper)
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
    new, dirty = session.new, session.dirty  # each builds a set: once per flush
    if len(new) + len(dirty) < _GC_PAUSE_ROWS or not gc.isenabled():
        _embed_flush(new, dirty)
        return
    gc.disable()
    try:
        _embed_flush(new, dirty)
    finally:
        gc.enable()


def _embed_flush(new: Iterable[Any], dirty: Iterable[Any]) -> None:
    jobs: list[_Job] = []
    for obj in new:
        state = instance_state(obj)
        for plan in plans_for(state.mapper):
            job = _new_row(plan, state)
            if job is not None:
                jobs.append(job)
    for obj in dirty:
        state = instance_state(obj)
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


def _statement_specs(orm_state: ORMExecuteState) -> tuple[Any, list[EmbeddedColumn]]:
    table = getattr(orm_state.statement, "table", None)
    specs = [s for s in specs_of(table) if s.mode == "inline"] if table is not None else []
    return table, specs


def _key_of(key: Any) -> str:
    return key if isinstance(key, str) else str(getattr(key, "key", None) or getattr(key, "name", key))


def _do_orm_execute(orm_state: ORMExecuteState) -> Any:
    if not orm_state.statement.is_dml:  # every SELECT passes here: keep this test cheap
        return None
    if not (orm_state.is_insert or orm_state.is_update):
        return None
    table, specs = _statement_specs(orm_state)
    if not specs:
        return None
    if orm_state.is_insert:
        return _bulk_insert(orm_state, specs)
    return _bulk_update(orm_state, specs)


def _param_keys(spec: EmbeddedColumn, mapper: Any) -> tuple[str, str, str, list[str]]:
    """(vector, hash, model, sources) keys of parameter dicts: attribute keys under the ORM."""
    if mapper is not None:
        plan = next(p for p in plans_for(mapper) if p.spec is spec)
        return plan.vector_key, plan.hash_key, plan.model_key, list(plan.source_keys)
    return spec.bound_column.key, spec.hash_column.key, spec.model_column.key, [c.key for c in spec.source_columns]


def _bulk_insert(orm_state: ORMExecuteState, specs: list[EmbeddedColumn]) -> Any:
    stmt: Any = orm_state.statement
    mapper = orm_state.bind_mapper
    params: Any = orm_state.parameters
    if params:
        rows = params if isinstance(params, list) else [params]
        new = [dict() for _ in rows]  # type: list[dict[str, Any]]
        jobs = []
        for spec in specs:
            vk_, hk, mk, sk = _param_keys(spec, mapper)
            for row, out in zip(rows, new):
                if row.get(vk_) is not None:
                    continue
                text, h = spec.text_and_hash([row.get(k) for k in sk])
                jobs.append(_Job(spec, text, h, (out, vk_, hk, mk)))
        done, failed = embed_jobs(jobs)
        handle_failures(failed, "a bulk INSERT")
        for job, vector in done:
            out, vk_, hk, mk = job.target
            out.update({vk_: vector, hk: job.hash, mk: job.spec.fingerprint})
        if not any(new):
            return None
        # Every row needs the same keys (executemany); rows with a failed or hand-set vector keep theirs.
        keys = {k for d in new for k in d}
        merged = [{**{k: row.get(k) for k in keys}, **out} for row, out in zip(rows, new)]
        return orm_state.invoke_statement(params=merged if isinstance(params, list) else merged[0])
    set_values: Any = getattr(stmt, "_values", None)
    if not set_values or getattr(stmt, "_multi_values", None) or getattr(stmt, "select", None) is not None:
        return None  # multi-row VALUES / INSERT FROM SELECT: rows stay stale, vk.stale() lists them
    given = {_key_of(k): v for k, v in set_values.items()}
    extra: dict[str, Any] = {}
    jobs = []
    for spec in specs:
        vk_, hk, mk, sk = _param_keys(spec, None)
        if vk_ in given:
            continue
        literal = [given.get(k) for k in sk]
        if not all(v is None or (isinstance(v, BindParameter) and v.callable is None) for v in literal):
            continue  # a SQL expression as source: cannot be read in Python, the row stays stale
        text, h = spec.text_and_hash([None if v is None else v.value for v in literal])
        jobs.append(_Job(spec, text, h, (extra, vk_, hk, mk)))
    done, failed = embed_jobs(jobs)
    handle_failures(failed, "an INSERT")
    for job, vector in done:
        out, vk_, hk, mk = job.target
        out.update({vk_: vector, hk: job.hash, mk: job.spec.fingerprint})
    if not extra:
        return None
    return orm_state.invoke_statement(statement=stmt.values(**extra))


def _bulk_update(orm_state: ORMExecuteState, specs: list[EmbeddedColumn]) -> Any:
    stmt: Any = orm_state.statement
    mapper = orm_state.bind_mapper
    params: Any = orm_state.parameters
    touched = {_key_of(k) for k in (getattr(stmt, "_values", None) or {})}
    rows = params if isinstance(params, list) else ([params] if params else [])
    for row in rows:
        touched.update(row)
    specs = [s for s in specs if touched & set(_param_keys(s, mapper)[3])]
    if not specs:
        return None
    session = orm_state.session
    conn = session.connection(bind_arguments=orm_state.bind_arguments)
    pk = specs[0].primary_key
    if orm_state.is_executemany or (rows and getattr(stmt, "whereclause", None) is None):
        pk_key = _param_keys_pk(specs[0], mapper)
        pks = [row[pk_key] for row in rows if pk_key in row]
    else:
        where = stmt.whereclause
        sel = sa.select(pk) if where is None else sa.select(pk).where(where)
        pks = list(conn.execute(sel).scalars())
    result = orm_state.invoke_statement()
    for spec in specs:
        failed = embed_rows(conn, spec, pks)
        handle_failures(failed, "a bulk UPDATE")
    if mapper is not None and pks:
        _expire(session, mapper, specs, pks)
    return result


def _param_keys_pk(spec: EmbeddedColumn, mapper: Any) -> str:
    if mapper is not None:
        return str(mapper.get_property_by_column(spec.primary_key).key)
    return str(spec.primary_key.key)


def _expire(session: Session, mapper: Any, specs: list[EmbeddedColumn], pks: Iterable[Any]) -> None:
    plans = [p for p in plans_for(mapper) if p.spec in specs]
    keys = [k for p in plans for k in (p.vector_key, p.hash_key, p.model_key)]
    for pk in pks:
        obj = session.identity_map.get(mapper.identity_key_from_primary_key([pk]))
        if obj is not None:
            session.expire(obj, keys)


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
