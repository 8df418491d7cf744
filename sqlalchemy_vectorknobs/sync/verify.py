"""``vk.verify`` finds where a mirror and its table disagree (``vk.rebuild``, in :mod:`.rebuild`, refills a mirror).

Session sync captures what goes through the ORM; raw SQL, other programs, database cascades and
lost non-outbox applies are not. These two close the gap::

    report = vk.verify(session, mirror)
    if not report.ok:
        print(report)             # mirror 'faiss:doc.embedding': 2 missing, 1 extra, 1 mismatched
        vk.verify(session, mirror, repair=True)   # rewrite just those rows
        # or: vk.rebuild(session, mirror)         # rebuild everything in a new generation

Both read the table in primary-key order in keyset batches (``WHERE pk > last ORDER BY pk LIMIT
n``) through the session's connection. With an ``AsyncSession`` call them through ``run_sync``::

    report = await session.run_sync(vk.verify, mirror)
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sqlalchemy as sa

from .._blocking import run_blocking
from .._progress import progress_bar
from ..exc import InvalidMirrorError
from ..mirrors.base import _scalar
from ._apply import check_mirrors, plan_writes, read_rows, write

__all__ = ["DriftReport", "verify"]

log = logging.getLogger("sqlalchemy_vectorknobs.sync")

#: Largest element-wise difference between the SQL vector and the mirror's that still counts as equal.
TOLERANCE = 1e-5


def _sorted(keys: set[Any]) -> list[Any]:
    try:
        return sorted(keys)
    except TypeError:
        return list(keys)


@dataclass
class DriftReport:
    """Where ``mirror`` and its table disagree (primary keys, sorted).

    ``missing``: rows with a vector in SQL that the mirror lacks. ``extra``: ids the mirror holds
    whose row is gone or has no vector. ``mismatched``: the vector differs by more than the
    tolerance, or (when ``metadata_checked``) a metadata column differs. ``repaired`` is True when
    ``verify(repair=True)`` rewrote those rows.
    """

    mirror: str
    missing: list[Any] = field(default_factory=list)
    extra: list[Any] = field(default_factory=list)
    mismatched: list[Any] = field(default_factory=list)
    checked: int = 0
    metadata_checked: bool = True
    repaired: bool = False

    @property
    def ok(self) -> bool:
        """True when the mirror holds exactly the table's vectors."""
        return not (self.missing or self.extra or self.mismatched)

    def __str__(self) -> str:
        state = "in step" if self.ok else "drifted"
        text = (
            f"mirror '{self.mirror}' {state}: {self.checked} row(s) checked, {len(self.missing)} missing, "
            f"{len(self.extra)} extra, {len(self.mismatched)} mismatched"
        )
        return text + (" (repaired)" if self.repaired else "")


def _connection(session: Any) -> sa.Connection:
    if hasattr(session, "sync_session"):
        raise InvalidMirrorError(
            "vk.verify and vk.rebuild take a synchronous Session; with an AsyncSession call "
            "`await session.run_sync(vk.verify, mirror)`."
        )
    conn = session.connection() if callable(getattr(session, "connection", None)) else session
    if not isinstance(conn, sa.Connection):
        raise InvalidMirrorError(f"vk.verify and vk.rebuild need a Session or Connection, got {type(session).__name__}.")
    return conn


def _columns(mirror: Any) -> list[sa.Column[Any]]:
    return [mirror.pk_column, mirror.column, *(mirror.table.c[n] for n in mirror.metadata_columns)]


def _batches(conn: sa.Connection, mirror: Any, batch_size: int) -> Iterator[list[Any]]:
    pk = mirror.pk_column
    last: Any = None
    while True:
        q = sa.select(*_columns(mirror)).order_by(pk).limit(batch_size)
        if last is not None:
            q = q.where(pk > last)
        rows = conn.execute(q).mappings().all()
        if not rows:
            return
        last = rows[-1][pk.name]
        yield list(rows)


def _progress(conn: sa.Connection, mirror: Any, enabled: bool, desc: str) -> Any:
    total = conn.execute(sa.select(sa.func.count()).select_from(mirror.table)).scalar_one() if enabled else 0
    return progress_bar(int(total), enabled, desc)


def _check_batch_size(owner: str, batch_size: Any) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidMirrorError(f"{owner} batch_size={batch_size!r} is not a positive whole number.")


def _expected_metadata(mirror: Any, row: Any) -> dict[str, Any]:
    out = {}
    for name in mirror.metadata_columns:
        value = _scalar(row[name], functools.partial("column {!r}".format, name))
        if value is not None:
            out[name] = value
    return out


def verify(
    session: Any,
    mirror: Any,
    *,
    batch_size: int = 1000,
    tolerance: float = TOLERANCE,
    repair: bool = False,
    progress: bool = False,
) -> DriftReport:
    """Compare ``mirror`` with its table and return a :class:`DriftReport`.

    Vectors are compared element-wise within ``tolerance``. Metadata is compared where the mirror
    can report it (a ``metadata(pk)`` method: ``MemoryMirror``, ``FaissMirror``); otherwise
    ``metadata_checked`` is False. ``repair=True`` then upserts the missing and mismatched rows
    from the table and deletes the extra ids (unversioned writes)::

        report = vk.verify(session, mirror)
        assert report.ok, report
    """
    (mirror,) = check_mirrors([mirror], "vk.verify")
    _check_batch_size("vk.verify", batch_size)
    conn = _connection(session)
    metadata_of = getattr(mirror, "metadata", None) if mirror.metadata_columns else None
    report = DriftReport(mirror.name, metadata_checked=not mirror.metadata_columns or callable(metadata_of))
    held = run_blocking(mirror.ids)
    seen: set[Any] = set()
    missing: set[Any] = set()
    mismatched: set[Any] = set()
    vec_name = mirror.column.name
    bar = _progress(conn, mirror, progress, f"verify {mirror.name}")
    try:
        for rows in _batches(conn, mirror, batch_size):
            report.checked += len(rows)
            with_vector = {row[mirror.pk_column.name]: row for row in rows if row[vec_name] is not None}
            seen.update(with_vector)
            present = [pk for pk in with_vector if pk in held]
            missing.update(pk for pk in with_vector if pk not in held)
            stored = run_blocking(mirror.get, present) if present else {}
            for pk in present:
                got: np.ndarray | None = stored.get(pk)
                want = np.asarray(with_vector[pk][vec_name], dtype=np.float64)
                if got is None:
                    missing.add(pk)
                elif got.shape != want.shape or float(np.max(np.abs(got.astype(np.float64) - want))) > tolerance or callable(metadata_of) and metadata_of(pk) != _expected_metadata(mirror, with_vector[pk]):
                    mismatched.add(pk)
            bar.update(len(rows))
    finally:
        bar.close()
    report.missing = _sorted(missing)
    report.extra = _sorted(held - seen)
    report.mismatched = _sorted(mismatched)
    if repair and not report.ok:
        keys = report.missing + report.mismatched + report.extra
        write(mirror, plan_writes(mirror, keys, read_rows(conn, [mirror], keys)))
        report.repaired = True
    return report
