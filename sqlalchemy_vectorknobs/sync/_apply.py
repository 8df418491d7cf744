"""Reading the committed rows behind a set of primary keys and writing them to mirrors.

Every path that updates a mirror (the after-commit apply, ``drain``, ``rebuild`` and the repair
of ``verify``) goes through here, so all of them agree on what a row means for a mirror: a row
whose vector is not NULL is upserted with its metadata columns; a row that is gone, or whose
vector is NULL, is deleted from the mirror.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from .. import dialects
from .._blocking import run_blocking
from ..exc import InvalidMirrorError, MirrorError

__all__ = [
    "CHUNK",
    "DEFAULT_TIMEOUT",
    "Planned",
    "check_timeout",
    "check_mirrors",
    "decode_pk",
    "encode_pk",
    "next_version",
    "plan_changes",
    "plan_writes",
    "read_rows",
    "write",
]

#: Primary keys per ``IN (...)`` list (well under SQLite's and PostgreSQL's parameter limits).
CHUNK = 500

#: Seconds one mirror write (an ``upsert`` or ``delete`` call) may take before it counts as failed.
DEFAULT_TIMEOUT = 60.0

_version_lock = threading.Lock()
_last_version = 0


def next_version() -> int:
    """A version greater than every one this process handed out before (nanoseconds since the epoch).

    Taken *before* the rows are re-read: a reader that starts later gets a larger version and
    reads data at least as new, so a slower, older apply can never overwrite a newer one.
    """
    global _last_version
    with _version_lock:
        _last_version = max(time.time_ns(), _last_version + 1)
        return _last_version


def check_mirrors(mirrors: Any, owner: str) -> list[Any]:
    """``mirrors`` as a list of mirror objects with distinct names, or :class:`InvalidMirrorError`."""
    if mirrors is None or isinstance(mirrors, (str, bytes)) or not isinstance(mirrors, Iterable):
        raise InvalidMirrorError(f"{owner} needs a list of mirrors, got {type(mirrors).__name__}.")
    out = list(mirrors)
    needed = ("name", "table", "pk_column", "column", "metadata_columns", "upsert", "delete")
    seen: set[str] = set()
    for mirror in out:
        missing = [attr for attr in needed if not hasattr(mirror, attr)]
        if missing:
            raise InvalidMirrorError(
                f"{owner} got {type(mirror).__name__}, which is not a mirror (it has no {missing[0]!r}); "
                "pass objects such as vk.MemoryMirror(Doc.embedding)."
            )
        if mirror.name in seen:
            raise InvalidMirrorError(
                f"{owner} got two mirrors named {mirror.name!r}; give each mirror a distinct name= "
                "(the outbox routes changes by name)."
            )
        seen.add(mirror.name)
    return out


def _columns(table: sa.Table, mirrors: Sequence[Any]) -> list[sa.Column[Any]]:
    pk = mirrors[0].pk_column
    cols: dict[str, sa.Column[Any]] = {pk.name: pk}
    for mirror in mirrors:
        cols.setdefault(mirror.column.name, mirror.column)
        for name in mirror.metadata_columns:
            cols.setdefault(name, table.c[name])
    return list(cols.values())


def read_rows(conn: sa.Connection, mirrors: Sequence[Any], pks: Iterable[Any]) -> dict[Any, Mapping[Any, Any]]:
    """``{pk: row}`` of the rows of the mirrors' table (all mirrors share it) whose key is in ``pks``.

    Each row maps column names to values (the primary key, every mirror's vector column and
    metadata columns); keys whose row is gone are absent.
    """
    table = mirrors[0].table
    pk = mirrors[0].pk_column
    cols = _columns(table, mirrors)
    keys = list(dict.fromkeys(pks))
    out: dict[Any, Mapping[Any, Any]] = {}
    support = dialects.for_dialect(conn.dialect)
    for start in range(0, len(keys), CHUNK):
        chunk = keys[start : start + CHUNK]
        for row in conn.execute(sa.select(*cols).where(support.in_values(pk, chunk))).mappings():
            out[row[pk.name]] = row
    return out


@dataclass
class Planned:
    """The writes one mirror needs so that it matches ``rows`` for ``pks``."""

    upsert_ids: list[Any]
    vectors: list[Any]
    metadata: list[dict[str, Any]]
    upsert_versions: list[int] | None
    delete_ids: list[Any]
    delete_versions: list[int] | None


def plan_writes(
    mirror: Any,
    pks: Iterable[Any],
    rows: Mapping[Any, Mapping[Any, Any]],
    versions: Mapping[Any, int] | int | None = None,
) -> Planned:
    """Upserts for the keys whose row exists with a vector, deletes for the others.

    ``versions`` is one version per key, one version for all of them, or None (unversioned).
    """
    vec_name = mirror.column.name
    md_names = mirror.metadata_columns
    versioned = versions is not None
    plan = Planned([], [], [], [] if versioned else None, [], [] if versioned else None)
    for pk in dict.fromkeys(pks):
        row = rows.get(pk)
        version = versions if isinstance(versions, int) or versions is None else versions[pk]
        if row is not None and row[vec_name] is not None:
            plan.upsert_ids.append(pk)
            plan.vectors.append(row[vec_name])
            plan.metadata.append({name: row[name] for name in md_names})
            if plan.upsert_versions is not None and version is not None:
                plan.upsert_versions.append(version)
        else:
            plan.delete_ids.append(pk)
            if plan.delete_versions is not None and version is not None:
                plan.delete_versions.append(version)
    return plan


def plan_changes(
    mirror: Any,
    versions: Mapping[Any, int],
    known: Mapping[Any, tuple[Any, Mapping[str, Any]]],
    rows: Mapping[Any, Mapping[Any, Any]],
) -> Planned:
    """Writes for ``versions``' keys: the ``known`` (vector, metadata) a session flushed, else the row read back.

    A key in neither (its row is gone), or whose vector is None, is deleted. Deletes are always
    read back rather than trusted: an ORM DELETE that matched no row (deleted meanwhile by someone
    else) held no lock, so a row inserted again since then may carry a smaller version.
    """
    vec_name = mirror.column.name
    md_names = mirror.metadata_columns
    plan = Planned([], [], [], [], [], [])
    assert plan.upsert_versions is not None and plan.delete_versions is not None
    for pk, version in versions.items():
        vector: Any = None
        metadata: Mapping[str, Any] = {}
        if pk in known:
            vector, metadata = known[pk]
        elif pk in rows:
            row = rows[pk]
            vector, metadata = row[vec_name], {name: row[name] for name in md_names}
        if vector is not None:
            plan.upsert_ids.append(pk)
            plan.vectors.append(vector)
            plan.metadata.append({name: metadata.get(name) for name in md_names})
            plan.upsert_versions.append(version)
        else:
            plan.delete_ids.append(pk)
            plan.delete_versions.append(version)
    return plan


def check_timeout(owner: str, timeout: Any) -> float | None:
    """``timeout`` if it is None or a positive number of seconds, else :class:`InvalidMirrorError`."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0 or timeout == float("inf"):
        raise InvalidMirrorError(f"{owner} timeout={timeout!r} is not valid; pass a positive number of seconds or None.")
    return float(timeout)


