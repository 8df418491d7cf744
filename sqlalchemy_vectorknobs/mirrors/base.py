"""The mirror protocol: what every secondary vector index (Faiss, Chroma, Elasticsearch, memory) offers.

A *mirror* keeps a copy of one vector column outside the database, keyed by the table's primary
key, so that nearest-neighbour search can run elsewhere. Every mirror is constructed with the
vector column first and speaks the same verbs::

    mirror = vk.MemoryMirror(Doc.embedding, metadata_columns=["category"])
    mirror.upsert([1, 2], [[0.1] * 16, [0.2] * 16], [{"category": "a"}, {"category": "b"}])
    mirror.search([0.1] * 16, k=5, where={"category": "a"})   # [(1, 0.0)]
    mirror.delete([2])
    mirror.count()                                           # 1

Contract shared by every backend (the contract test suite checks it against each one):

* ``upsert(ids, vectors, metadata=None, *, versions=None) -> int`` writes whole records (vector and
  metadata; metadata not given means none) and returns how many were applied.
* ``delete(ids, *, versions=None) -> int`` removes records; absent ids are not an error.
* ``search(vector, k=10, where=None) -> [(pk, distance), ...]`` nearest first, in the plugin's SQL
  units: cosine distance ``1 - cos``, Euclidean (not squared) ``l2``, and for ``inner_product`` the
  *negative* dot product (pgvector's ``<#>``). ``where`` is ``{column: value}`` (equality) or
  ``{column: [a, b]}`` (IN) on the ``metadata_columns``; several keys are ANDed.
* ``get(ids) -> {pk: ndarray}`` the vectors stored (absent ids left out); ``ids() -> set``;
  ``count()``; ``clear()`` (records and versions); ``close()``. Mirrors are context managers.

Versions: ``upsert``/``delete`` take an optional ``versions=`` sequence of positive integers, one per
id. A mirror applies a versioned write only if its version is *greater* than the version it last
recorded for that id, and a versioned delete leaves a tombstone carrying its version, so an older
upsert that arrives later cannot resurrect the vector. A write without a version always applies and
keeps the recorded version, if any. Within one batch the highest version of an id wins (the last
entry, for unversioned writes). ``clear()`` forgets every version.

Generations: :func:`~sqlalchemy_vectorknobs.rebuild` fills a new, empty *generation* of a mirror
beside the live one (``_new_generation``), copying recorded versions and tombstones over, and swaps
it in under the mirror's lock (``_adopt_generation``), so searches keep working while it runs. A
backend that returns None from ``_new_generation`` (the default) is rebuilt in place instead.

Validation happens before anything is written: a wrong dimension, NaN/Inf, a bad id or metadata
value raises (:class:`~sqlalchemy_vectorknobs.exc.InvalidVectorError` and subclasses for vectors,
:class:`InvalidMirrorError` for the rest) and leaves the mirror unchanged. Failures of the backend
itself raise :class:`MirrorError`.
"""

from __future__ import annotations

import decimal
import enum
import functools
import threading
import uuid
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa

from ..codec import Kind, check_dense
from ..distance import Distance
from ..exc import InvalidMirrorError, MirrorError
from ..types import VectorType

__all__ = [
    "SUPPORTED_DISTANCES",
    "BaseMirror",
    "InvalidMirrorError",
    "Mirror",
    "MirrorError",
    "exact_distances",
]

F32 = npt.NDArray[np.float32]
Metadata = Mapping[str, Any]
Where = Mapping[str, Any]
#: The metrics a mirror can serve; all three are defined on dense float vectors.
SUPPORTED_DISTANCES = (Distance.COSINE, Distance.L2, Distance.INNER_PRODUCT)
#: Metadata values stored as they are (exact types: subclasses such as enums go through _scalar).
_PLAIN = frozenset({str, int, float, bool})
#: Highest version a mirror accepts (Elasticsearch's external versions are signed 64-bit).
MAX_VERSION = 2**63 - 2


