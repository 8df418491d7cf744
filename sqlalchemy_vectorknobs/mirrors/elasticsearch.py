"""``ElasticsearchMirror``: a vector column mirrored into an Elasticsearch index — the scale-out path.

::

    mirror = vk.ElasticsearchMirror(Doc.embedding, url="http://localhost:9200", metadata_columns=["category"])
    mirror.upsert(ids, vectors, [{"category": c} for c in categories], versions=outbox_ids)
    mirror.search(query, k=10, where={"category": ["news", "blog"]})

Uses the official ``elasticsearch`` client (9.x, for Elasticsearch 9.1 or later); pass ``client=``
or ``url=`` (plus ``client_options=`` for authentication and TLS). A server that cannot be reached
raises :class:`MirrorError` at the first operation, not at construction.

The index and its alias
    ``index=`` (default ``vk_<table>_<column>``) names an *alias*. On first use the mirror creates
    the concrete index ``<index>_g1`` with the alias pointing at it; every read and write goes
    through the alias. :func:`~sqlalchemy_vectorknobs.rebuild` fills ``<index>_g2`` beside it and
    swaps the alias in one ``_aliases`` request that also deletes the old index, so searches never
    see a half-built index. An existing concrete index named ``index`` (made before aliases were
    used) is used as it is, and the first rebuild replaces it with an alias of the same name.

Mapping (see :mod:`._es_index`)::

    <column>:    dense_vector, dims, index: true, similarity cosine | l2_norm | max_inner_product,
                 index_options (default {"type": "hnsw", "m": 16, "ef_construction": 100};
                 unquantized types keep exact float scores)
    vk_pk:       long or keyword (the primary key, for paging through ids)
    vk_deleted:  boolean (tombstones, see below)
    <metadata>:  boolean / long / double / keyword after the SQLAlchemy column type
    <text>:      text with a keyword sub-field (``text_columns=``: BM25 for hybrid_search)

An existing index must have the same dims and similarity. Settings: ``shards`` (1), ``replicas``
(1) and ``refresh_interval`` ("1s"), then anything in ``settings=``.

Writes are ``_bulk`` requests of at most ``chunk_size`` documents and about ``chunk_bytes`` bytes,
with ``refresh=`` (default ``"wait_for"``: a write is searchable when the call returns; ``False`` is
faster for bulk loads, and then ``search``, ``get``, ``ids`` and ``count`` see writes only after the
index's next refresh). Versioned writes use ``version_type=external``; Elasticsearch answers a
version not greater than the stored one with a 409, which the mirror takes as *already applied*
(a newer version is there): it is not an error and the outbox acknowledges the row. A versioned
delete is written as a *tombstone document* (``vk_deleted: true``, no vector, external version)
rather than a real delete, because Elasticsearch forgets deleted versions after
``index.gc_deletes`` (60 s): the tombstone keeps an older upsert from resurrecting the vector
however late it arrives. Tombstones have no vector, so kNN never returns them; counts and id
listings exclude them. An unversioned write reads the current ``_version`` first and writes with
``version_type=external_gte`` at that version (0 for a new document), so it keeps the recorded
version, like the other mirrors.

Search is a ``knn`` query (``k``, ``num_candidates``, metadata ``filter`` as ``term``/``terms``), and
``_score`` is turned back into the plugin's distance units with Elasticsearch's documented formulas:
cosine ``score = (1 + cos) / 2`` so ``distance = 2 - 2 * score``; l2_norm ``score = 1 / (1 + l2²)``
so ``distance = sqrt(1 / score - 1)``; max_inner_product ``score = 1 / (1 - ip)`` when ``ip < 0``
else ``ip + 1``, and the distance is ``-ip``. Scores are 32-bit floats, so distances carry about
``1e-7`` relative error. ``cosine`` rejects zero vectors (an Elasticsearch rule); the write fails
with :class:`MirrorError`.

:meth:`ElasticsearchMirror.hybrid_search` runs a BM25 ``multi_match`` over the ``text_columns`` and
a kNN search with the same filters, and fuses the two rankings with reciprocal rank fusion on the
client (Elasticsearch's own ``rrf`` retriever needs a paid licence).

``get()`` reads vectors back through ``_source`` with ``exclude_vectors: false`` (Elasticsearch 9.2+
leaves vectors out of ``_source`` by default).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .._optional import require
from ..codec import check_dense
from ..distance import Distance
from . import _es_index as esx
from .base import F32, BaseMirror, DeleteBatch, InvalidMirrorError, MirrorError, UpsertBatch

__all__ = ["ElasticsearchMirror"]

PK_FIELD = esx.PK_FIELD
DELETED_FIELD = esx.DELETED_FIELD
_MAX_K = 10_000
_PAGE = 1000
_LIVE = {"term": {DELETED_FIELD: False}}
_GENERATION = re.compile(r"_g(\d+)$")


class ElasticsearchMirror(BaseMirror):
    """An Elasticsearch index mirroring one vector column (see the module docstring)."""

    backend = "elasticsearch"

    def __init__(
        self,
        column: Any,
        *,
        client: Any = None,
        url: str | None = None,
        index: str | None = None,
        distance: Distance | str | None = None,
        metadata_columns: Sequence[str] = (),
        text_columns: Sequence[str] = (),
        name: str | None = None,
        refresh: bool | str = "wait_for",
        num_candidates: int = 100,
        index_options: Mapping[str, Any] | None = None,
        shards: int = 1,
        replicas: int = 1,
        refresh_interval: str | None = "1s",
        settings: Mapping[str, Any] | None = None,
        chunk_size: int = 500,
        chunk_bytes: int = 10 * 1024 * 1024,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        texts = [text_columns] if isinstance(text_columns, str) else list(text_columns)
        names = [metadata_columns] if isinstance(metadata_columns, str) else list(metadata_columns)
        super().__init__(column, distance=distance, metadata_columns=names + texts, name=name)
        if (client is None) == (url is None):
            raise InvalidMirrorError("ElasticsearchMirror needs exactly one of client= or url=.")
        if refresh not in (True, False, "wait_for"):
            raise InvalidMirrorError(f"ElasticsearchMirror refresh={refresh!r} is not one of True, False or 'wait_for'.")
        for knob, value in (("num_candidates", num_candidates), ("chunk_size", chunk_size), ("chunk_bytes", chunk_bytes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidMirrorError(f"ElasticsearchMirror {knob}={value!r} is not a positive whole number.")
        self._index_options = esx.check_index_options(index_options)
        self._settings = esx.index_settings(shards, replicas, refresh_interval, settings)
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
        self._text_columns = tuple(dict.fromkeys(texts))
        self._refresh = refresh
        self._num_candidates = min(num_candidates, _MAX_K)
        self._chunk = chunk_size
        self._chunk_bytes = chunk_bytes
        #: Writes go through an alias named ``index`` (False: straight to a concrete index, as a
        #: generation being built does).
        self._use_alias = True
        self._concrete: str | None = None
        self._ready = False

    @property
    def client(self) -> Any:
        """The Elasticsearch client in use."""
        return self._client

    @property
    def index(self) -> str:
        """The name reads and writes go to (an alias over :attr:`concrete_index`)."""
        return self._index

    @property
    def concrete_index(self) -> str:
        """The index the alias points at now (``<index>_g<n>``), resolved on first use."""
        with self._lock:
            self._ensure_index()
            assert self._concrete is not None
            return self._concrete

    @property
    def text_columns(self) -> tuple[str, ...]:
        """Columns indexed as analysed text for :meth:`hybrid_search` (also metadata columns)."""
        return self._text_columns

    @property
    def settings(self) -> dict[str, Any]:
        """The index settings the mirror creates its indexes with."""
        return dict(self._settings)

    # ------------------------------------------------------------------ the index

    def mapping(self) -> dict[str, Any]:
        """The mapping the mirror creates its index with."""
        return esx.mapping(
            self.table,
            self._field,
            self.dim,
            self.distance,
            self._pk_type is int,
            self.metadata_columns,
            self._text_columns,
            self._index_options,
        )

    def _create(self, name: str, settings: Mapping[str, Any], alias: str | None) -> None:
        body: dict[str, Any] = {"index": name, "mappings": self.mapping(), "settings": dict(settings)}
        if alias is not None:
            body["aliases"] = {alias: {}}
        try:
            self._client.indices.create(**body)
        except self._es.ApiError as err:
            if _error_type(err) != "resource_already_exists_exception":
                raise self._failure("create", err, name) from err
        except self._es.TransportError as err:
            raise self._failure("create", err, name) from err

    def _alias_targets(self) -> list[str]:
        """The concrete indexes the alias points at ([] when there is no such alias)."""
        try:
            got = self._client.indices.get_alias(name=self._index)
        except self._es.NotFoundError:
            return []
        except (self._es.ApiError, self._es.TransportError) as err:
            raise self._failure("read the alias of", err) from err
        return sorted(dict(got.body))

    def _ensure_index(self) -> None:
        if self._ready:
            return
        self._resolve()
        got = self._call("read the mapping of", self._client.indices.get_mapping, index=self._index)
        self._check_mapping(got)
        self._ready = True

    def _resolve(self) -> None:
        """Find (or create) the concrete index behind :attr:`index`."""
        if self._concrete is not None:
            return
        if not self._use_alias:
            if not self._call("check", self._client.indices.exists, index=self._index):
                self._create(self._index, self._settings, None)
            self._concrete = self._index
            return
        targets = self._alias_targets()
        if not targets:
            if self._call("check", self._client.indices.exists, index=self._index):
                targets = [self._index]  # a plain index from before aliases: used as it is
            else:
                self._create(f"{self._index}_g1", self._settings, self._index)
                targets = self._alias_targets() or [f"{self._index}_g1"]
        if len(targets) != 1:
            raise InvalidMirrorError(
                f"Elasticsearch alias '{self._index}' points at {len(targets)} indexes {targets}; "
                f"mirror '{self.name}' writes through an alias of exactly one index."
            )
        self._concrete = targets[0]

    def _check_mapping(self, got: Any) -> None:
        first: dict[str, Any] = next(iter(dict(got.body).values()), {})
        props: dict[str, Any] = (first.get("mappings") or {}).get("properties") or {}
        field = props.get(self._field) or {}
        expected = esx.SIMILARITY[self.distance]
        if field.get("type") != "dense_vector" or field.get("dims") != self.dim or field.get("similarity", "cosine") != expected:
            raise InvalidMirrorError(
                f"Elasticsearch index '{self._index}' maps '{self._field}' as {field or 'nothing'}, but mirror '{self.name}' "
                f"needs dense_vector dims={self.dim} similarity={expected}; use another index name."
            )
        for name in self._text_columns:
            if (props.get(name) or {}).get("type") != "text":
                raise InvalidMirrorError(
                    f"Elasticsearch index '{self._index}' does not map text column '{name}' as text; rebuild the mirror "
                    "(vk.rebuild) to create the index with its text fields."
                )

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

    def _doc(self, pk: Any, vector: F32 | None, metadata: Mapping[str, Any]) -> dict[str, Any]:
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
            meta = {"_index": self._index, "_id": key, **self._version_args(key, batch.versions, i, current, batch.gte)}
            ops.append({"index": meta})
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
            meta = {"_index": self._index, "_id": key, **self._version_args(key, batch.versions, i, current, batch.gte)}
            ops.append({"index": meta})
            ops.append(self._doc(batch.ids[i], None, {}))
        n_ops = sum(1 for op in ops if "index" in op or "delete" in op)
        return applied_without_write + (self._bulk(ops, n_ops) if ops else 0)

    @staticmethod
    def _version_args(key: str, versions: list[int] | None, i: int, current: dict[str, int], gte: bool) -> dict[str, Any]:
        if versions is not None:
            return {"version": versions[i], "version_type": "external_gte" if gte else "external"}
        # keep the recorded version: external_gte at the current one (0 for a new document)
        return {"version": current.get(key, 0), "version_type": "external_gte"}

    def _op_size(self, op: dict[str, Any]) -> int:
        """About how many bytes ``op`` takes in the NDJSON body (a vector's float is ~20 characters)."""
        vector = op.get(self._field)
        return 120 + (20 * len(vector) if vector is not None else 0) + sum(len(str(v)) for v in op.values() if isinstance(v, str))

    def _chunks(self, ops: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        """``ops`` (action lines, each followed by its source unless a delete) cut by chunk_size and chunk_bytes."""
        chunks: list[list[dict[str, Any]]] = []
        current: list[dict[str, Any]] = []
        actions = size = 0
        j = 0
        while j < len(ops):
            span = 1 if "delete" in ops[j] else 2
            cost = sum(self._op_size(op) for op in ops[j : j + span])
            if current and (actions >= self._chunk or size + cost > self._chunk_bytes):
                chunks.append(current)
                current, actions, size = [], 0, 0
            current.extend(ops[j : j + span])
            actions += 1
            size += cost
            j += span
        if current:
            chunks.append(current)
        return chunks

    def _bulk(self, ops: list[dict[str, Any]], n: int) -> int:
        applied = 0
        failures: list[str] = []
        for chunk in self._chunks(ops):
            resp = self._call("write to", self._client.bulk, operations=chunk, refresh=self._refresh)
            for item in resp["items"]:
                result = next(iter(item.values()))
                status = int(result.get("status", 500))
                if 200 <= status < 300 or (status == 404 and "delete" in item):
                    applied += 1
                elif status == 409:
                    continue  # version conflict: this version or a newer one is there already
                else:
                    err = result.get("error") or {}
                    failures.append(f"{err.get('type', status)}: {err.get('reason', 'no reason given')}")
        if failures:
            raise MirrorError(
                f"Elasticsearch rejected {len(failures)} of {n} writes to index '{self._index}'; first: {failures[0]}."
            )
        return applied

    def _clear(self) -> None:
        self._resolve()  # no mapping check: clearing is also how a mismatched index is replaced
        assert self._concrete is not None
        try:
            self._client.indices.delete(index=self._concrete)
        except self._es.NotFoundError:
            pass
        except (self._es.ApiError, self._es.TransportError) as err:
            raise self._failure("delete", err, self._concrete) from err
        self._ready = False
        self._concrete = None
        self._ensure_index()

    def _close(self) -> None:
        if self._owns_client:
            try:
                self._client.close()
            except Exception:  # noqa: BLE001 - closing must not mask the caller's work
                pass

    # ------------------------------------------------------------------ generations

    def _new_generation(self) -> ElasticsearchMirror:
        """``<index>_g<n+1>`` created with no replicas and no periodic refresh, written directly."""
        self._resolve()
        assert self._concrete is not None
        found = _GENERATION.search(self._concrete) if self._concrete != self._index else None
        name = f"{self._index}_g{int(found.group(1)) + 1 if found else 1}"
        if name == self._concrete:  # pragma: no cover - only if someone named the alias like a generation
            raise InvalidMirrorError(f"Elasticsearch alias '{self._index}' points at '{name}', the next generation's name.")
        try:
            self._client.indices.delete(index=name)  # left over from a rebuild that died
        except self._es.NotFoundError:
            pass
        except (self._es.ApiError, self._es.TransportError) as err:
            raise self._failure("delete", err, name) from err
        generation = ElasticsearchMirror(
            self.column,
            client=self._client,
            index=name,
            distance=self.distance,
            metadata_columns=[c for c in self.metadata_columns if c not in self._text_columns],
            text_columns=self._text_columns,
            name=self.name,
            refresh=False,
            num_candidates=self._num_candidates,
            index_options=self._index_options,
            chunk_size=self._chunk,
            chunk_bytes=self._chunk_bytes,
        )
        generation._settings = esx.build_settings(self._settings)
        generation._use_alias = False
        generation._ensure_index()
        return generation

    def _adopt_generation(self, generation: Any) -> None:
        new = generation._index
        # The configured values (a refresh_interval of None goes back to the server's default).
        final = {key: self._settings.get(key) for key in esx.BUILD_SETTINGS}
        self._call("set the settings of", self._client.indices.put_settings, index=new, settings={"index": final})
        self._call("refresh", self._client.indices.refresh, index=new)
        actions = [{"add": {"index": new, "alias": self._index}}, {"remove_index": {"index": self._concrete}}]
        self._call("swap the alias of", self._client.indices.update_aliases, actions=actions)
        self._concrete = new
        self._ready = False  # check the mapping again through the alias on next use
        generation.close()

    def _discard_generation(self, generation: Any) -> None:
        generation.close()
        try:
            self._client.indices.delete(index=generation._index)
        except Exception:  # noqa: BLE001 - best effort; the next rebuild deletes it first
            pass

    def _recorded_versions(self, ids: list[Any]) -> dict[Any, int]:
        self._resolve()
        got = self._current_versions([self.pk_to_str(pk) for pk in ids])
        return {self.pk_from_str(key): v for key, v in got.items() if v > 0}  # 0: written unversioned

    def _tombstone_ids(self) -> list[Any]:
        self._resolve()
        self._call("refresh", self._client.indices.refresh, index=self._index)
        return sorted(self._scan({"term": {DELETED_FIELD: True}}), key=str)

    # ------------------------------------------------------------------ reads

    def _filters(self, where: dict[str, tuple[Any, ...]]) -> list[dict[str, Any]]:
        out = []
        for col, vals in where.items():
            field = esx.filter_field(col, self._text_columns)
            out.append({"term": {field: vals[0]}} if len(vals) == 1 else {"terms": {field: list(vals)}})
        return out

    def _knn(self, query: F32, k: int, where: dict[str, tuple[Any, ...]]) -> dict[str, Any]:
        knn: dict[str, Any] = {
            "field": self._field,
            "query_vector": query.tolist(),
            "k": k,
            "num_candidates": max(self._num_candidates, k),
        }
        filters = self._filters(where)
        if filters:
            knn["filter"] = filters
        return knn

    def _search(self, query: F32, k: int, where: dict[str, tuple[Any, ...]]) -> list[tuple[Any, float]]:
        if k > _MAX_K:
            raise InvalidMirrorError(f"ElasticsearchMirror search k={k} is above Elasticsearch's limit of {_MAX_K}.")
        self._ensure_index()
        resp = self._call("search", self._client.search, index=self._index, knn=self._knn(query, k, where), size=k, source=False)
        out = [(self.pk_from_str(hit["_id"]), self._to_distance(float(hit["_score"]))) for hit in resp["hits"]["hits"]]
        out.sort(key=lambda item: item[1])
        return out

    def hybrid_search(
        self,
        text: str,
        vector: Any,
        k: int = 10,
        *,
        text_fields: Sequence[str] | None = None,
        where: Mapping[str, Any] | None = None,
        window: int | None = None,
        rank_constant: int = 60,
    ) -> list[tuple[Any, float]]:
        """BM25 over ``text_fields`` and kNN on the vector, fused by reciprocal rank fusion: ``[(pk, score)]``, best first.

        Each search returns its ``window`` best hits (default ``max(k, 50)``) under the same
        ``where`` filter; a hit at rank ``r`` (from 1) in a list adds ``1 / (rank_constant + r)`` to
        its score. ``text_fields`` are among :attr:`text_columns` (default: all of them)::

            mirror = vk.ElasticsearchMirror(Doc.embedding, url=url, text_columns=["title", "body"])
            mirror.hybrid_search("connection pool", embed("connection pool"), k=10)
        """
        with self._lock:
            self._check_open()
            if not isinstance(text, str) or not text.strip():
                raise InvalidMirrorError(f"ElasticsearchMirror '{self.name}' hybrid_search text {text!r} is not a non-empty string.")
            query = check_dense(vector, self.dim, lambda: f"Mirror '{self.name}' query vector")
            for knob, value in (("k", k), ("window", window), ("rank_constant", rank_constant)):
                if value is None and knob == "window":
                    continue
                if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                    raise InvalidMirrorError(
                        f"ElasticsearchMirror '{self.name}' hybrid_search {knob}={value!r} is not a positive whole number."
                    )
            size = min(max(int(k), 50 if window is None else int(window)), _MAX_K)
            if not self._text_columns:
                raise InvalidMirrorError(
                    f"ElasticsearchMirror '{self.name}' has no text_columns to run BM25 on; create it with text_columns=[...]."
                )
            fields = list(self._text_columns) if text_fields is None else [text_fields] if isinstance(text_fields, str) else list(text_fields)
            unknown = [f for f in fields if f not in self._text_columns]
            if unknown or not fields:
                raise InvalidMirrorError(
                    f"ElasticsearchMirror '{self.name}' hybrid_search text field {unknown[0] if unknown else None!r} is not "
                    f"one of its text_columns {list(self._text_columns)}."
                )
            filters = self._check_where(where)
            if any(not values for values in filters.values()):
                return []
            self._ensure_index()
            bm25 = self._call(
                "search",
                self._client.search,
                index=self._index,
                query={"bool": {"must": [{"multi_match": {"query": text, "fields": fields}}], "filter": [*self._filters(filters), _LIVE]}},
                size=size,
                source=False,
            )
            knn = self._call(
                "search", self._client.search, index=self._index, knn=self._knn(query, size, filters), size=size, source=False
            )
        scores: dict[str, float] = {}
        for resp in (knn, bm25):
            for rank, hit in enumerate(resp["hits"]["hits"], start=1):
                scores[hit["_id"]] = scores.get(hit["_id"], 0.0) + 1.0 / (rank_constant + rank)
        ranked = sorted(scores.items(), key=lambda item: -item[1])[:k]  # stable: kNN order breaks ties
        return [(self.pk_from_str(key), score) for key, score in ranked]

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

    def _scan(self, query: dict[str, Any]) -> set[Any]:
        """Primary keys of the documents matching ``query`` (paged by ``vk_pk``)."""
        out: set[Any] = set()
        after: list[Any] | None = None
        while True:
            kw: dict[str, Any] = {"search_after": after} if after is not None else {}
            resp = self._call(
                "list",
                self._client.search,
                index=self._index,
                query=query,
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

    def _ids(self) -> set[Any]:
        self._ensure_index()
        return self._scan(_LIVE)

    def _count(self) -> int:
        self._ensure_index()
        return int(self._call("count", self._client.count, index=self._index, query=_LIVE)["count"])

    # ------------------------------------------------------------------ errors

    def _call(self, what: str, fn: Any, **kw: Any) -> Any:
        try:
            return fn(**kw)
        except (self._es.ApiError, self._es.TransportError) as err:
            raise self._failure(what, err) from err

    def _failure(self, what: str, err: Exception, index: str | None = None) -> MirrorError:
        target = index or self._index
        if isinstance(err, self._es.TransportError) and not isinstance(err, self._es.ApiError):
            return MirrorError(f"ElasticsearchMirror '{self.name}' could not reach {self._where} to {what} index '{target}': {err}.")
        return MirrorError(f"Elasticsearch refused to {what} index '{target}' for mirror '{self.name}': {_error_type(err)}: {_error_reason(err)}.")


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
