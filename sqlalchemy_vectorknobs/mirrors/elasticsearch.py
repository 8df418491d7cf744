"""``ElasticsearchMirror``: a vector column mirrored into an Elasticsearch index — the scale-out path.

::

    mirror = vk.ElasticsearchMirror(Doc.embedding, url="http://localhost:9200", metadata_columns=["category"])
    mirror.upsert(ids, vectors, [{"category": c} for c in categories], versions=outbox_ids)
    mirror.search(query, k=10, where={"category": ["news", "blog"]})

Uses the official ``elasticsearch`` client (9.x, for Elasticsearch 9.1 or later); pass ``client=``
or ``url=`` (plus ``client_options=`` for authentication and TLS). The index (default
``vk_<table>_<column>``) is created on first use with this mapping::

    <column>:    dense_vector, dims, index: true, similarity cosine | l2_norm | max_inner_product,
                 index_options (default {"type": "hnsw"}: unquantized, so scores are exact floats)
    vk_pk:       long or keyword (the primary key, for paging through ids)
    vk_deleted:  boolean (tombstones, see below)
    <metadata>:  boolean / long / double / keyword after the SQLAlchemy column type

An existing index must have the same dims and similarity. A server that cannot be reached raises
:class:`MirrorError` at the first operation, not at construction.

Writes are ``_bulk`` requests of ``chunk_size`` documents with ``refresh=`` (default ``"wait_for"``:
a write is searchable when the call returns; ``False`` is faster for bulk loads, and then
``search``, ``get``, ``ids`` and ``count`` see writes only after the index's next refresh). Versioned writes
use ``version_type=external``; Elasticsearch rejects a version not greater than the stored one with
a 409, which the mirror counts as an ignored stale write. A versioned delete is written as a
*tombstone document* (``vk_deleted: true``, no vector, external version) rather than a real delete,
because Elasticsearch forgets deleted versions after ``index.gc_deletes`` (60 s): the tombstone
keeps an older upsert from resurrecting the vector however late it arrives. Tombstones have no
vector, so kNN never returns them; counts and id listings exclude them. An unversioned write reads
the current ``_version`` first and writes with ``version_type=external_gte`` at that version (0 for a
new document), so it keeps the recorded version, like the other mirrors.

Search is a ``knn`` query (``k``, ``num_candidates``, metadata ``filter`` as ``term``/``terms``), and
``_score`` is turned back into the plugin's distance units with Elasticsearch's documented formulas:
cosine ``score = (1 + cos) / 2`` so ``distance = 2 - 2 * score``; l2_norm ``score = 1 / (1 + l2²)``
so ``distance = sqrt(1 / score - 1)``; max_inner_product ``score = 1 / (1 - ip)`` when ``ip < 0``
else ``ip + 1``, and the distance is ``-ip``. Scores are 32-bit floats, so distances carry about
``1e-7`` relative error. ``cosine`` rejects zero vectors (an Elasticsearch rule); the write fails
with :class:`MirrorError`.

``get()`` reads vectors back through ``_source`` with ``exclude_vectors: false`` (Elasticsearch 9.2+
leaves vectors out of ``_source`` by default).
"""

from __future__ import annotations

import math
import re
import uuid
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import sqlalchemy as sa

from .._optional import require
from ..distance import Distance
from .base import F32, BaseMirror, DeleteBatch, InvalidMirrorError, MirrorError, UpsertBatch

__all__ = ["ElasticsearchMirror"]

PK_FIELD = "vk_pk"
DELETED_FIELD = "vk_deleted"
_SIMILARITY = {Distance.COSINE: "cosine", Distance.L2: "l2_norm", Distance.INNER_PRODUCT: "max_inner_product"}
_MAX_K = 10_000
_PAGE = 1000
_LIVE = {"term": {DELETED_FIELD: False}}