@runtime_checkable
class Mirror(Protocol):
    """What every mirror offers; the session sync layer and ``vk.nearest(via=...)`` rely on it.

    >>> import sqlalchemy_vectorknobs as vk
    >>> isinstance(vk.MemoryMirror(Doc.embedding), vk.Mirror)  # doctest: +SKIP
    True
    """

    @property
    def name(self) -> str: ...
    @property
    def column(self) -> sa.Column[Any]: ...
    @property
    def table(self) -> sa.Table: ...
    @property
    def pk_column(self) -> sa.Column[Any]: ...
    @property
    def dim(self) -> int: ...
    @property
    def distance(self) -> Distance: ...
    @property
    def metadata_columns(self) -> tuple[str, ...]: ...

    def upsert(
        self,
        ids: Sequence[Any],
        vectors: Any,
        metadata: Sequence[Metadata | None] | None = None,
        *,
        versions: Sequence[int] | None = None,
    ) -> int: ...

    def delete(self, ids: Sequence[Any], *, versions: Sequence[int] | None = None) -> int: ...

    def search(self, vector: Any, k: int = 10, where: Where | None = None) -> list[tuple[Any, float]]: ...

    def get(self, ids: Iterable[Any]) -> dict[Any, np.ndarray]: ...

    def ids(self) -> set[Any]: ...

    def count(self) -> int: ...

    def clear(self) -> None: ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------- checked batches


@dataclass(frozen=True)
class UpsertBatch:
    """A validated upsert, one entry per distinct id (duplicates resolved as documented)."""

    ids: list[Any]
    vectors: F32  # (n, dim) float32
    metadata: list[dict[str, Any]]  # one dict per id; only metadata columns, no None values
    versions: list[int] | None
    #: Apply a version equal to the recorded one too (rebuilds copying versions into a new generation).
    gte: bool = False


@dataclass(frozen=True)
class DeleteBatch:
    """A validated delete, one entry per distinct id."""

    ids: list[Any]
    versions: list[int] | None
    gte: bool = False


def exact_distances(matrix: np.ndarray, query: np.ndarray, distance: Distance) -> npt.NDArray[np.float64]:
    """Exact distances (float64) from each row of ``matrix`` to ``query`` in the plugin's units.

    A zero vector has cosine distance 1 to everything (its cosine similarity is taken as 0).
    """
    m = np.asarray(matrix, dtype=np.float64)
    q = np.asarray(query, dtype=np.float64)
    if distance is Distance.L2:
        return np.asarray(np.sqrt(np.maximum(((m - q) ** 2).sum(axis=1), 0.0)))
    dots = m @ q
    if distance is Distance.INNER_PRODUCT:
        return np.asarray(-dots)
    norms = np.linalg.norm(m, axis=1) * float(np.linalg.norm(q))
    cos = np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)
    return np.asarray(1.0 - cos)


def _scalar(value: Any, what: Callable[[], str]) -> Any:
    """A metadata or filter value as a plain str/int/float/bool (None passes through)."""
    if isinstance(value, enum.Enum) and isinstance(value.value, (str, int, float, bool)):
        return value.value
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, np.generic):
        return _scalar(value.item(), what)
    if isinstance(value, decimal.Decimal):
        return float(value)
    raise InvalidMirrorError(
        f"{what()} has type {type(value).__name__}; mirror metadata accepts only str, int, float, bool or None."
    )


def _pk_python_type(column: sa.Column[Any]) -> type:
    try:
        return column.type.python_type
    except NotImplementedError:
        return object


