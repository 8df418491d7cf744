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
    must match) and the mirror is written back by :meth:`save`. One file holds both the Faiss
    index and the side data (live ids, versions and tombstones, metadata, norms): a header, then
    the index in Faiss's own format. It is written to a temporary file in the same directory,
    fsynced and moved over ``path`` with ``os.replace`` (then the directory is fsynced), so a
    crash or error leaves either the old or the new file, never a mix of index and side data.
    ``autosave=True`` (the default) saves after every ``upsert``/``delete``/``clear`` that
    changed something, so an acknowledged write is durable; for bulk loads pass
    ``autosave=False`` and call :meth:`save` (``close()`` saves unsaved changes). If a save fails,
    the call raises :class:`MirrorError`, the file keeps its previous content, and the change stays
    in memory for the next save; a caller that retries the write (the outbox does) loses nothing.
    Without a path the index lives in memory only.
"""

from __future__ import annotations

import json
import os
import stat
import struct
import tempfile
from contextlib import suppress
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from .._optional import require
from ..distance import Distance
from ._local import MetadataIndex, VersionMap
from .base import F32, BaseMirror, DeleteBatch, InvalidMirrorError, MirrorError, UpsertBatch, exact_distances

__all__ = ["FaissMirror"]

KINDS = ("flat", "hnsw", "ivf")
MAGIC = b"VKFAISS\x01"
FORMAT = 1
_HEADER_LEN = struct.Struct("<Q")
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
        name: Optional[str] = None,
        m: int = 32,
        ef_construction: int = 128,
        ef_search: int = 64,
        nlist: int = 100,
        nprobe: int = 10,
        train_size: Optional[int] = None,
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
        self._reset()
        if self._path is not None and self._path.exists():
            self._load(self._path)

    # ------------------------------------------------------------------ description

    @property
    def kind(self) -> str:
        """``"flat"``, ``"hnsw"`` or ``"ivf"``."""
        return self._kind

    @property
    def path(self) -> Optional[Path]:
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

    def _stored_form(self, vectors: F32) -> tuple[F32, Optional[np.ndarray]]:
        """What goes into Faiss (unit vectors for cosine) and, for cosine, the original norms."""
        if self.distance is not Distance.COSINE:
            return np.ascontiguousarray(vectors, dtype=np.float32), None
        norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
        safe = np.where(norms > 0, norms, 1.0)
        return np.ascontiguousarray(vectors / safe[:, None], dtype=np.float32), norms

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
        rows = [
            i for i, pk in enumerate(batch.ids)
            if self._versions.accepts(pk, batch.versions[i] if batch.versions is not None else None, batch.gte)
        ]
        if not rows:
            return 0
        pks = np.asarray([batch.ids[i] for i in rows], dtype=np.int64)
        stored, norms = self._stored_form(batch.vectors[rows])
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
        for j, i in enumerate(rows):
            pk = batch.ids[i]
            self._live.add(pk)
            self._meta.put(pk, batch.metadata[i])
            self._versions.record(pk, batch.versions[i] if batch.versions is not None else None)
            if norms is not None:
                self._norms[pk] = float(norms[j])
        if not self._trained and len(self._live) >= self._train_size:
            self._train()
        self._maybe_rebuild()
        self._changed()
        return len(rows)

    def _delete(self, batch: DeleteBatch) -> int:
        applied = 0
        gone: list[int] = []
        for i, pk in enumerate(batch.ids):
            version = batch.versions[i] if batch.versions is not None else None
            if not self._versions.accepts(pk, version, batch.gte):
                continue
            applied += 1
            self._versions.record(pk, version)  # the tombstone: an older upsert stays ignored
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
        if applied:
            self._changed()
        return applied

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

    def _changed(self) -> None:
        self._dirty = True
        if self.autosave and self._path is not None:
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
        allowed: Optional[set[int]] = None
        if where:
            allowed = self._meta.match(where)
            if not allowed:
                return []
            if len(allowed) <= max(self._exact_filter_limit, k):
                return self._exact(query, k, sorted(allowed))
        faiss = self._faiss
        k_eff = min(k, len(allowed) if allowed is not None else len(self._live))
        q = self._stored_form(query[None, :])[0]
        ids_arr = np.fromiter(allowed, dtype=np.int64, count=len(allowed)) if allowed is not None else None
        if self._kind == "hnsw":
            inner = faiss.downcast_index(self._index.index)
            params = faiss.SearchParametersHNSW(efSearch=max(self._ef_search, k_eff))
            bits = None
            if ids_arr is not None or self._dead:
                mask = self._alive.copy() if ids_arr is None else np.zeros(len(self._alive), dtype=bool)
                if ids_arr is not None:
                    mask[[self._pos[int(pk)] for pk in ids_arr.tolist()]] = True
                bits = np.packbits(mask, bitorder="little")
                params.sel = faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits))
            scores, labels = inner.search(q, k_eff, params=params)
            del bits  # the selector read it during the search; keep it alive until here
            found = [(int(self._slot_pk[lab]), float(s)) for lab, s in zip(labels[0], scores[0]) if lab >= 0]
        else:
            sel = faiss.IDSelectorBatch(ids_arr) if ids_arr is not None else None
            if self._kind == "ivf" and self._trained:
                params = faiss.SearchParametersIVF(nprobe=self._nprobe)
            else:
                params = faiss.SearchParameters()
            if sel is not None:
                params.sel = sel
            scores, labels = self._index.search(q, k_eff, params=params)
            found = [
                (int(lab), float(s)) for lab, s in zip(labels[0], scores[0]) if not (lab == -1 and abs(s) >= _PAD_DISTANCE)
            ]
        return [(pk, self._to_distance(s)) for pk, s in found]

    def _to_distance(self, score: float) -> float:
        if self.distance is Distance.COSINE:
            return 1.0 - score
        if self.distance is Distance.INNER_PRODUCT:
            return -score
        return float(np.sqrt(max(score, 0.0)))

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
        if self._dirty and self._path is not None:
            self._save()

    def _header(self) -> bytes:
        live = sorted(self._live)
        body = {
            "format": FORMAT,
            "kind": self._kind,
            "distance": self.distance.value,
            "dim": self.dim,
            "trained": self._trained,
            "live": live,
            "norms": [self._norms[pk] for pk in live] if self.distance is Distance.COSINE else [],
            "versions": [[pk, v] for pk, v in self._versions.items()],
            "metadata": [[pk, md] for pk, md in self._meta.items()],
            "dead": np.flatnonzero(~self._alive).tolist() if self._kind == "hnsw" else [],
        }
        return json.dumps(body, separators=(",", ":")).encode("utf-8")

    def _save(self) -> None:
        assert self._path is not None
        path = self._path
        directory = path.resolve().parent
        header = self._header()
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
        except OSError as err:
            raise MirrorError(f"FaissMirror '{self.name}' could not create a file next to '{path}': {err}.") from err
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(MAGIC)
                f.write(_HEADER_LEN.pack(len(header)))
                f.write(header)
                self._faiss.write_index(self._index, self._faiss.PyCallbackIOWriter(f.write))
                f.flush()
                os.fsync(f.fileno())
            with suppress(FileNotFoundError):
                os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
            os.replace(tmp, path)
        except BaseException as err:
            with suppress(OSError):
                os.unlink(tmp)
            if isinstance(err, Exception):
                raise MirrorError(
                    f"FaissMirror '{self.name}' could not save to '{path}' ({err}); the previous file is unchanged."
                ) from err
            raise
        _fsync_directory(directory)
        self._dirty = False

    def _load(self, path: Path) -> None:
        faiss = self._faiss
        try:
            with open(path, "rb") as f:
                if f.read(len(MAGIC)) != MAGIC:
                    raise MirrorError(f"File '{path}' is not a FaissMirror file; pass another path or delete it.")
                (size,) = _HEADER_LEN.unpack(f.read(_HEADER_LEN.size))
                header = json.loads(f.read(size).decode("utf-8"))
                index = faiss.read_index(faiss.PyCallbackIOReader(f.read))
        except MirrorError:
            raise
        except (OSError, ValueError, struct.error, RuntimeError) as err:
            raise MirrorError(f"FaissMirror '{self.name}' could not read '{path}': {err}.") from err
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
        self._live = set(live)
        self._norms = {pk: float(n) for pk, n in zip(live, header["norms"])}
        self._versions.load((int(pk), int(v)) for pk, v in header["versions"])
        self._meta.clear()
        for pk, md in header["metadata"]:
            self._meta.put(int(pk), md)
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
        self._dirty = False


def _check_int(knob: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidMirrorError(f"FaissMirror {knob}={value!r} is not a whole number of at least {low}.")


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable (POSIX); platforms that cannot open directories skip it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