class ElasticsearchMirror(BaseMirror):
    """An Elasticsearch index mirroring one vector column (see the module docstring)."""

    backend = "elasticsearch"

    def __init__(
        self,
        column: Any,
        *,
        client: Any = None,
        url: Optional[str] = None,
        index: Optional[str] = None,
        distance: Distance | str | None = None,
        metadata_columns: Sequence[str] = (),
        name: Optional[str] = None,
        refresh: bool | str = "wait_for",
        num_candidates: int = 100,
        index_options: Optional[Mapping[str, Any]] = None,
        settings: Optional[Mapping[str, Any]] = None,
        chunk_size: int = 500,
        client_options: Optional[Mapping[str, Any]] = None,
    ) -> None:
        super().__init__(column, distance=distance, metadata_columns=metadata_columns, name=name)
        if (client is None) == (url is None):
            raise InvalidMirrorError("ElasticsearchMirror needs exactly one of client= or url=.")
        if refresh not in (True, False, "wait_for"):
            raise InvalidMirrorError(f"ElasticsearchMirror refresh={refresh!r} is not one of True, False or 'wait_for'.")
        for knob, value in (("num_candidates", num_candidates), ("chunk_size", chunk_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidMirrorError(f"ElasticsearchMirror {knob}={value!r} is not a positive whole number.")
        es = require("elasticsearch", extra="elasticsearch", feature="ElasticsearchMirror")
        self._es = es
        self._owns_client = client is None
        if client is None:
            client = es.Elasticsearch(url, **dict(client_options or {}))
        self._client = client
        self._where = url or "the Elasticsearch server"
        self._index = index if index is not None else f"vk_{self.table.name}_{self.column.name}".lower()
        if not re.fullmatch(r"[a-z0-9][a-z0-9_.+-]*", self._index) or self._index in (".", ".."):
            raise InvalidMirrorError(
                f"ElasticsearchMirror index name {self._index!r} is not valid; use lowercase letters, digits, '_', '-', '.' or '+'."
            )
        self._field = self.column.name
        self._refresh = refresh
        self._num_candidates = min(num_candidates, _MAX_K)
        self._index_options = dict(index_options) if index_options is not None else {"type": "hnsw"}
        self._settings = dict(settings or {})
        self._chunk = chunk_size
        self._ready = False

    @property
    def client(self) -> Any:
        """The Elasticsearch client in use."""
        return self._client

    @property
    def index(self) -> str:
        """The index name."""
        return self._index

    # ------------------------------------------------------------------ the index

    def mapping(self) -> dict[str, Any]:
        """The mapping the mirror creates its index with."""
        props: dict[str, Any] = {
            self._field: {
                "type": "dense_vector",
                "dims": self.dim,
                "index": True,
                "similarity": _SIMILARITY[self.distance],
                "index_options": self._index_options,
            },
            PK_FIELD: {"type": "long" if self._pk_type is int else "keyword"},
            DELETED_FIELD: {"type": "boolean"},
        }
        for name in self.metadata_columns:
            props[name] = {"type": _field_type(self.table.c[name])}
        return {"dynamic": "strict", "properties": props}

    def _ensure_index(self) -> None:
        if self._ready:
            return
        exists = bool(self._call("check", self._client.indices.exists, index=self._index))
        if not exists:
            body: dict[str, Any] = {"index": self._index, "mappings": self.mapping()}
            if self._settings:
                body["settings"] = self._settings
            try:
                self._client.indices.create(**body)
            except self._es.ApiError as err:
                if _error_type(err) != "resource_already_exists_exception":
                    raise self._failure("create", err) from err
            except self._es.TransportError as err:
                raise self._failure("create", err) from err
        got = self._call("read the mapping of", self._client.indices.get_mapping, index=self._index)
        first: dict[str, Any] = next(iter(dict(got.body).values()), {})
        props: dict[str, Any] = (first.get("mappings") or {}).get("properties") or {}
        field = props.get(self._field) or {}
        expected = _SIMILARITY[self.distance]
        if field.get("type") != "dense_vector" or field.get("dims") != self.dim or field.get("similarity", "cosine") != expected:
            raise InvalidMirrorError(
                f"Elasticsearch index '{self._index}' maps '{self._field}' as {field or 'nothing'}, but mirror '{self.name}' "
                f"needs dense_vector dims={self.dim} similarity={expected}; use another index name."
            )
        self._ready = True

    # ------------------------------------------------------------------ writes

    def _current_versions(self, keys: list[str]) -> dict[str, int]:
        """``_version`` of each key that exists (tombstones included), read in real time."""
        out: dict[str, int] = {}
        for start in range(0, len(keys), _PAGE):
            got = self._call("read from", self._client.mget, index=self._index, ids=keys[start : start + _PAGE], source=False)
            for doc in got["docs"]:
                if doc.get("found"):
                    out[doc["_id"]] = int(doc["_version"])
        return out

    def _doc(self, pk: Any, vector: Optional[F32], metadata: Mapping[str, Any]) -> dict[str, Any]:
        doc: dict[str, Any] = {PK_FIELD: self.pk_to_str(pk) if self._pk_type is not int else pk, DELETED_FIELD: vector is None}
        if vector is not None:
            doc[self._field] = vector.tolist()
            doc.update(metadata)
        return doc

    def _upsert(self, batch: UpsertBatch) -> int:
        self._ensure_index()
        keys = [self.pk_to_str(pk) for pk in batch.ids]
        current = self._current_versions(keys) if batch.versions is None else {}
        ops: list[dict[str, Any]] = []
        for i, key in enumerate(keys):
            ops.append({"index": {"_index": self._index, "_id": key, **self._version_args(key, batch.versions, i, current)}})
            ops.append(self._doc(batch.ids[i], batch.vectors[i], batch.metadata[i]))
        return self._bulk(ops, len(keys))

    def _delete(self, batch: DeleteBatch) -> int:
        self._ensure_index()
        keys = [self.pk_to_str(pk) for pk in batch.ids]
        current = self._current_versions(keys) if batch.versions is None else {}
        ops: list[dict[str, Any]] = []
        applied_without_write = 0
        for i, key in enumerate(keys):
            if batch.versions is None and current.get(key, 0) == 0:
                if key in current:
                    ops.append({"delete": {"_index": self._index, "_id": key}})
                else:
                    applied_without_write += 1  # absent and never versioned: nothing to remember
                continue
            ops.append({"index": {"_index": self._index, "_id": key, **self._version_args(key, batch.versions, i, current)}})
            ops.append(self._doc(batch.ids[i], None, {}))
        n_ops = sum(1 for op in ops if "index" in op or "delete" in op)
        return applied_without_write + (self._bulk(ops, n_ops) if ops else 0)

    @staticmethod
    def _version_args(key: str, versions: Optional[list[int]], i: int, current: dict[str, int]) -> dict[str, Any]:
        if versions is not None:
            return {"version": versions[i], "version_type": "external"}
        # keep the recorded version: external_gte at the current one (0 for a new document)
        return {"version": current.get(key, 0), "version_type": "external_gte"}

    def _bulk(self, ops: list[dict[str, Any]], n: int) -> int:
        applied = 0
        failures: list[str] = []
        actions = [j for j, op in enumerate(ops) if "index" in op or "delete" in op]
        for start in range(0, len(actions), self._chunk):
            first = actions[start]
            last = actions[start + self._chunk] if start + self._chunk < len(actions) else len(ops)
            resp = self._call("write to", self._client.bulk, operations=ops[first:last], refresh=self._refresh)
            for item in resp["items"]:
                result = next(iter(item.values()))
                status = int(result.get("status", 500))
                if 200 <= status < 300 or (status == 404 and "delete" in item):
                    applied += 1
                elif status == 409:
                    continue  # version conflict: a newer version is already there
                else:
                    err = result.get("error") or {}
                    failures.append(f"{err.get('type', status)}: {err.get('reason', 'no reason given')}")
        if failures:
            raise MirrorError(
                f"Elasticsearch rejected {len(failures)} of {n} writes to index '{self._index}'; first: {failures[0]}."
            )
        return applied

    def _clear(self) -> None:
        try:
            self._client.indices.delete(index=self._index)
        except self._es.NotFoundError:
            pass
        except (self._es.ApiError, self._es.TransportError) as err:
            raise self._failure("delete", err) from err
        self._ready = False
        self._ensure_index()

    def _close(self) -> None:
        if self._owns_client:
            try:
                self._client.close()
            except Exception:  # noqa: BLE001 - closing must not mask the caller's work
                pass

    # ------------------------------------------------------------------ reads

    def _search(self, query: F32, k: int, where: dict[str, tuple[Any, ...]]) -> list[tuple[Any, float]]:
        if k > _MAX_K:
            raise InvalidMirrorError(f"ElasticsearchMirror search k={k} is above Elasticsearch's limit of {_MAX_K}.")
        self._ensure_index()
        knn: dict[str, Any] = {
            "field": self._field,
            "query_vector": query.tolist(),
            "k": k,
            "num_candidates": max(self._num_candidates, k),
        }
        filters = [
            {"term": {col: vals[0]}} if len(vals) == 1 else {"terms": {col: list(vals)}} for col, vals in where.items()
        ]
        if filters:
            knn["filter"] = filters
        resp = self._call("search", self._client.search, index=self._index, knn=knn, size=k, source=False)
        out = [(self.pk_from_str(hit["_id"]), self._to_distance(float(hit["_score"]))) for hit in resp["hits"]["hits"]]
        out.sort(key=lambda item: item[1])
        return out

    def _to_distance(self, score: float) -> float:
        if self.distance is Distance.COSINE:
            return 2.0 - 2.0 * score
        if self.distance is Distance.L2:
            return math.sqrt(max(1.0 / score - 1.0, 0.0)) if score > 0 else math.inf
        ip = 1.0 - 1.0 / score if score < 1.0 else score - 1.0
        return -ip

    def _get(self, ids: list[Any]) -> dict[Any, np.ndarray]:
        self._ensure_index()
        out: dict[Any, np.ndarray] = {}
        keys = [self.pk_to_str(pk) for pk in ids]
        for start in range(0, len(keys), _PAGE):
            chunk = keys[start : start + _PAGE]
            resp = self._call(
                "read from",
                self._client.search,
                index=self._index,
                query={"bool": {"filter": [{"ids": {"values": chunk}}, _LIVE]}},
                size=len(chunk),
                source={"includes": [self._field], "exclude_vectors": False},
            )
            for hit in resp["hits"]["hits"]:
                vec = (hit.get("_source") or {}).get(self._field)
                if vec is not None:
                    out[self.pk_from_str(hit["_id"])] = np.asarray(vec, dtype=np.float32)
        return out

    def _ids(self) -> set[Any]:
        self._ensure_index()
        out: set[Any] = set()
        after: Optional[list[Any]] = None
        while True:
            kw: dict[str, Any] = {"search_after": after} if after is not None else {}
            resp = self._call(
                "list",
                self._client.search,
                index=self._index,
                query=_LIVE,
                size=_PAGE,
                sort=[{PK_FIELD: "asc"}],
                source=False,
                track_total_hits=False,
                **kw,
            )
            hits = resp["hits"]["hits"]
            out.update(self.pk_from_str(hit["_id"]) for hit in hits)
            if len(hits) < _PAGE:
                return out
            after = hits[-1]["sort"]

    def _count(self) -> int:
        self._ensure_index()
        return int(self._call("count", self._client.count, index=self._index, query=_LIVE)["count"])

    # ------------------------------------------------------------------ errors

    def _call(self, what: str, fn: Any, **kw: Any) -> Any:
        try:
            return fn(**kw)
        except (self._es.ApiError, self._es.TransportError) as err:
            raise self._failure(what, err) from err

    def _failure(self, what: str, err: Exception) -> MirrorError:
        if isinstance(err, self._es.TransportError) and not isinstance(err, self._es.ApiError):
            return MirrorError(f"ElasticsearchMirror '{self.name}' could not reach {self._where} to {what} index '{self._index}': {err}.")
        return MirrorError(f"Elasticsearch refused to {what} index '{self._index}' for mirror '{self.name}': {_error_type(err)}: {_error_reason(err)}.")


def _field_type(column: sa.Column[Any]) -> str:
    try:
        py = column.type.python_type
    except NotImplementedError:
        return "keyword"
    if issubclass(py, bool):
        return "boolean"
    if issubclass(py, int):
        return "long"
    if issubclass(py, float) or py.__name__ == "Decimal":
        return "double"
    if issubclass(py, uuid.UUID):
        return "keyword"
    return "keyword"


def _error_type(err: Exception) -> str:
    body = getattr(err, "body", None)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("type", ""))
    return str(getattr(err, "message", "") or type(err).__name__)


def _error_reason(err: Exception) -> str:
    body = getattr(err, "body", None)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("reason", ""))
    return str(err)