class BaseMirror:
    """Shared construction, validation and locking; backends implement the ``_``-prefixed hooks.

    Resolves the vector column (ORM attribute or Core ``Column``), its table and single-column
    primary key, the column's ``dim``, the distance (explicit, else the distance of a
    :class:`~sqlalchemy_vectorknobs.VectorIndex` on the column, else cosine) and the metadata
    columns. Public methods validate their input completely before calling the hook, hold one
    re-entrant lock (a mirror may be shared between threads), and refuse to run after ``close()``.
    """

    #: Short backend name used in the default :attr:`name` ("faiss:doc.embedding").
    backend: ClassVar[str] = "mirror"
    #: Primary-key Python types this backend can store (int, str, uuid.UUID; object = any hashable).
    pk_types: ClassVar[tuple[type, ...]] = (int, str, uuid.UUID)

    def __init__(
        self,
        column: Any,
        *,
        distance: Distance | str | None = None,
        metadata_columns: Sequence[str] = (),
        name: str | None = None,
    ) -> None:
        col = _resolve_column(column, type(self).__name__)
        table = col.table
        pks = list(table.primary_key.columns)
        if len(pks) != 1:
            raise InvalidMirrorError(
                f"Table '{table.name}' has {len(pks)} primary key columns; "
                f"{type(self).__name__} needs exactly one to key its vectors."
            )
        type_ = col.type
        if not isinstance(type_, VectorType) or type_.kind not in (Kind.FLOAT32, Kind.FLOAT16) or type_.dim is None:
            raise InvalidMirrorError(
                f"Column '{table.name}.{col.name}' is {type_!r}; {type(self).__name__} needs a dense "
                "Vector(dim) or HalfVector(dim) column with a declared dimension."
            )
        self._column: sa.Column[Any] = col
        self._table: sa.Table = table
        self._pk_column: sa.Column[Any] = pks[0]
        self._dim: int = type_.dim
        self._distance = _resolve_distance(col, distance, type(self).__name__)
        self._metadata_columns = _check_metadata_columns(col, metadata_columns, type(self).__name__)
        self._name = name if name is not None else f"{self.backend}:{table.name}.{col.name}"
        self._pk_type = self._resolve_pk_type()
        self._lock = threading.RLock()
        self._closed = False
        #: While a rebuild runs: the ids written since it started (it copies them again before the swap).
        self._recording: set[Any] | None = None

    # ------------------------------------------------------------------ read-only description

    @property
    def name(self) -> str:
        """A stable name for this mirror (``"<backend>:<table>.<column>"`` unless given)."""
        return self._name

    @property
    def column(self) -> sa.Column[Any]:
        """The mirrored vector column (a table ``Column``)."""
        return self._column

    @property
    def table(self) -> sa.Table:
        """The table of :attr:`column`."""
        return self._table

    @property
    def pk_column(self) -> sa.Column[Any]:
        """The table's (single) primary key column; its values are the mirror's ids."""
        return self._pk_column

    @property
    def dim(self) -> int:
        """Number of dimensions of every stored vector."""
        return self._dim

    @property
    def distance(self) -> Distance:
        """The metric :meth:`search` ranks and reports by."""
        return self._distance

    @property
    def metadata_columns(self) -> tuple[str, ...]:
        """Names of the columns stored with each vector for ``where`` filters."""
        return self._metadata_columns

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._name!r} dim={self._dim} distance={self._distance.value}>"

    def __enter__(self) -> BaseMirror:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ public verbs

    def upsert(
        self,
        ids: Sequence[Any],
        vectors: Any,
        metadata: Sequence[Metadata | None] | None = None,
        *,
        versions: Sequence[int] | None = None,
    ) -> int:
        """Insert or replace the records ``ids``; return how many were applied (stale versions are not).

        ``vectors`` is a 2-D array-like with one row per id; ``metadata`` an optional list of dicts
        aligned with ``ids`` (keys among :attr:`metadata_columns`); ``versions`` optional positive
        integers aligned with ``ids``.
        """
        with self._lock:
            self._check_open()
            batch = self._check_upsert(ids, vectors, metadata, versions)
            if self._recording is not None:
                self._recording.update(batch.ids)
            return self._upsert(batch) if batch.ids else 0

    def delete(self, ids: Sequence[Any], *, versions: Sequence[int] | None = None) -> int:
        """Remove the records ``ids`` (absent ones are fine); return how many deletes were applied."""
        with self._lock:
            self._check_open()
            checked = self._check_ids(ids)
            vers = self._check_versions(versions, len(checked))
            batch = DeleteBatch(*_dedupe(checked, vers))
            if self._recording is not None:
                self._recording.update(batch.ids)
            return self._delete(batch) if batch.ids else 0

    def search(self, vector: Any, k: int = 10, where: Where | None = None) -> list[tuple[Any, float]]:
        """The ``k`` nearest records to ``vector`` as ``(pk, distance)``, nearest first."""
        with self._lock:
            self._check_open()
            query = check_dense(vector, self._dim, lambda: f"Mirror '{self._name}' query vector")
            if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
                raise InvalidMirrorError(f"Mirror '{self._name}' search k={k!r} is not a positive whole number.")
            filters = self._check_where(where)
            if any(not values for values in filters.values()):
                return []  # an empty IN list matches nothing
            return self._search(query, int(k), filters)

    def get(self, ids: Iterable[Any]) -> dict[Any, np.ndarray]:
        """The stored vectors of ``ids`` as float32 arrays; ids the mirror does not hold are left out."""
        with self._lock:
            self._check_open()
            checked = list(dict.fromkeys(self._check_ids(ids)))
            return self._get(checked) if checked else {}

    def ids(self) -> set[Any]:
        """Every primary key the mirror holds a vector for."""
        with self._lock:
            self._check_open()
            return self._ids()

    def count(self) -> int:
        """Number of vectors held."""
        with self._lock:
            self._check_open()
            return self._count()

    def clear(self) -> None:
        """Remove every record and forget every recorded version."""
        with self._lock:
            self._check_open()
            if self._recording is not None:
                raise InvalidMirrorError(f"Mirror '{self._name}' is being rebuilt; clear it after vk.rebuild has finished.")
            self._clear()

    def close(self) -> None:
        """Release the backend (files are saved, owned clients closed); later calls raise. Idempotent."""
        with self._lock:
            if not self._closed:
                try:
                    self._close()
                finally:
                    self._closed = True

    # ------------------------------------------------------------------ backend hooks

    def _upsert(self, batch: UpsertBatch) -> int:
        raise NotImplementedError

    def _delete(self, batch: DeleteBatch) -> int:
        raise NotImplementedError

    def _search(self, query: F32, k: int, where: dict[str, tuple[Any, ...]]) -> list[tuple[Any, float]]:
        raise NotImplementedError

    def _get(self, ids: list[Any]) -> dict[Any, np.ndarray]:
        raise NotImplementedError

    def _ids(self) -> set[Any]:
        raise NotImplementedError

    def _count(self) -> int:
        raise NotImplementedError

    def _clear(self) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        pass

    # ------------------------------------------------------------------ generations (used by vk.rebuild)

    def _new_generation(self) -> BaseMirror | None:
        """An empty mirror like this one with storage of its own, to be filled and swapped in; None: no generations."""
        return None

    def _adopt_generation(self, generation: Any) -> None:
        """Take over ``generation``'s storage (called under the lock); the old storage is released."""
        raise NotImplementedError

    def _discard_generation(self, generation: Any) -> None:
        """Drop a generation that will not be swapped in (a failed rebuild)."""
        generation.close()

    def _recorded_versions(self, ids: list[Any]) -> dict[Any, int]:
        """The version recorded for each of ``ids`` that has one, tombstones included."""
        raise NotImplementedError

    def _tombstone_ids(self) -> list[Any]:
        """The ids that have a recorded version but no vector (versioned deletes)."""
        raise NotImplementedError

    def recorded_versions(self, ids: Iterable[Any]) -> dict[Any, int]:
        """The version recorded for each of ``ids`` that has one (tombstones included)."""
        with self._lock:
            self._check_open()
            checked = list(dict.fromkeys(self._check_ids(ids)))
            return self._recorded_versions(checked) if checked else {}

    def tombstone_ids(self) -> list[Any]:
        """The ids whose last write was a versioned delete (the mirror remembers their version)."""
        with self._lock:
            self._check_open()
            return self._tombstone_ids()

    def begin_generation(self) -> BaseMirror | None:
        """Start a rebuild: an empty new generation, or None when this backend rebuilds in place.

        From now until :meth:`end_generation` the ids of every write are remembered, so
        :func:`~sqlalchemy_vectorknobs.rebuild` can copy them into the generation again before it
        swaps. One rebuild at a time.
        """
        with self._lock:
            self._check_open()
            if self._recording is not None:
                raise InvalidMirrorError(f"Mirror '{self._name}' is already being rebuilt; wait for that rebuild to finish.")
            generation = self._new_generation()
            if generation is not None:
                self._recording = set()
            return generation

    def written_since(self) -> list[Any]:
        """The ids written since the last call (or since :meth:`begin_generation`), forgotten as they are returned."""
        with self._lock:
            if self._recording is None:
                return []
            ids = list(self._recording)
            self._recording.clear()
            return ids

    def end_generation(
        self, generation: Any, *, swap: bool, catch_up: Callable[[list[Any]], None] | None = None
    ) -> bool:
        """Swap ``generation`` in (``swap=True``) or drop it, stop remembering writes; True if swapped.

        The swap holds the lock throughout. Without ``catch_up`` it happens only if no write arrived
        since the last :meth:`written_since` (False otherwise: copy those and try again). With
        ``catch_up``, that function first receives the ids written since (to copy them into the
        generation), then the generation replaces the live storage, so no write falls between.
        """
        with self._lock:
            try:
                if swap:
                    self._check_open()
                    if catch_up is None and self._recording:
                        return False
                    if catch_up is not None:
                        catch_up(self.written_since())
            except BaseException:
                self._recording = None
                self._discard_generation(generation)
                raise
            self._recording = None
            if not swap:
                self._discard_generation(generation)
                return False
            # A failure from here on leaves the storage to the backend (it may be half swapped).
            self._adopt_generation(generation)
            return True

    def write_generation(
        self,
        upserts: tuple[list[Any], list[Any], list[Metadata | None], list[int | None]],
        deletes: tuple[list[Any], list[int | None]],
    ) -> None:
        """Write rows read from SQL into a generation being built, carrying the live mirror's versions.

        ``upserts`` is (ids, vectors, metadata, versions), ``deletes`` is (ids, versions); a version
        of None means the live mirror recorded none. A versioned write applies when its version is
        *at least* the recorded one (the data was read after that version was recorded).
        """
        with self._lock:
            self._check_open()
            ids, vectors, metadata, versions = upserts
            if ids:
                batch = self._check_upsert(ids, vectors, metadata, None)
                given = dict(zip(ids, versions))
                position = {pk: row for row, pk in enumerate(batch.ids)}
                for part in _split_versions(batch.ids, given):
                    rows = [position[pk] for pk in part]
                    vers = [given[pk] for pk in part]
                    self._upsert(
                        UpsertBatch(
                            part,
                            batch.vectors[rows],
                            [batch.metadata[r] for r in rows],
                            None if vers[0] is None else [int(v) for v in vers if v is not None],
                            gte=True,
                        )
                    )
            del_ids, del_versions = deletes
            # An id the live mirror holds no version for has nothing to remember in the new generation.
            kept = [(pk, v) for pk, v in zip(self._check_ids(del_ids), del_versions) if v is not None]
            if kept:
                self._delete(DeleteBatch([pk for pk, _ in kept], [int(v) for _, v in kept], gte=True))

    # ------------------------------------------------------------------ validation helpers

    def _check_open(self) -> None:
        if self._closed:
            raise MirrorError(f"Mirror '{self._name}' is closed; create a new mirror to use it again.")

    def _resolve_pk_type(self) -> type:
        py = _pk_python_type(self._pk_column)
        for allowed in self.pk_types:
            if allowed is object or (issubclass(py, allowed) and not issubclass(py, bool)):
                return allowed
        names = ", ".join(t.__name__ for t in self.pk_types)
        raise InvalidMirrorError(
            f"Primary key '{self._table.name}.{self._pk_column.name}' holds {py.__name__} values; "
            f"{type(self).__name__} supports primary keys of type {names}."
        )

    def _check_ids(self, ids: Any) -> list[Any]:
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
            raise InvalidMirrorError(
                f"Mirror '{self._name}' got ids of type {type(ids).__name__}; pass a sequence of primary keys."
            )
        if self._pk_type is int:
            if isinstance(ids, np.ndarray) and ids.dtype.kind in "iu" and ids.ndim == 1:
                if ids.dtype.kind == "i" or not ids.size or int(ids.max()) < 2**63:
                    return [int(pk) for pk in ids.tolist()]
            got = list(ids)
            if all(type(pk) is int for pk in got) and (not got or (min(got) >= -(2**63) and max(got) < 2**63)):
                return got
            return [self._check_pk(pk) for pk in got]
        return [self._check_pk(pk) for pk in ids]

    def _check_pk(self, pk: Any) -> Any:
        t = self._pk_type
        if t is int:
            if isinstance(pk, (int, np.integer)) and not isinstance(pk, (bool, np.bool_)) and -(2**63) <= pk < 2**63:
                return int(pk)
        elif t is str:
            if isinstance(pk, str):
                return pk
        elif t is uuid.UUID:
            if isinstance(pk, uuid.UUID):
                return pk
            if isinstance(pk, str):
                try:
                    return uuid.UUID(pk)
                except ValueError:
                    pass
        elif isinstance(pk, Hashable) and pk is not None:
            return pk
        raise InvalidMirrorError(
            f"Mirror '{self._name}' got primary key {pk!r}; column "
            f"'{self._table.name}.{self._pk_column.name}' keys are {t.__name__} values."
        )

    def pk_to_str(self, pk: Any) -> str:
        """The string form of a primary key (document ids of Chroma and Elasticsearch)."""
        return str(pk)

    def pk_from_str(self, text: str) -> Any:
        """The primary key a :meth:`pk_to_str` string stands for."""
        if self._pk_type is int:
            return int(text)
        if self._pk_type is uuid.UUID:
            return uuid.UUID(text)
        return text

    def _check_versions(self, versions: Sequence[int] | None, n: int) -> list[int] | None:
        if versions is None:
            return None
        if isinstance(versions, (str, bytes)) or not isinstance(versions, Iterable):
            raise InvalidMirrorError(f"Mirror '{self._name}' got versions of type {type(versions).__name__}; pass a sequence of integers.")
        out = list(versions)
        if len(out) != n:
            raise InvalidMirrorError(f"Mirror '{self._name}' got {len(out)} versions for {n} ids; pass one version per id.")
        if all(type(v) is int for v in out) and (not out or (min(out) >= 1 and max(out) <= MAX_VERSION)):
            return out  # plain ints in range (what attach and drain pass): no per-value checks
        for v in out:
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or not 1 <= v <= MAX_VERSION:
                raise InvalidMirrorError(
                    f"Mirror '{self._name}' got version {v!r}; versions are whole numbers from 1 to {MAX_VERSION}."
                )
        return [int(v) for v in out]

    def _check_matrix(self, vectors: Any, ids: list[Any]) -> F32:
        n = len(ids)

        def subject(i: int) -> Callable[[], str]:
            return lambda: f"Mirror '{self._name}' vector for id {ids[i]!r}"

        if isinstance(vectors, np.ndarray) and vectors.ndim == 2 and vectors.dtype.kind in "fiu":
            if vectors.shape[0] != n:
                raise InvalidMirrorError(f"Mirror '{self._name}' got {n} ids and {vectors.shape[0]} vectors; pass one vector per id.")
            if n and vectors.shape[1] != self._dim:
                check_dense(vectors[0], self._dim, subject(0))  # raises DimensionMismatchError
            with np.errstate(over="ignore", invalid="ignore"):
                matrix = np.ascontiguousarray(vectors, dtype=np.float32)
            bad = np.flatnonzero(~np.isfinite(matrix.sum(axis=1, dtype=np.float64)))
            if bad.size:
                check_dense(vectors[int(bad[0])], self._dim, subject(int(bad[0])))  # names the bad value
            return matrix
        if isinstance(vectors, (str, bytes)) or not isinstance(vectors, Iterable):
            raise InvalidMirrorError(
                f"Mirror '{self._name}' got vectors of type {type(vectors).__name__}; pass a 2-D array or a sequence of vectors."
            )
        rows = list(vectors)
        if len(rows) != n:
            raise InvalidMirrorError(f"Mirror '{self._name}' got {n} ids and {len(rows)} vectors; pass one vector per id.")
        if not rows:
            return np.zeros((0, self._dim), dtype=np.float32)
        shape = (self._dim,)
        if all(isinstance(row, np.ndarray) and row.shape == shape and row.dtype.kind in "fiu" for row in rows):
            return self._check_matrix(np.stack(rows), ids)  # rows read from SQL: checked as one matrix
        return np.stack([check_dense(row, self._dim, subject(i)) for i, row in enumerate(rows)])

    def _check_metadata(self, metadata: Sequence[Metadata | None] | None, ids: list[Any]) -> list[dict[str, Any]]:
        n = len(ids)
        if metadata is None:
            return [{} for _ in range(n)]
        if isinstance(metadata, Mapping) or not isinstance(metadata, Iterable):
            raise InvalidMirrorError(
                f"Mirror '{self._name}' got metadata of type {type(metadata).__name__}; pass a list of dicts, one per id."
            )
        items = list(metadata)
        if len(items) != n:
            raise InvalidMirrorError(f"Mirror '{self._name}' got {len(items)} metadata dicts for {n} ids; pass one per id.")
        allowed = set(self._metadata_columns)
        out: list[dict[str, Any]] = []
        for i, md in enumerate(items):
            if md is None:
                out.append({})
                continue
            if type(md) is not dict and not isinstance(md, Mapping):  # (the ABC check costs more than the row)
                raise InvalidMirrorError(
                    f"Mirror '{self._name}' got metadata of type {type(md).__name__} for id {ids[i]!r}; pass a dict."
                )
            if not md.keys() <= allowed:
                unknown = [key for key in md if key not in allowed]
                raise InvalidMirrorError(
                    f"Mirror '{self._name}' got metadata key {unknown[0]!r} for id {ids[i]!r}; "
                    f"its metadata columns are {list(self._metadata_columns)}."
                )
            clean: dict[str, Any] = {}
            for key, value in md.items():
                if type(value) in _PLAIN:  # exact types: no enum, numpy or Decimal to convert
                    clean[key] = value
                    continue
                v = _scalar(value, functools.partial(self._describe, "metadata", key, ids[i]))
                if v is not None:
                    clean[key] = v
            out.append(clean)
        return out

    def _check_upsert(
        self,
        ids: Sequence[Any],
        vectors: Any,
        metadata: Sequence[Metadata | None] | None,
        versions: Sequence[int] | None,
    ) -> UpsertBatch:
        checked = self._check_ids(ids)
        matrix = self._check_matrix(vectors, checked)
        meta = self._check_metadata(metadata, checked)
        vers = self._check_versions(versions, len(checked))
        if len(set(checked)) == len(checked):  # the usual case: nothing to resolve, nothing to copy
            return UpsertBatch(checked, matrix, meta, vers)
        keep_ids, keep_vers, rows = _dedupe_rows(checked, vers)
        return UpsertBatch(keep_ids, matrix[rows], [meta[r] for r in rows], keep_vers)

    def _describe(self, what: str, key: str, *pk: Any) -> str:
        """How errors name a metadata or filter value (built only when an error is raised)."""
        return f"Mirror '{self._name}' {what} {key!r}" + (f" for id {pk[0]!r}" if pk else "")

    def _check_where(self, where: Where | None) -> dict[str, tuple[Any, ...]]:
        """``where`` as ``{column: (allowed values...)}`` (equality is a one-value tuple)."""
        if where is None:
            return {}
        if not isinstance(where, Mapping):
            raise InvalidMirrorError(
                f"Mirror '{self._name}' got a where filter of type {type(where).__name__}; "
                "pass a dict such as {'category': 'a'} or {'category': ['a', 'b']}."
            )
        out: dict[str, tuple[Any, ...]] = {}
        for key, value in where.items():
            if key not in self._metadata_columns:
                raise InvalidMirrorError(
                    f"Mirror '{self._name}' cannot filter on {key!r}; its metadata columns are {list(self._metadata_columns)}."
                )
            values = list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
            clean = []
            for v in values:
                s = _scalar(v, functools.partial(self._describe, "filter value for", key))
                if s is None:
                    raise InvalidMirrorError(
                        f"Mirror '{self._name}' got None in the filter on {key!r}; filters match stored values, and None is never stored."
                    )
                clean.append(s)
            out[key] = tuple(dict.fromkeys(clean))
        return out


