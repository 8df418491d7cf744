"""Finding and fixing stale vectors: ``stale``, ``backfill``, ``reembed`` and the ``Vectorizer``.

A row is *stale* when its vector is missing, was made by another model (fingerprint in
``<column>_model``), or no longer matches its text (``<column>_hash`` differs from the hash the
database computes from the current source columns). The last test is done in SQL, so rows
changed by raw SQL behind the ORM's back are found too::

    session.scalars(vk.stale(Doc)).all()          # what is out of date
    vk.backfill(session, Doc, batch_size=256)     # fix it, committing per batch
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from .._progress import progress_bar
from ..codec import EMPTY_SOURCE_HASH
from ..exc import DimensionMismatchError, EmbeddingError
from .column import EmbeddedColumn, EmbeddingConfigError, fingerprint, specs_of
from .embedders import resolve_embedder
from .listener import embed_rows


def record_writes(session: Session, table: sa.Table, pks: list[Any]) -> None:
    """Tell attached mirrors (``vk.attach``) about vectors written with Core UPDATEs in ``session``."""
    from ..sync.attach import record_writes as record  # sync imports embedding: import when used

    record(session, table, pks)

__all__ = [
    "BackfillReport",
    "BatchFailure",
    "ReembedJob",
    "Vectorizer",
    "abackfill",
    "backfill",
    "reembed",
    "stale",
    "stale_condition",
]

log = logging.getLogger("sqlalchemy_vectorknobs.embedding")


def _specs(target: Any) -> tuple[Any, list[EmbeddedColumn]]:
    """(entity or table, embedded columns) for a model class, a table or one embedded attribute."""
    prop = getattr(target, "property", None)
    if prop is not None and hasattr(prop, "columns"):  # Doc.embedding
        col = prop.columns[0]
        found = [s for s in specs_of(col.table) if s.column is col]
        if not found:
            raise EmbeddingConfigError(f"Column '{col.table.name}.{col.name}' is not an embedded_column.")
        return target.class_, found
    table = getattr(target, "__table__", target)
    found = specs_of(table)
    if not found:
        name = getattr(target, "__name__", getattr(table, "name", repr(target)))
        raise EmbeddingConfigError(f"{name} has no embedded_column.")
    return target, found


def _names(spec: EmbeddedColumn) -> tuple[str, str, str]:
    return spec.bound_column.name, spec.model_column_name, spec.hash_column_name


def _condition(spec: EmbeddedColumn, names: tuple[str, str, str], fp: str) -> sa.ColumnElement[bool]:
    """Rows whose (vector, model, hash) columns ``names`` are not the current ``fp`` + text."""
    t = spec.table
    vec, model, hsh = (t.c[n] if n in t.c else sa.column(n) for n in names)
    return sa.or_(
        model.is_distinct_from(fp),
        hsh.is_distinct_from(spec.source_hash_sql()),
        sa.and_(vec.is_(None), hsh != EMPTY_SOURCE_HASH),
    )


def spec_stale_condition(spec: EmbeddedColumn) -> sa.ColumnElement[bool]:
    """The rows of ``spec``'s table whose ``spec`` vector is out of date (one embedded column)."""
    return _condition(spec, _names(spec), spec.fingerprint)


def stale_condition(target: Any) -> sa.ColumnElement[bool]:
    """The WHERE clause of :func:`stale`, to combine with your own criteria."""
    return _any_stale(_specs(target)[1])


def _any_stale(specs: Sequence[EmbeddedColumn]) -> sa.ColumnElement[bool]:
    return sa.or_(*(spec_stale_condition(s) for s in specs))


def stale(target: Any) -> sa.Select[Any]:
    """``SELECT`` of the rows of ``target`` (a model, or ``Model.column``) whose vector is out of date.

    Out of date means: missing while there is text, made by another model or template, or made
    from other text than the row holds now (checked in SQL, so raw SQL updates are caught).
    """
    entity, specs = _specs(target)
    return sa.select(entity).where(_any_stale(specs))


# ------------------------------------------------------------------------------------ backfill


@dataclass
class BatchFailure:
    """One batch that could not be embedded: its key range and the error."""

    column: str
    first_key: Any
    last_key: Any
    rows: int
    error: str


