"""``ChromaMirror``: a vector column mirrored into a Chroma collection (embedded PersistentClient or a given client).

::

    mirror = vk.ChromaMirror(Doc.embedding, path="chroma-data", metadata_columns=["category"])
    mirror.upsert(ids, vectors, [{"category": c} for c in categories])
    mirror.search(query, k=10, where={"category": "news"})

* Never downloads a model: collections are opened with ``embedding_function=None`` and every call
  passes embeddings (``embeddings=``, ``query_embeddings=``) explicitly.
* The collection (default ``vk_<table>_<column>``) is created with ``metadata={"hnsw:space": ...}``
  matching the distance (``cosine``, ``l2``, ``ip``); an existing collection with another space is
  refused. Chroma's distances are converted to the plugin's units (checked against Chroma 1.5):
  cosine is already ``1 - cos``; ``l2`` is *squared* Euclidean, so its square root is reported;
  ``ip`` is ``1 - dot``, so ``distance - 1`` (the negative dot product) is reported.
* Ids are primary keys as strings (integer, string and UUID keys) and come back as the key type.
* Metadata columns become Chroma metadata; ``where`` becomes a Chroma filter (``$in`` for lists,
  ``$and`` for several columns). Each record also carries ``_vk_version`` when it has a version.
* Versioned deletes keep a tombstone (the id and its version) in a companion collection
  ``<collection>_vk_tombstones`` (one-dimensional placeholder embeddings; it is never searched),
  so an older upsert arriving later is ignored. Versions are checked by reading the current ones
  before each write, under the mirror's lock: two *processes* writing the same ids concurrently
  can race; the session sync layer writes from one place.
* Search is Chroma's approximate HNSW search.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._optional import require
from ..distance import Distance
from .base import F32, BaseMirror, DeleteBatch, InvalidMirrorError, MirrorError, UpsertBatch

__all__ = ["ChromaMirror"]

VERSION_KEY = "_vk_version"
TOMBSTONE_SUFFIX = "_vk_tombstones"
#: Where a rebuild builds the next generation, and where the replaced one waits to be deleted.
REBUILD_SUFFIX = "_vk_rebuild"
RETIRED_SUFFIX = "_vk_retired"
_SPACES = {Distance.COSINE: "cosine", Distance.L2: "l2", Distance.INNER_PRODUCT: "ip"}
_PAGE = 1000


class ChromaMirror(BaseMirror):
    """A Chroma collection mirroring one vector column (see the module docstring)."""

    backend = "chroma"

    def __init__(
        self,
        column: Any,
        *,
        path: str | os.PathLike[str] | None = None,
        client: Any = None,
        collection: str | None = None,
        distance: Distance | str | None = None,
        metadata_columns: Sequence[str] = (),
        name: str | None = None,
        collection_metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(column, distance=distance, metadata_columns=metadata_columns, name=name)
        if (path is None) == (client is None):
            raise InvalidMirrorError("ChromaMirror needs exactly one of path= (an embedded PersistentClient) or client=.")
        chromadb = require("chromadb", extra="chroma", feature="ChromaMirror")
        self._owns_client = client is None
        if client is None:
            from chromadb.config import Settings

            try:
                client = chromadb.PersistentClient(path=os.fspath(path or ""), settings=Settings(anonymized_telemetry=False))
            except Exception as err:
                raise MirrorError(f"ChromaMirror could not open a Chroma database at '{path}': {err}.") from err
        self._client = client
        self._collection_name = collection if collection is not None else _default_name(self.table.name, self.column.name)
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{1,}[A-Za-z0-9]", self._collection_name):
            raise InvalidMirrorError(
                f"ChromaMirror collection name {self._collection_name!r} is not valid; use 3 or more letters, digits, "
                "'.', '_' or '-', starting and ending with a letter or digit."
            )
        self._space = _SPACES[self.distance]
        self._extra_metadata = dict(collection_metadata or {})
        self._batch = max(1, int(client.get_max_batch_size())) if hasattr(client, "get_max_batch_size") else 5000
        self._open_collections()

    @property
    def client(self) -> Any:
        """The Chroma client in use."""
        return self._client

    @property
    def collection(self) -> Any:
        """The Chroma collection holding the vectors."""
        return self._main

    def _open_collections(self) -> None:
        try:
            self._main = self._client.get_or_create_collection(
                self._collection_name,
                embedding_function=None,
                metadata={"hnsw:space": self._space, **self._extra_metadata},
            )
            self._tombs = self._client.get_or_create_collection(
                self._collection_name + TOMBSTONE_SUFFIX, embedding_function=None
            )
        except Exception as err:
            raise MirrorError(f"ChromaMirror could not open collection '{self._collection_name}': {err}.") from err
        space = _collection_space(self._main)
        if space is not None and space != self._space:
            raise InvalidMirrorError(
                f"Chroma collection '{self._collection_name}' uses space {space!r}, but mirror '{self.name}' ranks by "
                f"{self.distance.value} (space {self._space!r}); use another collection name."
            )

    # ------------------------------------------------------------------ versions

    def _recorded(self, keys: list[str]) -> tuple[dict[str, int], set[str], set[str]]:
        """(recorded version per key, keys with a live record, keys with a tombstone)."""
        versions: dict[str, int] = {}
        live: set[str] = set()
        tombs: set[str] = set()
        for start in range(0, len(keys), self._batch):
            chunk = keys[start : start + self._batch]
            for coll, seen in ((self._main, live), (self._tombs, tombs)):
                got = self._call("read versions from", coll.get, ids=chunk, include=["metadatas"])
                for key, md in zip(got["ids"], got["metadatas"] or [None] * len(got["ids"])):
                    seen.add(key)
                    v = (md or {}).get(VERSION_KEY)
                    if isinstance(v, int) and v > versions.get(key, 0):
                        versions[key] = v
        return versions, live, tombs

    # ------------------------------------------------------------------ writes

    def _upsert(self, batch: UpsertBatch) -> int:
        keys = [self.pk_to_str(pk) for pk in batch.ids]
        recorded, _, tombs = self._recorded(keys)
        rows: list[int] = []
        metadatas: list[dict[str, Any]] = []
        for i, key in enumerate(keys):
            version = batch.versions[i] if batch.versions is not None else None
            current = recorded.get(key)
            if version is not None and current is not None and (version < current if batch.gte else version <= current):
                continue
            rows.append(i)
            # Chroma merges metadata on upsert; None removes a key, so every column is named.
            md: dict[str, Any] = {col: batch.metadata[i].get(col) for col in self.metadata_columns}
            md[VERSION_KEY] = version if version is not None else current
            metadatas.append(md)
        for start in range(0, len(rows), self._batch):
            part = rows[start : start + self._batch]
            self._call(
                "write to",
                self._main.upsert,
                ids=[keys[i] for i in part],
                embeddings=batch.vectors[part],
                metadatas=metadatas[start : start + self._batch],
            )
        revived = [keys[i] for i in rows if keys[i] in tombs]
        for start in range(0, len(revived), self._batch):
            self._call("write to", self._tombs.delete, ids=revived[start : start + self._batch])
        return len(rows)

    def _delete(self, batch: DeleteBatch) -> int:
        keys = [self.pk_to_str(pk) for pk in batch.ids]
        recorded, live, _ = self._recorded(keys)
        gone: list[str] = []
        tomb_keys: list[str] = []
        tomb_versions: list[int] = []
        for i, key in enumerate(keys):
            version = batch.versions[i] if batch.versions is not None else None
            current = recorded.get(key)
            if version is not None and current is not None and (version < current if batch.gte else version <= current):
                continue
            gone.append(key)
            keep = version if version is not None else current
            if keep is not None:
                tomb_keys.append(key)
                tomb_versions.append(keep)
        doomed = [key for key in gone if key in live]
        for start in range(0, len(doomed), self._batch):
            self._call("delete from", self._main.delete, ids=doomed[start : start + self._batch])
        for start in range(0, len(tomb_keys), self._batch):
            chunk = tomb_keys[start : start + self._batch]
            self._call(
                "write tombstones to",
                self._tombs.upsert,
                ids=chunk,
                embeddings=np.zeros((len(chunk), 1), dtype=np.float32),
                metadatas=[{VERSION_KEY: v} for v in tomb_versions[start : start + self._batch]],
            )
        return len(gone)

    def _clear(self) -> None:
        self._drop_collections(self._collection_name)  # reopening reports real failures
        self._open_collections()

    def _close(self) -> None:
        if self._owns_client and hasattr(self._client, "close"):
            try:
                self._client.close()
            except Exception:  # noqa: BLE001 - closing must not mask the caller's work
                pass

    # ------------------------------------------------------------------ generations

    def _new_generation(self) -> ChromaMirror:
        """Collections ``<collection>_vk_rebuild`` (and its tombstones) on the same client."""
        name = self._collection_name + REBUILD_SUFFIX
        self._drop_collections(name)  # left over from a rebuild that died
        return ChromaMirror(
            self.column,
            client=self._client,
            collection=name,
            distance=self.distance,
            metadata_columns=self.metadata_columns,
            name=self.name,
            collection_metadata=self._extra_metadata,
        )

    def _adopt_generation(self, generation: Any) -> None:
        # Renames keep the collection ids, so the handles stay valid; the old collections move
        # aside before the new ones take their names, and are deleted last.
        retired = self._collection_name + RETIRED_SUFFIX
        self._drop_collections(retired)
        try:
            self._main.modify(name=retired)
            self._tombs.modify(name=retired + TOMBSTONE_SUFFIX)
            generation._main.modify(name=self._collection_name)
            generation._tombs.modify(name=self._collection_name + TOMBSTONE_SUFFIX)
        except Exception as err:
            raise MirrorError(
                f"ChromaMirror '{self.name}' could not swap in the rebuilt collection '{generation._collection_name}': {err}."
            ) from err
        self._main, self._tombs = generation._main, generation._tombs
        generation.close()
        self._drop_collections(retired)

    def _discard_generation(self, generation: Any) -> None:
        generation.close()
        self._drop_collections(generation._collection_name)

    def _drop_collections(self, name: str) -> None:
        for coll_name in (name, name + TOMBSTONE_SUFFIX):
            try:
                self._client.delete_collection(coll_name)
            except Exception:  # noqa: BLE001 - absent is fine
                pass

    def _recorded_versions(self, ids: list[Any]) -> dict[Any, int]:
        versions, _, _ = self._recorded([self.pk_to_str(pk) for pk in ids])
        return {self.pk_from_str(key): v for key, v in versions.items()}

    def _tombstone_ids(self) -> list[Any]:
        return [self.pk_from_str(key) for key in self._list(self._tombs)]

    # ------------------------------------------------------------------ reads

    def _search(self, query: F32, k: int, where: dict[str, tuple[Any, ...]]) -> list[tuple[Any, float]]:
        clauses = [{col: vals[0]} if len(vals) == 1 else {col: {"$in": list(vals)}} for col, vals in where.items()]
        chroma_where = None if not clauses else clauses[0] if len(clauses) == 1 else {"$and": clauses}
        got = self._call(
            "search",
            self._main.query,
            query_embeddings=[query],
            n_results=k,
            where=chroma_where,
            include=["distances"],
        )
        keys = got["ids"][0] if got["ids"] else []
        dists = got["distances"][0] if got.get("distances") else []
        out = [(self.pk_from_str(key), self._to_distance(float(d))) for key, d in zip(keys, dists)]
        out.sort(key=lambda item: item[1])
        return out

    def _to_distance(self, value: float) -> float:
        if self.distance is Distance.L2:
            return float(np.sqrt(max(value, 0.0)))
        if self.distance is Distance.INNER_PRODUCT:
            return value - 1.0
        return value

    def _get(self, ids: list[Any]) -> dict[Any, np.ndarray]:
        out: dict[Any, np.ndarray] = {}
        keys = [self.pk_to_str(pk) for pk in ids]
        for start in range(0, len(keys), self._batch):
            got = self._call("read from", self._main.get, ids=keys[start : start + self._batch], include=["embeddings"])
            for key, emb in zip(got["ids"], got["embeddings"] if got["embeddings"] is not None else []):
                out[self.pk_from_str(key)] = np.asarray(emb, dtype=np.float32)
        return out

    def _ids(self) -> set[Any]:
        return {self.pk_from_str(key) for key in self._list(self._main)}

    def _list(self, collection: Any) -> list[str]:
        out: list[str] = []
        page = min(_PAGE, self._batch)
        while True:
            got = self._call("list", collection.get, include=[], limit=page, offset=len(out))
            out.extend(got["ids"])
            if len(got["ids"]) < page:
                return out

    def _count(self) -> int:
        return int(self._call("count", self._main.count))

    def _call(self, what: str, fn: Any, **kw: Any) -> Any:
        try:
            return fn(**kw)
        except Exception as err:
            raise MirrorError(f"ChromaMirror '{self.name}' could not {what} collection '{self._collection_name}': {err}.") from err


def _default_name(table: str, column: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]", "_", f"vk_{table}_{column}")
    return name.rstrip("._-") or "vk_vectors"


def _collection_space(collection: Any) -> str | None:
    meta = getattr(collection, "metadata", None) or {}
    space = meta.get("hnsw:space")
    if space is None:
        config = getattr(collection, "configuration_json", None) or {}
        space = (config.get("hnsw") or {}).get("space")
    return space if isinstance(space, str) else None