# --------------------------------------------------------------------------- helpers


def _resolve_column(column: Any, owner: str) -> sa.Column[Any]:
    if hasattr(column, "property") and hasattr(column, "parent"):  # ORM attribute
        cols = getattr(column.property, "columns", None)
        if cols:
            column = cols[0]
    if isinstance(column, sa.Column) and isinstance(getattr(column, "table", None), sa.Table):
        return column
    raise InvalidMirrorError(
        f"{owner} needs a table's vector column or a mapped attribute such as Doc.embedding, got {type(column).__name__}."
    )


def _resolve_distance(column: sa.Column[Any], distance: Distance | str | None, owner: str) -> Distance:
    if distance is None:
        from ..query import find_index  # the VectorIndex lookup lives with the query layer

        index = find_index(column, None)
        metric = index.vector_options.distance if index is not None else Distance.COSINE
    else:
        metric = Distance.parse(distance)
    if metric not in SUPPORTED_DISTANCES:
        raise InvalidMirrorError(
            f"{owner} cannot rank by {metric.value} distance; mirrors support cosine, l2 and inner_product."
        )
    return metric


def _check_metadata_columns(column: sa.Column[Any], names: Sequence[str], owner: str) -> tuple[str, ...]:
    if isinstance(names, str):
        names = [names]
    out: list[str] = []
    for name in names:
        if not isinstance(name, str) or name not in column.table.c:
            raise InvalidMirrorError(
                f"{owner} metadata column {name!r} is not a column of table '{column.table.name}'."
            )
        if name == column.name:
            raise InvalidMirrorError(f"{owner} metadata column {name!r} is the vector column itself; name other columns.")
        if name.startswith(("vk_", "_vk")):
            raise InvalidMirrorError(f"{owner} metadata column {name!r} starts with a prefix mirrors reserve ('vk_', '_vk').")
        if name not in out:
            out.append(name)
    return tuple(out)


def _split_versions(ids: list[Any], versions: Mapping[Any, int | None]) -> list[list[Any]]:
    """``ids`` split into the ones with a version and the ones without (empty parts left out)."""
    with_v = [pk for pk in ids if versions.get(pk) is not None]
    without = [pk for pk in ids if versions.get(pk) is None]
    return [part for part in (with_v, without) if part]


def _dedupe(ids: list[Any], versions: list[int] | None) -> tuple[list[Any], list[int] | None]:
    keep_ids, keep_vers, _ = _dedupe_rows(ids, versions)
    return keep_ids, keep_vers


def _dedupe_rows(ids: list[Any], versions: list[int] | None) -> tuple[list[Any], list[int] | None, list[int]]:
    """One row per id: the highest version, or the last row for unversioned writes."""
    chosen: dict[Any, int] = {}
    for row, pk in enumerate(ids):
        prev = chosen.get(pk)
        if prev is None or versions is None or versions[row] >= versions[prev]:
            chosen[pk] = row
    rows = list(chosen.values())
    return list(chosen), None if versions is None else [versions[r] for r in rows], rows