@dataclass
class BackfillReport:
    """What a backfill did: rows embedded, batches committed, and the batches that failed."""

    embedded: int = 0
    batches: int = 0
    failures: list[BatchFailure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def _keyset_batches(
    session: Session,
    spec: EmbeddedColumn,
    condition: sa.ColumnElement[bool],
    batch_size: int,
    *,
    exclude: Callable[[], Sequence[Any]] = lambda: (),
) -> Any:
    """Yield lists of ``(pk, *sources)`` rows matching ``condition``, in primary-key order.

    Each batch is read after the previous one was handled, so the caller may commit in between;
    resuming after an interruption simply starts over: finished rows no longer match.
    """
    pk = spec.primary_key
    cols = [pk, *spec.source_columns]
    last: Any = None
    while True:
        q = sa.select(*cols).where(condition).order_by(pk).limit(batch_size)
        if last is not None:
            q = q.where(pk > last)
        skip = list(exclude())
        if skip:
            q = q.where(pk.not_in(skip))
        rows = session.connection().execute(q).all()
        if not rows:
            return
        last = rows[-1][0]
        yield rows


def _run(
    session: Session,
    spec: EmbeddedColumn,
    embedder: Any,
    names: tuple[str, str, str],
    *,
    batch_size: int,
    progress: bool,
    desc: str,
    commit: bool,
    report: BackfillReport,
) -> None:
    condition = _condition(spec, names, fingerprint(embedder, spec.template))
    total = 0
    if progress:
        total = session.connection().execute(sa.select(sa.func.count()).where(condition).select_from(spec.table)).scalar_one()
    bar = progress_bar(total, progress, desc)
    try:
        for rows in _keyset_batches(session, spec, condition, batch_size):
            try:
                failed = embed_rows(
                    session.connection(), spec, [], embedder=embedder, names=names, rows=rows, batch_size=batch_size
                )
                if failed:
                    raise failed[0][1]
                record_writes(session, spec.table, [r[0] for r in rows])
                if commit:
                    session.commit()
            except DimensionMismatchError:
                raise
            except Exception as err:
                if commit:
                    session.rollback()
                else:
                    raise
                report.failures.append(BatchFailure(spec.qualified_name, rows[0][0], rows[-1][0], len(rows), f"{type(err).__name__}: {err}"))
                log.warning("backfill of %s: batch %r..%r failed: %s", spec.qualified_name, rows[0][0], rows[-1][0], err)
            else:
                report.embedded += len(rows)
                report.batches += 1
            bar.update(len(rows))
    finally:
        bar.close()


def backfill(
    session: Session,
    target: Any,
    *,
    batch_size: int | None = None,
    progress: bool = True,
) -> BackfillReport:
    """Embed every stale row of ``target`` (a model or ``Model.column``) in keyset batches.

    Each batch is read in primary-key order, embedded in one call, written and committed, so an
    interrupted run resumes where it stopped (finished rows are no longer stale). A failing
    batch is rolled back, recorded in the report and skipped; the rest go on. A write is guarded
    by the hash of the text it was made from, so a row edited meanwhile stays stale instead of
    getting an outdated vector. ``progress`` shows a tqdm bar.
    """
    _, specs = _specs(target)
    report = BackfillReport()
    if session.in_transaction():
        session.commit()  # per-batch commits: start from a clean transaction, as the docs say
    for spec in specs:
        _run(
            session,
            spec,
            spec.embedder,
            _names(spec),
            batch_size=batch_size or spec.batch_size,
            progress=progress,
            desc=f"backfill {spec.qualified_name}",
            commit=True,
            report=report,
        )
    return report


async def abackfill(session: Any, target: Any, **kw: Any) -> BackfillReport:
    """:func:`backfill` for an ``AsyncSession`` (the embedder is awaited off the event loop)."""
    result: BackfillReport = await session.run_sync(lambda s: backfill(s, target, **kw))
    return result


# ------------------------------------------------------------------------------------ reembed


class ReembedJob:
    """A model switch in progress: new vectors in shadow columns, swapped in one transaction.

    The shadow columns are ``<column>__shadow``, ``<column>__shadow_model`` and
    ``<column>__shadow_hash``. :meth:`swap` exchanges them with the live columns, so after a swap
    they hold the previous model's vectors and :meth:`restore` swaps back. :meth:`finish` drops
    them once the new model is confirmed.
    """

    def __init__(self, session: Session, spec: EmbeddedColumn, embedder: Any) -> None:
        self.session = session
        self.spec = spec
        self.embedder = embedder
        self.previous_embedder = spec.embedder
        self.swapped = False
        self.report = BackfillReport()
        base = spec.bound_column.name
        self.shadow_names = (f"{base}__shadow", f"{base}__shadow_model", f"{base}__shadow_hash")

    def _ddl(self, statements: list[str]) -> None:
        conn = self.session.connection()
        for sql in statements:
            conn.exec_driver_sql(sql)
        self.session.commit()

    def prepare(self) -> None:
        """Add the shadow columns if they do not exist (nullable, so no table rewrite)."""
        conn = self.session.connection()
        spec = self.spec
        have = {c["name"] for c in sa.inspect(conn).get_columns(spec.table.name, schema=spec.table.schema)}
        q = conn.dialect.identifier_preparer
        types = (spec.bound_column.type, sa.String(255), sa.String(64))
        self._ddl(
            [
                f"ALTER TABLE {q.format_table(spec.table)} ADD COLUMN {q.quote(name)} {type_.compile(dialect=conn.dialect)}"
                for name, type_ in zip(self.shadow_names, types)
                if name not in have
            ]
        )

    def fill(self, *, batch_size: int | None = None, progress: bool = True) -> BackfillReport:
        """Embed every row whose shadow vector is missing or out of date, committing per batch."""
        _run(
            self.session,
            self.spec,
            self.embedder,
            self.shadow_names,
            batch_size=batch_size or self.spec.batch_size,
            progress=progress,
            desc=f"reembed {self.spec.qualified_name}",
            commit=True,
            report=self.report,
        )
        return self.report

    def _exchange(self) -> None:
        spec = self.spec
        live, shadow = _names(spec), self.shadow_names
        light = sa.table(spec.table.name, *[sa.column(n) for n in live + shadow], schema=spec.table.schema)
        values = {a: light.c[b] for a, b in zip(live, shadow)}
        values.update({b: light.c[a] for a, b in zip(live, shadow)})
        self.session.connection().execute(light.update().values(values))

    def swap(self) -> None:
        """In one transaction: catch up rows edited since :meth:`fill`, then exchange the columns."""
        if self.swapped:
            raise EmbeddingError(f"The re-embedding of '{self.spec.qualified_name}' is already swapped in.")
        report = BackfillReport()
        _run(self.session, self.spec, self.embedder, self.shadow_names, batch_size=self.spec.batch_size,
             progress=False, desc="", commit=False, report=report)
        self._exchange()
        self.session.commit()
        self.spec.embedder = self.embedder
        self.swapped = True

    def restore(self) -> None:
        """Swap the previous model's vectors back (rows edited since the swap become stale)."""
        if not self.swapped:
            raise EmbeddingError(f"The re-embedding of '{self.spec.qualified_name}' was not swapped in; nothing to restore.")
        self._exchange()
        self.session.commit()
        self.spec.embedder = self.previous_embedder
        self.swapped = False

    def finish(self) -> None:
        """Drop the shadow columns: the switch is final."""
        conn = self.session.connection()
        q = conn.dialect.identifier_preparer
        self._ddl([f"ALTER TABLE {q.format_table(self.spec.table)} DROP COLUMN {q.quote(n)}" for n in self.shadow_names])


def reembed(
    session: Session,
    target: Any,
    embedder: Any,
    *,
    batch_size: int | None = None,
    progress: bool = True,
    swap: bool = True,
) -> ReembedJob:
    """Switch ``target``'s embedded column to ``embedder`` without a moment of missing vectors.

    New vectors are written to shadow columns in committed batches while queries keep using the
    old ones; then (``swap=True``) one transaction catches up edited rows and exchanges old and
    new. The returned :class:`ReembedJob` can :meth:`~ReembedJob.restore` the old vectors until
    :meth:`~ReembedJob.finish` drops the shadow columns. The new model must have the column's
    dimension (a different dimension is a new column: add it with a migration and backfill it).
    Other processes keep embedding with the declared model until they are redeployed with the
    new one; rows they write meanwhile show up in ``vk.stale()``.
    """
    _, specs = _specs(target)
    if len(specs) != 1:
        raise EmbeddingConfigError("reembed needs one embedded column: pass Model.column when a model has several.")
    spec = specs[0]
    new = resolve_embedder(embedder)
    if new.dim is not None and spec.dim is not None and new.dim != spec.dim:
        raise DimensionMismatchError(
            f"Embedder '{new.name}' produces {new.dim} dimensions but '{spec.qualified_name}' holds {spec.dim}; "
            "a different dimension needs a new column (add it with a migration, then backfill)."
        )
    if session.in_transaction():
        session.commit()
    job = ReembedJob(session, spec, new)
    job.prepare()
    job.fill(batch_size=batch_size, progress=progress)
    if job.report.failures:
        f = job.report.failures[0]
        raise EmbeddingError(
            f"Re-embedding '{spec.qualified_name}' failed on {len(job.report.failures)} batch(es) (first: {f.error}); "
            "the live vectors are untouched, run reembed again to resume."
        )
    if swap:
        job.swap()
    return job


# ------------------------------------------------------------------------------------ vectorizer


class Vectorizer:
    """Embeds stale rows as they appear: the worker behind ``mode="deferred"``.

    ``run_once()`` makes one pass over the stale rows (keyset batches, a commit per batch);
    ``run()`` repeats it, sleeping ``poll_interval`` when idle; ``start()`` does that in a daemon
    thread and ``stop()`` ends it. A failed batch is retried row by row to find the failing rows;
    each failing row is retried with exponential backoff and, after ``max_attempts``, recorded in
    :attr:`errors` (primary key → message) and left alone until :meth:`clear_errors`.
    """

    def __init__(
        self,
        session_factory: Callable[[], Session],
        target: Any,
        *,
        batch_size: int | None = None,
        poll_interval: float = 1.0,
        max_attempts: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 60.0,
    ) -> None:
        _, self.specs = _specs(target)
        self.session_factory = session_factory
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.errors: dict[Any, str] = {}
        self.embedded = 0
        self._attempts: dict[Any, int] = {}
        self._retry_at: dict[Any, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _excluded(self) -> list[Any]:
        now = time.monotonic()
        return list(self.errors) + [pk for pk, at in self._retry_at.items() if at > now]

    def _failed(self, pk: Any, err: BaseException) -> None:
        n = self._attempts.get(pk, 0) + 1
        self._attempts[pk] = n
        if n >= self.max_attempts:
            self.errors[pk] = f"{type(err).__name__}: {err}"
            self._retry_at.pop(pk, None)
            log.error("vectorizer: giving up on row %r after %d attempts: %s", pk, n, err)
        else:
            self._retry_at[pk] = time.monotonic() + min(self.max_backoff, self.backoff * 2 ** (n - 1))

    def run_once(self) -> int:
        """One pass over the rows stale now; returns how many were embedded."""
        done = 0
        with self.session_factory() as session:
            for spec in self.specs:
                cond = _condition(spec, _names(spec), spec.fingerprint)
                for rows in _keyset_batches(session, spec, cond, self.batch_size or spec.batch_size, exclude=self._excluded):
                    failed = embed_rows(session.connection(), spec, [], rows=rows, batch_size=len(rows))
                    if not failed:
                        record_writes(session, spec.table, [r[0] for r in rows])
                        session.commit()
                        done += len(rows)
                        for r in rows:
                            self._attempts.pop(r[0], None)
                            self._retry_at.pop(r[0], None)
                        continue
                    session.rollback()
                    for r in rows:  # isolate the failing rows
                        one = embed_rows(session.connection(), spec, [], rows=[r])
                        if one:
                            session.rollback()
                            self._failed(r[0], one[0][1])
                        else:
                            record_writes(session, spec.table, [r[0]])
                            session.commit()
                            done += 1
        self.embedded += done
        return done

    def run(self, *, until_idle: bool = False) -> None:
        """Loop until :meth:`stop` (or, with ``until_idle``, until a pass finds nothing to do)."""
        while not self._stop.is_set():
            try:
                n = self.run_once()
            except Exception as err:  # noqa: BLE001 - e.g. the database restarting: back off, go on
                log.warning("vectorizer pass failed: %s", err)
                n = 0
            if n == 0:
                if until_idle:
                    return
                self._stop.wait(self.poll_interval)

    def start(self) -> Vectorizer:
        """Run in a daemon thread; returns self."""
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name="vectorknobs-vectorizer", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Ask the thread to stop and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def clear_errors(self) -> None:
        """Forget recorded failures so those rows are tried again."""
        self.errors.clear()
        self._attempts.clear()
        self._retry_at.clear()

