"""``MemoryMirror``: an exact, in-process mirror computed with numpy — the reference every mirror is tested against.

Nothing is persisted and every search is brute force in float64, so results are exact (ties keep
insertion order). Useful as the oracle in tests, for small tables and for trying the mirror API::

    mirror = vk.MemoryMirror(Doc.embedding, metadata_columns=["category"])
    mirror.upsert([1, 2], [[1, 0, 0], [0, 1, 0]], [{"category": "a"}, {"category": "b"}])
    mirror.search([1, 0.1, 0], k=1)                          # [(1, 0.00496...)]
    mirror.search([1, 0.1, 0], k=1, where={"category": "b"}) # [(2, 0.9004...)]

Integer, string and UUID keys are checked against the key column's type; any other hashable
key is accepted as is. Versions and tombstones live in memory with the vectors.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..distance import Distance
from ._local import MetadataIndex, VersionMap
from .base import F32, BaseMirror, DeleteBatch, UpsertBatch, exact_distances

__all__ = ["MemoryMirror"]


class MemoryMirror(BaseMirror):
    """Exact brute-force mirror held in memory (see the module docstring)."""

    backend = "memory"
    pk_types = (int, str, uuid.UUID, object)  # the key column's own type when it is one of these

    def __init__(
        self,
        column: Any,
        *,
        distance: Distance | str | None = None,
        metadata_columns: Sequence[str] = (),
        name: str | None = None,
    ) -> None:
        super().__init__(column, distance=distance, metadata_columns=metadata_columns, name=name)
        self._vectors: dict[Any, F32] = {}
        self._versions = VersionMap()
        self._meta = MetadataIndex(self.metadata_columns)
        self._matrix: tuple[list[Any], np.ndarray] | None = None

    def _upsert(self, batch: UpsertBatch) -> int:
        rows = self._versions.accepted_rows(batch.ids, batch.versions, batch.gte)
        for i in rows:
            pk = batch.ids[i]
            self._vectors.pop(pk, None)  # re-insert: an updated id moves to the end, like a new row
            self._vectors[pk] = batch.vectors[i].copy()
            self._meta.put(pk, batch.metadata[i])
            self._versions.record(pk, batch.versions[i] if batch.versions is not None else None)
        self._matrix = None
        return len(rows)

    def _delete(self, batch: DeleteBatch) -> int:
        rows = self._versions.accepted_rows(batch.ids, batch.versions, batch.gte)
        for i in rows:
            pk = batch.ids[i]
            self._vectors.pop(pk, None)
            self._meta.remove(pk)
            # the tombstone: an older upsert stays ignored
            self._versions.record(pk, batch.versions[i] if batch.versions is not None else None)
        self._matrix = None
        return len(rows)

    def _search(self, query: F32, k: int, where: dict[str, tuple[Any, ...]]) -> list[tuple[Any, float]]:
        if self._matrix is None:
            keys = list(self._vectors)
            mat = np.stack([self._vectors[pk] for pk in keys]) if keys else np.zeros((0, self.dim), np.float32)
            self._matrix = (keys, mat)
        keys, mat = self._matrix
        if where:
            allowed = self._meta.match(where)
            rows = np.array([i for i, pk in enumerate(keys) if pk in allowed], dtype=np.int64)
        else:
            rows = np.arange(len(keys))
        if not rows.size:
            return []
        dists = exact_distances(mat[rows], query, self.distance)
        order = np.argsort(dists, kind="stable")[:k]
        return [(keys[int(rows[j])], float(dists[j])) for j in order]

    def _get(self, ids: list[Any]) -> dict[Any, np.ndarray]:
        return {pk: self._vectors[pk].copy() for pk in ids if pk in self._vectors}

    def _ids(self) -> set[Any]:
        return set(self._vectors)

    def _count(self) -> int:
        return len(self._vectors)

    def _clear(self) -> None:
        self._vectors.clear()
        self._meta.clear()
        self._versions.clear()
        self._matrix = None

    # ------------------------------------------------------------------ generations

    def _new_generation(self) -> MemoryMirror:
        return MemoryMirror(self.column, distance=self.distance, metadata_columns=self.metadata_columns, name=self.name)

    def _adopt_generation(self, generation: Any) -> None:
        self._vectors, self._versions, self._meta = generation._vectors, generation._versions, generation._meta
        self._matrix = None
        generation.close()

    def _recorded_versions(self, ids: list[Any]) -> dict[Any, int]:
        return self._versions.pick(ids)

    def _tombstone_ids(self) -> list[Any]:
        return [pk for pk, _ in self._versions.items() if pk not in self._vectors]

    def metadata(self, pk: Any) -> dict[str, Any]:
        """The metadata stored for ``pk`` (empty if none)."""
        with self._lock:
            return dict(self._meta.get(pk))
