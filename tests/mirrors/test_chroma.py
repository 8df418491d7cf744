"""ChromaMirror batches every call to the client's maximum batch size (``client.get_max_batch_size()``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import chromadb
import numpy as np
from chromadb.config import Settings

from sqlalchemy_vectorknobs.mirrors import ChromaMirror

from .test_contract import DIM, Doc

LIMIT = 7


class CountingCollection:
    """A real collection that records how many ids each call carried."""

    def __init__(self, inner: Any, calls: list[tuple[str, int]]) -> None:
        self._inner, self._calls = inner, calls

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _record(self, what: str, kw: dict[str, Any]) -> None:
        ids = kw.get("ids")
        self._calls.append((what, len(ids) if ids is not None else int(kw.get("limit") or 0)))

    def upsert(self, **kw: Any) -> Any:
        self._record("upsert", kw)
        return self._inner.upsert(**kw)

    def get(self, **kw: Any) -> Any:
        self._record("get", kw)
        return self._inner.get(**kw)

    def delete(self, **kw: Any) -> Any:
        self._record("delete", kw)
        return self._inner.delete(**kw)


class SmallBatchClient:
    """A real embedded client that reports a maximum batch size of ``LIMIT``."""

    def __init__(self, path: Path) -> None:
        self._inner = chromadb.PersistentClient(path=str(path), settings=Settings(anonymized_telemetry=False))
        self.calls: list[tuple[str, int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def get_max_batch_size(self) -> int:
        return LIMIT

    def get_or_create_collection(self, *args: Any, **kw: Any) -> Any:
        return CountingCollection(self._inner.get_or_create_collection(*args, **kw), self.calls)


def test_every_call_is_cut_to_the_clients_max_batch_size(tmp_path: Path) -> None:
    client = SmallBatchClient(tmp_path / "chroma")
    mirror = ChromaMirror(Doc.embedding, client=client, metadata_columns=["category"])
    n = 40
    vectors = np.random.default_rng(5).random((n, DIM)).astype(np.float32) + 0.1
    ids = list(range(1, n + 1))
    assert mirror.upsert(ids, vectors, [{"category": "ab"[i % 2]} for i in ids], versions=ids) == n
    assert set(mirror.get(ids)) == set(ids) and mirror.ids() == set(ids)
    assert mirror.delete(ids[:20], versions=[v + 100 for v in ids[:20]]) == 20
    assert mirror.upsert(ids[:20], vectors[:20], versions=ids[:20]) == 0  # tombstones, read in batches too
    generation = mirror.begin_generation()  # a rebuild goes through the same batching
    generation.write_generation((ids[20:], vectors[20:], [None] * 20, [None] * 20), (ids[:20], [v + 100 for v in ids[:20]]))
    assert mirror.end_generation(generation, swap=True)
    assert mirror.ids() == set(ids[20:]) and len(mirror.tombstone_ids()) == 20
    sizes = [size for _, size in client.calls]
    assert max(sizes) == LIMIT and {what for what, _ in client.calls} == {"upsert", "get", "delete"}
    mirror.close()


def test_the_limit_comes_from_the_client(tmp_path: Path) -> None:
    mirror = ChromaMirror(Doc.embedding, path=tmp_path / "chroma")
    assert mirror._batch == mirror.client.get_max_batch_size() > 1000
    mirror.close()