def write(mirror: Any, plan: Planned, timeout: float | None = None) -> None:
    """Send a plan to its mirror; under an ``AsyncSession`` the calls run off the event loop.

    With ``timeout`` each call runs in a worker thread and a call still running after ``timeout``
    seconds raises :class:`MirrorError` (the write counts as failed: the outbox keeps its rows).
    The thread cannot be stopped; if the call finishes later, the versions it carries keep it
    from overwriting anything newer.
    """
    # Per-thread settings of the caller the mirror's library needs in the worker (Faiss's OpenMP
    # thread count: a new thread starts at the process default, not at what the caller set).
    carry = getattr(mirror, "thread_settings", None)
    setup: Callable[[], None] = carry() if callable(carry) else _nothing
    if plan.upsert_ids:
        run_blocking(_timed, _upsert, mirror, plan, timeout, setup)
    if plan.delete_ids:
        run_blocking(_timed, _delete, mirror, plan, timeout, setup)


def _nothing() -> None:
    return None


def _timed(fn: Any, mirror: Any, plan: Planned, timeout: float | None, setup: Callable[[], None]) -> None:
    if timeout is None:
        setup()
        fn(mirror, plan)
        return
    outcome: list[BaseException] = []
    done = threading.Event()

    def run() -> None:
        try:
            setup()
            fn(mirror, plan)
        except BaseException as err:  # handed to the caller below
            outcome.append(err)
        finally:
            done.set()

    threading.Thread(target=run, name=f"vectorknobs-mirror-write-{mirror.name}", daemon=True).start()
    if not done.wait(timeout):
        raise MirrorError(
            f"Mirror '{mirror.name}' did not finish a write of {len(plan.upsert_ids) + len(plan.delete_ids)} row(s) "
            f"within {timeout:g} s; it counts as failed and is retried later."
        )
    if outcome:
        raise outcome[0]


def _upsert(mirror: Any, plan: Planned) -> None:
    mirror.upsert(plan.upsert_ids, plan.vectors, plan.metadata, versions=plan.upsert_versions)


def _delete(mirror: Any, plan: Planned) -> None:
    mirror.delete(plan.delete_ids, versions=plan.delete_versions)


# ------------------------------------------------------------------------------ outbox keys


def pk_kind(column: sa.Column[Any]) -> type:
    """The Python type of a key column the outbox can store (int, str or uuid.UUID)."""
    try:
        py = column.type.python_type
    except NotImplementedError:
        py = object
    for kind in (int, str, uuid.UUID):
        if issubclass(py, kind) and not issubclass(py, bool):
            return kind
    raise InvalidMirrorError(
        f"Primary key '{column.table.name}.{column.name}' holds {py.__name__} values; the outbox stores "
        "integer, string and UUID keys."
    )


def encode_pk(pk: Any) -> str:
    """A primary key as the JSON text stored in ``vk_outbox.pk``."""
    if type(pk) is int:  # the JSON of an int is its decimal text (and much cheaper than json.dumps)
        return str(pk)
    return json.dumps(str(pk) if isinstance(pk, uuid.UUID) else pk)


def decode_pk(text: str, kind: type) -> Any:
    """The key :func:`encode_pk` wrote, as a value of the key column's type."""
    if kind is int:
        try:
            number = int(text)
        except ValueError:
            pass
        else:
            if str(number) == text:  # exactly the JSON of that int (int() would also take "1_0" or " 1")
                return number
    value = json.loads(text)
    return uuid.UUID(value) if kind is uuid.UUID else kind(value)
