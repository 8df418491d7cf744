"""``FaissMirror``: a vector column mirrored into a Faiss index (flat, HNSW or IVF), persisted atomically to one file.

::

    mirror = vk.FaissMirror(Doc.embedding, path="docs.vkfaiss", kind="hnsw", metadata_columns=["category"])
    mirror.upsert(ids, vectors, [{"category": c} for c in categories])
    mirror.search(query, k=10, where={"category": ["news", "blog"]})

Ids are the table's primary keys, which must be integers (they are Faiss's int64 labels; other key
types raise :class:`InvalidMirrorError` at construction).

Index kinds
    ``"flat"``: ``IndexIDMap2(IndexFlatIP | IndexFlatL2)``, exact. Updates and deletes use
    ``remove_ids``.

    ``"hnsw"``: ``IndexIDMap2(IndexHNSWFlat)`` with ``m``, ``ef_construction``, ``ef_search``.
    HNSW cannot remove vectors, so an update or delete leaves a *tombstone* (the old graph node
    stays, marked dead); searches exclude dead nodes with an ``IDSelectorBitmap`` while still
    walking through them, and the index is rebuilt from the live vectors once tombstones exceed
    ``tombstone_ratio`` of its nodes (or when :meth:`FaissMirror.compact` is called).

    ``"ivf"``: ``IndexIVFFlat`` with ``nlist`` lists, searched with ``nprobe``. IVF needs training,
    so the mirror stays an exact flat index until it holds ``train_size`` vectors (default
    ``39 * nlist``, what Faiss's k-means asks for), then trains on everything it holds and switches
    (:attr:`FaissMirror.trained`). Centroids are not retrained as data drifts; :meth:`compact`
    retrains them. Ids are the IVF's own labels (removal and ``reconstruct`` work through a hash
    table direct map).

Metrics
    cosine: vectors are stored L2-normalised in an inner-product index and the score ``s`` is
    reported as ``1 - s``; each vector's norm is kept, so :meth:`get` returns the vector as given.
    A zero vector stays zero (cosine distance 1 to everything). l2: an L2 index; Faiss's squared
    distances are reported as their square root. inner_product: an inner-product index; the score
    is reported negated (pgvector's ``<#>``).

Filters
    ``where`` is resolved against the stored metadata to a set of ids; when it holds at most
    ``exact_filter_limit`` ids (or no more than ``k``) those vectors are ranked exactly, otherwise
    the index is searched with an ``IDSelectorBatch``/``IDSelectorBitmap`` so only matching ids
    are returned.

Persistence
    With ``path=``, an existing file is loaded on construction (its kind, distance and dimension
    must match). The mirror lives in two files (see :mod:`._faiss_file`): a *snapshot* at ``path``
    holding the Faiss index and all side data (live ids, versions and tombstones, metadata, norms),
    written to a temporary file, fsynced and moved over ``path`` atomically; and a *journal*
    ``<path>.journal`` to which every applied write is appended and fsynced. ``autosave=True`` (the
    default) makes each ``upsert``/``delete`` that changed something durable before it returns by
    appending one journal record (a few hundred bytes for a one-row change, instead of rewriting
    the whole index), so an acknowledged write survives a crash; the journal is folded into a new
    snapshot once it outgrows the snapshot (and 16 MiB), and ``clear``, ``compact``, a rebuild and
    :meth:`FaissMirror.save` write a snapshot right away. A torn journal record (a crash in the
    middle of an append) is ignored and cut off on load: its call never returned. For bulk loads
    pass ``autosave=False`` and call :meth:`save` (``close()`` saves unsaved changes). If writing
    to disk fails, the call raises :class:`MirrorError`, the files keep their previous content,
    the change stays in memory, and the next write (even one that changes nothing, such as the
    outbox retrying it) first writes a full snapshot; a caller that retries loses nothing. Without
    a path the index lives in memory only.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._optional import require
from ..distance import Distance
from ._faiss_file import MIN_JOURNAL_BYTES, Journal, read_snapshot, write_snapshot
from ._local import MetadataIndex, VersionMap
from .base import F32, BaseMirror, DeleteBatch, InvalidMirrorError, MirrorError, UpsertBatch, exact_distances

__all__ = ["FaissMirror"]

KINDS = ("flat", "hnsw", "ivf")
FORMAT = 1
# Faiss pads missing results with label -1 and distance +-FLT_MAX (about 3.4e38).
_PAD_DISTANCE = 3.0e38
# Everything a generation hands over when it is swapped in.
_STATE = ("_index", "_trained", "_live", "_norms", "_slot_pk", "_alive", "_pos", "_dead", "_versions", "_meta")


class FaissMirror(BaseMirror):
    """A Faiss index mirroring one vector column (see the module docstring for every knob)."""

    backend = "faiss"
    pk_types = (int,)

    def __init__(
        self,
        column: Any,
        *,
        path: str | os.PathLike[str] | None = None,
        kind: str = "flat",
        distance: Distance | str | None = None,
        metadata_columns: Sequence[str] = (),
        name: str | None = None,
        m: int = 32,
        ef_construction: int = 128,
        ef_search: int = 64,
        nlist: int = 100,
        nprobe: int = 10,
        train_size: int | None = None,
        tombstone_ratio: float = 0.25,
        exact_filter_limit: int = 1024,
        autosave: bool = True,
    ) -> None:
        super().__init__(column, distance=distance, metadata_columns=metadata_columns, name=name)
        if kind not in KINDS:
            raise InvalidMirrorError(f"FaissMirror kind {kind!r} is not known; use 'flat', 'hnsw' or 'ivf'.")
        for knob, value, low in (
            ("m", m, 2),
            ("ef_construction", ef_construction, 1),
            ("ef_search", ef_search, 1),
            ("nlist", nlist, 1),
            ("nprobe", nprobe, 1),
            ("exact_filter_limit", exact_filter_limit, 0),
        ):
            _check_int(knob, value, low)
        if train_size is None:
            train_size = 39 * nlist
        _check_int("train_size", train_size, nlist)
        if not isinstance(tombstone_ratio, (int, float)) or not 0 < tombstone_ratio <= 1:
            raise InvalidMirrorError(f"FaissMirror tombstone_ratio={tombstone_ratio!r} is not a fraction in (0, 1].")
        self._faiss = require("faiss", extra="faiss", feature="FaissMirror", package="faiss-cpu")
        self._kind = kind
        self._path = Path(path) if path is not None else None
        self._m, self._ef_construction, self._ef_search = m, ef_construction, ef_search
        self._nlist, self._nprobe, self._train_size = nlist, nprobe, train_size
        self._tombstone_ratio = float(tombstone_ratio)
        self._exact_filter_limit = exact_filter_limit
        #: Save after every batch that changed something (see the module docstring).
        self.autosave = autosave
        self._metric = (
            self._faiss.METRIC_L2 if self.distance is Distance.L2 else self._faiss.METRIC_INNER_PRODUCT
        )
        self._versions = VersionMap()
        self._meta = MetadataIndex(self.metadata_columns)
        self._dirty = False
        #: Last journal record written or replayed (a snapshot records the last one it holds).
        self._seq = 0
        self._snapshot_size = 0
        self._must_snapshot = False  # a write to disk failed: the next write saves everything
        self._replaying = False
        self._inner_cache: tuple[Any, Any] | None = None
        self._params_cache: dict[int, Any] = {}
        self._journal = Journal(self._path, f"FaissMirror '{self.name}'") if self._path is not None else None
        self._reset()
        if self._path is not None and (self._path.exists() or (self._journal is not None and self._journal.size())):
            self._load(self._path)

    # ------------------------------------------------------------------ description

    @property
    def kind(self) -> str:
        """``"flat"``, ``"hnsw"`` or ``"ivf"``."""
        return self._kind

    @property
    def path(self) -> Path | None:
        """The file the mirror persists to (None: memory only)."""
        return self._path

    @property
    def trained(self) -> bool:
        """False only for an IVF mirror still searching its exact flat stand-in (see ``train_size``)."""
        return self._trained

    @property
    def tombstones(self) -> int:
        """Dead HNSW nodes awaiting the next rebuild (always 0 for flat and IVF)."""
        return self._dead

    @property
    def faiss_index(self) -> Any:
        """The underlying Faiss index (read it, do not modify it behind the mirror's back)."""
        return self._index

    def thread_settings(self) -> Callable[[], None]:
        """Called in the thread that commits: a function that gives another thread that thread's
        Faiss OpenMP thread count. ``vk.attach`` and ``vk.drain`` run mirror writes in a worker
        thread (for their ``timeout``); a new thread starts at OpenMP's process default, so without
        this a ``faiss.omp_set_num_threads(1)`` made by the application would not hold there."""
        faiss, threads = self._faiss, self._faiss.omp_get_max_threads()

        def apply() -> None:
            if faiss.omp_get_max_threads() != threads:
                faiss.omp_set_num_threads(threads)

        return apply

    # ------------------------------------------------------------------ index construction

    def _reset(self) -> None:
        self._trained = self._kind != "ivf"
        self._index = self._new_index(trained=False)
        self._live: set[int] = set()
        self._norms: dict[int, float] = {}
        # HNSW only: which PK each node holds, which nodes are alive, and each live PK's node.
        self._slot_pk = np.zeros(0, dtype=np.int64)
        self._alive = np.zeros(0, dtype=bool)
        self._pos: dict[int, int] = {}
        self._dead = 0

    def _new_index(self, trained: bool) -> Any:
        faiss = self._faiss
        if self._kind == "hnsw":
            hnsw = faiss.IndexHNSWFlat(self.dim, self._m, self._metric)
            hnsw.hnsw.efConstruction = self._ef_construction
            hnsw.hnsw.efSearch = self._ef_search
            return faiss.IndexIDMap2(hnsw)
        if self._kind == "ivf" and trained:
            quantizer = faiss.IndexFlat(self.dim, self._metric)
            ivf = faiss.IndexIVFFlat(quantizer, self.dim, self._nlist, self._metric)
            ivf.nprobe = self._nprobe
            return ivf
        return faiss.IndexIDMap2(faiss.IndexFlat(self.dim, self._metric))

    def _stored_form(self, vectors: F32) -> tuple[F32, np.ndarray | None]:
        """What goes into Faiss (unit vectors for cosine) and, for cosine, the original norms."""
        if self.distance is not Distance.COSINE:
            return np.ascontiguousarray(vectors, dtype=np.float32), None
        norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64))  # float64 sums, no copy
        safe = np.where(norms > 0, norms, 1.0)
        return np.ascontiguousarray(vectors / safe[:, None].astype(np.float32), dtype=np.float32), norms

    def _reconstruct(self, pks: Sequence[int] | np.ndarray) -> F32:
        """Stored (normalised, for cosine) vectors of live ``pks``."""
        if not len(pks):
            return np.zeros((0, self.dim), dtype=np.float32)
        out = self._index.reconstruct_batch(np.asarray(pks, dtype=np.int64))
        return np.asarray(out, dtype=np.float32).reshape(len(pks), self.dim)

    def _train(self) -> None:
        pks = np.fromiter(sorted(self._live), dtype=np.int64, count=len(self._live))
        stored = self._reconstruct(pks)
        index = self._new_index(trained=True)
        index.train(stored)
        index.set_direct_map_type(self._faiss.DirectMap.Hashtable)
        index.add_with_ids(stored, pks)
        self._index, self._trained = index, True

    def compact(self) -> None:
        """Rebuild the index from the vectors it holds.

        HNSW drops its tombstones; IVF retrains its centroids on the current vectors (or trains now
        if it holds at least ``nlist`` vectors); flat has nothing to do.
        """
        with self._lock:
            self._check_open()
            if self._kind == "hnsw":
                self._rebuild_hnsw()
            elif self._kind == "ivf" and len(self._live) >= self._nlist:
                self._train()
            self._changed()

    def _rebuild_hnsw(self) -> None:
        inner = self._faiss.downcast_index(self._index.index)
        live_pos = np.flatnonzero(self._alive)
        stored = inner.reconstruct_n(0, inner.ntotal)[live_pos] if live_pos.size else np.zeros((0, self.dim), np.float32)
        pks = self._slot_pk[live_pos]
        index = self._new_index(trained=False)
        if pks.size:
            index.add_with_ids(np.ascontiguousarray(stored), pks)
        self._index = index
        self._slot_pk = pks.copy()
        self._alive = np.ones(pks.size, dtype=bool)
        self._pos = {int(pk): i for i, pk in enumerate(pks.tolist())}
        self._dead = 0

    # ------------------------------------------------------------------ writes

    def _upsert(self, batch: UpsertBatch) -> int:
        rows = self._versions.accepted_rows(batch.ids, batch.versions, batch.gte)
        if not rows:
            self._persist_pending()
            return 0
        everything = len(rows) == len(batch.ids)
        ids = batch.ids if everything else [batch.ids[i] for i in rows]
        vectors = batch.vectors if everything else batch.vectors[rows]
        pks = np.asarray(ids, dtype=np.int64)
        stored, norms = self._stored_form(vectors)
        try:
            if self._kind == "hnsw":
                self._kill(pks.tolist())
                start = self._index.ntotal
                self._index.add_with_ids(stored, pks)
                self._slot_pk = np.concatenate([self._slot_pk, pks])
                self._alive = np.concatenate([self._alive, np.ones(len(pks), dtype=bool)])
                self._pos.update((int(pk), start + j) for j, pk in enumerate(pks.tolist()))
            else:
                present = [pk for pk in pks.tolist() if pk in self._live]
                if present:
                    self._index.remove_ids(np.asarray(present, dtype=np.int64))
                self._index.add_with_ids(stored, pks)
        except RuntimeError as err:
            raise MirrorError(f"Faiss rejected a write to mirror '{self.name}': {err}") from err
        metadata = batch.metadata if everything else [batch.metadata[i] for i in rows]
        versions = None if batch.versions is None else batch.versions if everything else [batch.versions[i] for i in rows]
        self._live.update(ids)
        self._meta.put_many(zip(ids, metadata))
        if versions is not None:
            self._versions.update(zip(ids, versions))
        if norms is not None:
            self._norms.update(zip(ids, norms.tolist()))
        if not self._trained and len(self._live) >= self._train_size:
            self._train()
        self._maybe_rebuild()
        self._changed(("upsert", ids, versions, batch.gte, metadata, vectors))
        return len(rows)

    def _delete(self, batch: DeleteBatch) -> int:
        applied: list[int] = []
        gone: list[int] = []
        for i in self._versions.accepted_rows(batch.ids, batch.versions, batch.gte):
            pk = batch.ids[i]
            applied.append(i)
            # the tombstone: an older upsert stays ignored
            self._versions.record(pk, batch.versions[i] if batch.versions is not None else None)
            if pk in self._live:
                gone.append(pk)
        if gone:
            if self._kind == "hnsw":
                self._kill(gone)
            else:
                self._index.remove_ids(np.asarray(gone, dtype=np.int64))
            for pk in gone:
                self._live.discard(pk)
                self._meta.remove(pk)
                self._norms.pop(pk, None)
            self._maybe_rebuild()
        if not applied:
            self._persist_pending()
            return 0
        versions = None if batch.versions is None else [batch.versions[i] for i in applied]
        self._changed(("delete", [batch.ids[i] for i in applied], versions, batch.gte, None, None))
        return len(applied)

    def _kill(self, pks: list[int]) -> None:
        """HNSW: mark the nodes currently holding ``pks`` dead."""
        for pk in pks:
            pos = self._pos.pop(pk, None)
            if pos is not None:
                self._alive[pos] = False
                self._dead += 1

    def _maybe_rebuild(self) -> None:
        if self._kind == "hnsw" and self._dead and self._dead > self._tombstone_ratio * len(self._alive):
            self._rebuild_hnsw()

    def _changed(self, record: tuple[Any, ...] | None = None) -> None:
        """After a change: append ``record`` to the journal, or (``None``, or when due) write a snapshot."""
        self._dirty = True
        if self._replaying or not self.autosave or self._path is None or self._journal is None:
            return
        if record is None or self._must_snapshot or not self._path.exists() or self._journal_full():
            self._save()
            return
        self._seq += 1
        try:
            self._journal.append(self._seq, *record, dim=self.dim)
        except MirrorError:
            self._must_snapshot = True
            raise
        self._dirty = False

    def _journal_full(self) -> bool:
        assert self._journal is not None
        return self._journal.size() > max(MIN_JOURNAL_BYTES, self._snapshot_size)

    def _persist_pending(self) -> None:
        """A write that changed nothing still waits for an earlier change that failed to reach the disk."""
        if self._must_snapshot and self.autosave and self._path is not None:
            self._save()

    def _clear(self) -> None:
        self._reset()
        self._meta.clear()
        self._versions.clear()
        self._changed()

    # ------------------------------------------------------------------ reads

    def _search(self, query: F32, k: int, where: dict[str, tuple[Any, ...]]) -> list[tuple[Any, float]]:
        if not self._live:
            return []
        allowed: set[int] | None = None
        if where:
            allowed = self._meta.match(where)
            if not allowed:
                return []
            if len(allowed) <= max(self._exact_filter_limit, k):
                return self._exact(query, k, sorted(allowed))
        faiss = self._faiss
        k_eff = min(k, len(allowed) if allowed is not None else len(self._live))
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, self.dim)
        if self.distance is Distance.COSINE:
            norm = float(np.sqrt(np.dot(q[0], q[0])))
            if norm > 0:
                q = q / np.float32(norm)
        ids_arr = np.fromiter(allowed, dtype=np.int64, count=len(allowed)) if allowed is not None else None
        if self._kind == "hnsw":
            inner = self._hnsw()
            bits = None
            if ids_arr is None and not self._dead:
                params = self._hnsw_params(max(self._ef_search, k_eff))
            else:
                params = faiss.SearchParametersHNSW(efSearch=max(self._ef_search, k_eff))
                mask = self._alive.copy() if ids_arr is None else np.zeros(len(self._alive), dtype=bool)
                if ids_arr is not None:
                    mask[[self._pos[int(pk)] for pk in ids_arr.tolist()]] = True
                bits = np.packbits(mask, bitorder="little")
                params.sel = faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits))
            scores, labels = inner.search(q, k_eff, params=params)
            del bits  # the selector read it during the search; keep it alive until here
            slots, found = labels[0], scores[0]
            if slots[-1] < 0:  # fewer than k_eff reachable: faiss pads with -1
                keep = slots >= 0
                slots, found = slots[keep], found[keep]
            pks, found = self._slot_pk[slots].tolist(), found.tolist()
        else:
            if ids_arr is None and not (self._kind == "ivf" and self._trained):
                scores, labels = self._index.search(q, k_eff)
            else:
                params = faiss.SearchParametersIVF(nprobe=self._nprobe) if self._kind == "ivf" and self._trained else faiss.SearchParameters()
                if ids_arr is not None:
                    params.sel = faiss.IDSelectorBatch(ids_arr)
                scores, labels = self._index.search(q, k_eff, params=params)
            pks, found = labels[0].tolist(), scores[0].tolist()
            if pks[-1] == -1:  # a selector left fewer than k_eff: faiss pads with (-1, +-FLT_MAX)
                kept = [(pk, s) for pk, s in zip(pks, found) if not (pk == -1 and abs(s) >= _PAD_DISTANCE)]
                pks, found = [pk for pk, _ in kept], [s for _, s in kept]
        return self._with_distances(pks, found)

    def _hnsw(self) -> Any:
        """The HNSW index inside the id map (cached: downcasting costs a few microseconds per search)."""
        cached = self._inner_cache
        if cached is None or cached[0] is not self._index:
            cached = self._inner_cache = (self._index, self._faiss.downcast_index(self._index.index))
        return cached[1]

    def _hnsw_params(self, ef: int) -> Any:
        params = self._params_cache.get(ef)
        if params is None:
            params = self._params_cache[ef] = self._faiss.SearchParametersHNSW(efSearch=ef)
        return params

    def _with_distances(self, pks: list[Any], scores: list[float]) -> list[tuple[Any, float]]:
        """``(pk, distance)`` from faiss scores (inner products, or squared L2), in Python floats:
        for a handful of results this is several microseconds cheaper than numpy on tiny arrays."""
        if self.distance is Distance.COSINE:
            return [(pk, 1.0 - s) for pk, s in zip(pks, scores)]
        if self.distance is Distance.INNER_PRODUCT:
            return [(pk, -s) for pk, s in zip(pks, scores)]
        return [(pk, math.sqrt(s) if s > 0.0 else 0.0) for pk, s in zip(pks, scores)]

    def _exact(self, query: F32, k: int, pks: list[int]) -> list[tuple[Any, float]]:
        dists = exact_distances(self._reconstruct(pks), query, self.distance)
        order = np.argsort(dists, kind="stable")[:k]
        return [(pks[int(j)], float(dists[j])) for j in order]

    def _get(self, ids: list[Any]) -> dict[Any, np.ndarray]:
        pks = [pk for pk in ids if pk in self._live]
        stored = self._reconstruct(pks)
        if self.distance is Distance.COSINE:
            stored = (stored * np.array([self._norms.get(pk, 1.0) for pk in pks])[:, None]).astype(np.float32)
        return {pk: stored[i].copy() for i, pk in enumerate(pks)}

    def _ids(self) -> set[Any]:
        return set(self._live)

    def _count(self) -> int:
        return len(self._live)

    # ------------------------------------------------------------------ generations

    def _new_generation(self) -> FaissMirror:
        """An empty in-memory index with this mirror's settings (it reaches the file when swapped in)."""
        return FaissMirror(
            self.column,
            kind=self._kind,
            distance=self.distance,
            metadata_columns=self.metadata_columns,
            name=self.name,
            m=self._m,
            ef_construction=self._ef_construction,
            ef_search=self._ef_search,
            nlist=self._nlist,
            nprobe=self._nprobe,
            train_size=self._train_size,
            tombstone_ratio=self._tombstone_ratio,
            exact_filter_limit=self._exact_filter_limit,
            autosave=False,
        )

    def _adopt_generation(self, generation: Any) -> None:
        for attr in _STATE:
            setattr(self, attr, getattr(generation, attr))
        generation.close()  # memory only: nothing to save
        self._changed()  # one atomic save of the new generation

    def _recorded_versions(self, ids: list[Any]) -> dict[Any, int]:
        return self._versions.pick(ids)

    def _tombstone_ids(self) -> list[Any]:
        return [pk for pk, _ in self._versions.items() if pk not in self._live]

    def metadata(self, pk: int) -> dict[str, Any]:
        """The metadata stored for ``pk`` (empty if none)."""
        with self._lock:
            return dict(self._meta.get(pk))

    # ------------------------------------------------------------------ persistence

    def save(self) -> None:
        """Write the index and its side data to :attr:`path` atomically (see the module docstring)."""
        with self._lock:
            self._check_open()
            if self._path is None:
                raise InvalidMirrorError(f"FaissMirror '{self.name}' has no path to save to; pass path= when creating it.")
            self._save()

    def _close(self) -> None:
        if self._journal is not None:
            self._journal.close()
        if (self._dirty or self._must_snapshot) and self._path is not None:
            self._save()

    def _header(self) -> dict[str, Any]:
        live = sorted(self._live)
        return {
            "format": FORMAT,
            "kind": self._kind,
            "distance": self.distance.value,
            "dim": self.dim,
            "trained": self._trained,
            "seq": self._seq,
            "live": live,
            "norms": [self._norms[pk] for pk in live] if self.distance is Distance.COSINE else [],
            "versions": [[pk, v] for pk, v in self._versions.items()],
            "metadata": [[pk, md] for pk, md in self._meta.items()],
            "dead": np.flatnonzero(~self._alive).tolist() if self._kind == "hnsw" else [],
        }

    def _save(self) -> None:
        assert self._path is not None and self._journal is not None
        try:
            self._snapshot_size = write_snapshot(self._path, self._header(), self._index, self._faiss, f"FaissMirror '{self.name}'")
            self._journal.reset()  # the snapshot holds every record (a crash before this: seq skips them)
        except MirrorError:
            self._must_snapshot = True
            raise
        self._dirty = False
        self._must_snapshot = False

    def _load(self, path: Path) -> None:
        if path.exists():
            header, index = read_snapshot(path, self._faiss, f"FaissMirror '{self.name}'")
            self._snapshot_size = path.stat().st_size
            self._apply_header(path, header, index)
        assert self._journal is not None
        self._replaying = True
        try:
            for record in self._journal.records():
                if record.seq <= self._seq:
                    continue  # already in the snapshot
                if record.op == "upsert":
                    assert record.vectors is not None and record.metadata is not None
                    self._upsert(UpsertBatch(record.ids, np.array(record.vectors), record.metadata, record.versions, record.gte))
                else:
                    self._delete(DeleteBatch(record.ids, record.versions, record.gte))
                self._seq = record.seq
        finally:
            self._replaying = False
        self._dirty = False

    def _apply_header(self, path: Path, header: dict[str, Any], index: Any) -> None:
        faiss = self._faiss
        if header.get("format") != FORMAT:
            raise MirrorError(f"File '{path}' has FaissMirror format {header.get('format')!r}; this version reads format {FORMAT}.")
        for key, mine in (("kind", self._kind), ("distance", self.distance.value), ("dim", self.dim)):
            if header.get(key) != mine:
                raise InvalidMirrorError(
                    f"File '{path}' holds a Faiss mirror with {key} {header.get(key)!r}, but this mirror has {key} {mine!r}; "
                    "use a matching mirror or another path."
                )
        live = [int(pk) for pk in header["live"]]
        self._index = index
        self._trained = bool(header["trained"])
        self._seq = int(header.get("seq", 0))
        self._live = set(live)
        self._norms = {pk: float(n) for pk, n in zip(live, header["norms"])}
        self._versions.load((int(pk), int(v)) for pk, v in header["versions"])
        self._meta.clear()
        self._meta.put_many((int(pk), md) for pk, md in header["metadata"])
        if self._kind == "hnsw":
            self._slot_pk = faiss.vector_to_array(index.id_map).astype(np.int64)
            self._alive = np.ones(self._slot_pk.size, dtype=bool)
            self._alive[np.asarray(header["dead"], dtype=np.int64)] = False
            self._dead = int((~self._alive).sum())
            self._pos = {int(self._slot_pk[i]): int(i) for i in np.flatnonzero(self._alive)}
            held = len(self._pos)
        else:
            held = int(index.ntotal)
        if held != len(self._live):
            raise MirrorError(
                f"File '{path}' is inconsistent (index holds {held} vectors, side data {len(self._live)}); rebuild the mirror."
            )


def _check_int(knob: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidMirrorError(f"FaissMirror {knob}={value!r} is not a whole number of at least {low}.")
