"""``vk.rebuild``: refill a mirror from its table in a new generation, replay the outbox, and swap it in.

::

    with Session() as session:
        vk.rebuild(session, faiss)      # searches keep using the old index until the swap

For a mirror that supports generations (every built-in one: memory, Faiss, Chroma, Elasticsearch)
the steps are:

1. **New generation.** The mirror creates empty storage beside the live one (Faiss: a new index
   in memory; Chroma: collection ``<name>_vk_rebuild``; Elasticsearch: index ``<alias>_g<n+1>``
   with no replicas and no periodic refresh; memory: new dicts). From now on the mirror remembers
   the id of every write it receives. Searches and writes keep using the live storage.
2. **Copy from SQL.** Primary keys are read in keyset batches; for each batch the live mirror's
   recorded versions are read *first*, then the rows, and the rows are written to the new
   generation carrying those versions (applied when at least the recorded one). Reading the
   versions before the rows means the data is never older than the version it carries. The ids
   that only have a tombstone in the live mirror are copied the same way, so the new generation
   still refuses older writes that arrive late.
3. **Replay the outbox.** When ``vk_outbox`` exists, pending rows of this mirror are drained (into
   the live mirror, so their ids are remembered).
4. **Catch up.** The ids written to the live mirror meanwhile are copied again (step 2's way)
   until few are left.
5. **Swap.** Under the mirror's lock the last ids are copied and the new generation replaces the
   live one (Faiss saves it atomically; Chroma renames collections; Elasticsearch moves the alias
   and deletes the old index in one ``_aliases`` request).

Writes made by *other processes* straight to the backend during a rebuild (another process draining
into the same Chroma collection or Elasticsearch alias) are not remembered; their outbox rows are
gone once applied, so run such drainers in the rebuilding process or pause them, and run
:func:`~sqlalchemy_vectorknobs.verify` afterwards. A mirror whose ``begin_generation`` returns None
(or that has none, such as a third-party mirror) is rebuilt in place: cleared, then reloaded.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa

from .._blocking import run_blocking
from ._apply import check_mirrors, plan_writes, read_rows, write
from .outbox import OUTBOX_TABLE, drain
from .verify import _batches, _check_batch_size, _connection, _progress

__all__ = ["rebuild"]

log = logging.getLogger("sqlalchemy_vectorknobs.sync")

#: Catch-up rounds before the swap (the last round runs under the mirror's lock).
CATCH_UP_ROUNDS = 5


def rebuild(
    session: Any,
    mirror: Any,
    *,
    batch_size: int = 1000,
    progress: bool = True,
    replay_outbox: bool | None = None,
) -> int:
    """Refill ``mirror`` from its table and return how many vectors it holds from the copy.

    See the module docstring for the steps. Rows are streamed in primary-key order,
    ``batch_size`` at a time, with a tqdm progress bar. ``replay_outbox`` drains this mirror's
    pending outbox rows before the swap (default: when the outbox table exists). With an
    ``AsyncSession`` call it through ``await session.run_sync(vk.rebuild, mirror)``::

        with Session() as session:
            n = vk.rebuild(session, faiss, batch_size=5000)
    """
    (mirror,) = check_mirrors([mirror], "vk.rebuild")
    _check_batch_size("vk.rebuild", batch_size)
    conn = _connection(session)
    begin = getattr(mirror, "begin_generation", None)
    generation = run_blocking(begin) if callable(begin) else None
    if generation is None:
        return _rebuild_in_place(conn, mirror, batch_size, progress)
    bar = _progress(conn, mirror, progress, f"rebuild {mirror.name}")
    loaded = 0
    try:
        for pks in _key_pages(conn, mirror, batch_size):
            loaded += _copy(conn, mirror, generation, pks)
            bar.update(len(pks))
        for pks in _chunks(run_blocking(mirror.tombstone_ids), batch_size):
            _copy(conn, mirror, generation, pks)
        if replay_outbox is None:
            replay_outbox = sa.inspect(conn).has_table(OUTBOX_TABLE)
        if replay_outbox:
            report = drain(conn.engine, [mirror], batch_size=max(batch_size, 1))
            if not report.ok:
                log.warning("rebuild of mirror %s: the outbox replay left rows for later: %s", mirror.name, report)
        swapped = False
        for _ in range(CATCH_UP_ROUNDS):
            for pks in _chunks(run_blocking(mirror.written_since), batch_size):
                _copy(conn, mirror, generation, pks)
            swapped = run_blocking(lambda: mirror.end_generation(generation, swap=True))
            if swapped:
                break
    except BaseException:
        run_blocking(lambda: mirror.end_generation(generation, swap=False))
        raise
    finally:
        bar.close()
    if not swapped:
        # Writes keep coming: copy the last ones and swap while holding the mirror's lock. This
        # runs in the calling thread (under an AsyncSession it briefly blocks the event loop),
        # because the SQL read must run where the session's connection lives.
        def catch_up(ids: list[Any]) -> None:
            for pks in _chunks(ids, batch_size):
                _copy(conn, mirror, generation, pks, direct=True)

        mirror.end_generation(generation, swap=True, catch_up=catch_up)
    log.info("rebuilt mirror %s in a new generation: %d vector(s)", mirror.name, loaded)
    return loaded


def _copy(conn: sa.Connection, mirror: Any, generation: Any, pks: Sequence[Any], *, direct: bool = False) -> int:
    """Copy the rows of ``pks`` into ``generation`` with the live mirror's versions; return the upserts.

    ``direct``: call the mirrors in this thread (the caller holds the mirror's lock).
    """
    if not pks:
        return 0
    call = _direct if direct else run_blocking
    versions = call(mirror.recorded_versions, list(pks))  # before the rows: see step 2
    rows = read_rows(conn, [mirror], pks)
    plan = plan_writes(mirror, pks, rows)
    upserts = (plan.upsert_ids, plan.vectors, plan.metadata, [versions.get(pk) for pk in plan.upsert_ids])
    deletes = (plan.delete_ids, [versions.get(pk) for pk in plan.delete_ids])
    call(generation.write_generation, upserts, deletes)
    return len(plan.upsert_ids)


def _direct(fn: Any, *args: Any) -> Any:
    return fn(*args)


def _key_pages(conn: sa.Connection, mirror: Any, batch_size: int) -> Iterator[list[Any]]:
    pk = mirror.pk_column
    last: Any = None
    while True:
        q = sa.select(pk).order_by(pk).limit(batch_size)
        if last is not None:
            q = q.where(pk > last)
        keys = list(conn.execute(q).scalars())
        if not keys:
            return
        last = keys[-1]
        yield keys


def _chunks(items: Sequence[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _rebuild_in_place(conn: sa.Connection, mirror: Any, batch_size: int, progress: bool) -> int:
    """Clear ``mirror`` and reload every row with a vector (mirrors without generations)."""
    bar = _progress(conn, mirror, progress, f"rebuild {mirror.name}")
    loaded = 0
    try:
        run_blocking(mirror.clear)
        for rows in _batches(conn, mirror, batch_size):
            by_pk = {row[mirror.pk_column.name]: row for row in rows}
            plan = plan_writes(mirror, by_pk, by_pk)
            if plan.upsert_ids:
                plan.delete_ids = []  # the mirror was cleared: rows without a vector are simply absent
                write(mirror, plan)
            loaded += len(plan.upsert_ids)
            bar.update(len(rows))
    finally:
        bar.close()
    log.info("rebuilt mirror %s in place: %d vector(s)", mirror.name, loaded)
    return loaded
