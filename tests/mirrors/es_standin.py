"""TEST-ONLY stand-in for an Elasticsearch server; it is never shipped and is not Elasticsearch.

No Elasticsearch server can be installed on the machines this suite runs on, so the mirror's tests
talk HTTP to this small server through the *official* ``elasticsearch`` client. It implements only
the endpoints ``ElasticsearchMirror`` uses, following Elasticsearch's documented semantics:

* ``GET /`` (cluster info) and the ``X-Elastic-Product: Elasticsearch`` header the client checks;
* index create (``PUT /<index>``) with mapping validation (``dense_vector`` dims 1..4096 and
  ``similarity``, ``dynamic: strict``, known field types), ``HEAD`` exists, ``GET _mapping``,
  ``DELETE``;
* ``_bulk`` NDJSON (``index``/``create``/``delete``) with ``internal``, ``external`` and
  ``external_gte`` versions (a version not above the stored one is a per-item 409
  ``version_conflict_engine_exception``; deleted documents keep their version), per-document
  mapping checks (strict fields, vector dimensions, zero vectors under cosine) and ``refresh``;
* near-real-time visibility: ``_search`` and ``_count`` see the state of the last refresh
  (``refresh=true|wait_for`` on a write, or ``POST /<index>/_refresh``), ``_mget`` is real time;
* ``_search`` with ``knn`` (``field``, ``query_vector``, ``k``, ``num_candidates`` with ES's
  bounds, ``filter``) scored *exactly* with the documented formulas — cosine ``(1 + cos) / 2``,
  l2_norm ``1 / (1 + l2²)``, dot_product ``(1 + dot) / 2``, max_inner_product ``1 / (1 - dot)``
  for negative dots else ``dot + 1`` — rounded to float32 as Elasticsearch reports them; or a
  ``query`` (``match_all``, ``term``, ``terms``, ``ids``, ``exists``, ``bool``) with ``sort`` and
  ``search_after``; ``_source`` filtering with 9.2's default of leaving vectors out of ``_source``
  unless ``exclude_vectors: false`` or the field is named in ``includes``;
* ``_count`` and ``_mget``.

Known simplifications: one shard, exact kNN (a real cluster's HNSW is approximate), and
deleted-document versions are kept for ever (Elasticsearch drops them after ``index.gc_deletes``).
Set ``VECTORKNOBS_ES_URL`` to run the same tests against a real cluster instead.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional
from urllib.parse import parse_qs, urlsplit

import numpy as np

VERSION = "9.2.0"
FIELD_TYPES = {"dense_vector", "keyword", "text", "long", "integer", "short", "double", "float", "boolean"}
SIMILARITIES = {"cosine", "l2_norm", "dot_product", "max_inner_product"}
MAX_KNN = 10_000


class EsError(Exception):
    def __init__(self, status: int, type_: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.type, self.reason = status, type_, reason

    def body(self) -> dict[str, Any]:
        err = {"type": self.type, "reason": self.reason}
        return {"error": {"root_cause": [err], **err}, "status": self.status}


@dataclass
class Doc:
    version: int
    source: Optional[dict[str, Any]]  # None: deleted (the version is remembered)
    seq_no: int


@dataclass
class Index:
    name: str
    mappings: dict[str, Any]
    settings: dict[str, Any]
    docs: dict[str, Doc] = field(default_factory=dict)
    visible: dict[str, Doc] = field(default_factory=dict)
    seq_no: int = 0

    @property
    def props(self) -> dict[str, Any]:
        return self.mappings.get("properties", {})

    def refresh(self) -> None:
        self.visible = {k: d for k, d in self.docs.items() if d.source is not None}


class Cluster:
    def __init__(self) -> None:
        self.indices: dict[str, Index] = {}
        self.lock = threading.Lock()

    # ------------------------------------------------------------------ index admin

    def index(self, name: str) -> Index:
        if name not in self.indices:
            raise EsError(404, "index_not_found_exception", f"no such index [{name}]")
        return self.indices[name]

    def create(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_.+-]*", name):
            raise EsError(400, "invalid_index_name_exception", f"Invalid index name [{name}], must be lowercase")
        if name in self.indices:
            raise EsError(400, "resource_already_exists_exception", f"index [{name}/{uuid.uuid4().hex[:22]}] already exists")
        mappings = body.get("mappings") or {}
        settings = body.get("settings") or {}
        for fname, spec in (mappings.get("properties") or {}).items():
            ftype = spec.get("type")
            if ftype not in FIELD_TYPES:
                raise EsError(400, "mapper_parsing_exception", f"No handler for type [{ftype}] declared on field [{fname}]")
            if ftype == "dense_vector":
                dims = spec.get("dims")
                if not isinstance(dims, int) or not 1 <= dims <= 4096:
                    raise EsError(400, "mapper_parsing_exception", f"The number of dimensions should be in the range [1, 4096] but was [{dims}]")
                sim = spec.get("similarity", "cosine")
                if sim not in SIMILARITIES:
                    raise EsError(400, "mapper_parsing_exception", f"Unknown value [{sim}] for field [similarity]")
                if spec.get("index") is False and "similarity" in spec:
                    raise EsError(400, "mapper_parsing_exception", "Field [similarity] requires field [index] to be configured and set to true")
        if mappings.get("dynamic") not in (None, True, False, "strict", "true", "false"):
            raise EsError(400, "mapper_parsing_exception", "unknown value for [dynamic]")
        self.indices[name] = Index(name, mappings, settings)
        return {"acknowledged": True, "shards_acknowledged": True, "index": name}

    # ------------------------------------------------------------------ documents

    def check_doc(self, ix: Index, doc_id: str, source: dict[str, Any]) -> None:
        props = ix.props
        for key, value in source.items():
            spec = props.get(key)
            if spec is None:
                if ix.mappings.get("dynamic") == "strict":
                    raise EsError(
                        400,
                        "strict_dynamic_mapping_exception",
                        f"[1:2] mapping set to strict, dynamic introduction of [{key}] within [_doc] is not allowed",
                    )
                continue
            ftype = spec["type"]
            if value is None:
                continue
            if ftype == "dense_vector":
                if not isinstance(value, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
                    raise EsError(400, "document_parsing_exception", f"[1:2] failed to parse field [{key}] of type [dense_vector]")
                if len(value) != spec["dims"]:
                    raise EsError(
                        400,
                        "document_parsing_exception",
                        f"[1:2] The [dense_vector] field [{key}] in doc [document with id '{doc_id}'] has a different number "
                        f"of dimensions [{len(value)}] than defined in the mapping [{spec['dims']}]",
                    )
                if spec.get("similarity", "cosine") == "cosine" and not any(value):
                    raise EsError(400, "document_parsing_exception", "[1:2] The [cosine] similarity does not support vectors with zero magnitude.")
            elif ftype in ("long", "integer", "short"):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise EsError(400, "document_parsing_exception", f"[1:2] failed to parse field [{key}] of type [long]")
            elif ftype in ("double", "float"):
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise EsError(400, "document_parsing_exception", f"[1:2] failed to parse field [{key}] of type [{ftype}]")
            elif ftype == "boolean":
                if not isinstance(value, bool):
                    raise EsError(400, "document_parsing_exception", f"[1:2] failed to parse field [{key}] of type [boolean]")
            elif isinstance(value, (dict, list)):
                raise EsError(400, "document_parsing_exception", f"[1:2] failed to parse field [{key}] of type [{ftype}]")

    def write(self, ix: Index, action: str, meta: dict[str, Any], source: Optional[dict[str, Any]]) -> dict[str, Any]:
        doc_id = str(meta.get("_id") or uuid.uuid4().hex)
        vtype = meta.get("version_type", "internal")
        version = meta.get("version")
        current = ix.docs.get(doc_id)
        exists = current is not None and current.source is not None
        if vtype not in ("internal", "external", "external_gte"):
            raise EsError(400, "illegal_argument_exception", f"No version type match [{vtype}]")
        if vtype == "internal" and version is not None:
            raise EsError(400, "action_request_validation_exception", "Validation Failed: 1: internal versioning can not be used for optimistic concurrency control")
        if vtype != "internal" and (not isinstance(version, int) or version < 0):
            raise EsError(400, "action_request_validation_exception", f"Validation Failed: 1: illegal version value [{version}] for version type [{vtype}]")
        if vtype != "internal" and current is not None:
            stale = version < current.version if vtype == "external_gte" else version <= current.version
            if stale:
                raise EsError(
                    409,
                    "version_conflict_engine_exception",
                    f"[{doc_id}]: version conflict, current version [{current.version}] is higher or equal to the one provided [{version}]",
                )
        if action == "create" and exists:
            raise EsError(409, "version_conflict_engine_exception", f"[{doc_id}]: version conflict, document already exists (current version [{current.version if current else 0}])")
        if action == "delete":
            if not exists and vtype == "internal":
                return {"_id": doc_id, "_version": current.version if current else 1, "result": "not_found", "status": 404}
            new_version = version if vtype != "internal" else (current.version + 1 if current else 1)
            ix.seq_no += 1
            ix.docs[doc_id] = Doc(new_version, None, ix.seq_no)
            return {"_id": doc_id, "_version": new_version, "result": "deleted" if exists else "not_found", "status": 200 if exists else 404}
        assert source is not None
        self.check_doc(ix, doc_id, source)
        new_version = version if vtype != "internal" else (current.version + 1 if current else 1)
        ix.seq_no += 1
        ix.docs[doc_id] = Doc(new_version, source, ix.seq_no)
        return {"_id": doc_id, "_version": new_version, "result": "updated" if exists else "created", "status": 200 if exists else 201}

    def bulk(self, default_index: Optional[str], lines: list[dict[str, Any]], refresh: str) -> dict[str, Any]:
        items: list[dict[str, Any]] = []
        touched: set[str] = set()
        i = 0
        while i < len(lines):
            action_line = lines[i]
            i += 1
            if len(action_line) != 1:
                raise EsError(400, "illegal_argument_exception", "Malformed action/metadata line")
            action, meta = next(iter(action_line.items()))
            if action not in ("index", "create", "delete"):
                raise EsError(400, "illegal_argument_exception", f"Unsupported action: [{action}] (stand-in)")
            source = None
            if action != "delete":
                if i >= len(lines):
                    raise EsError(400, "illegal_argument_exception", "The bulk request must be terminated by a newline [\\n]")
                source = lines[i]
                i += 1
            name = meta.get("_index", default_index)
            base = {"_index": name, "_id": meta.get("_id")}
            try:
                if name is None:
                    raise EsError(400, "action_request_validation_exception", "Validation Failed: 1: index is missing")
                ix = self.index(name)
                result = self.write(ix, action, meta, source)
                touched.add(name)
                items.append({action: {**base, **result, "_shards": {"total": 1, "successful": 1, "failed": 0}}})
            except EsError as err:
                items.append({action: {**base, "status": err.status, "error": {"type": err.type, "reason": err.reason, "index": name}}})
        if refresh in ("true", "wait_for", ""):
            for name in touched:
                self.indices[name].refresh()
        errors = any("error" in next(iter(item.values())) for item in items)
        return {"took": 1, "errors": errors, "items": items}

    # ------------------------------------------------------------------ queries

    def matches(self, ix: Index, doc_id: str, source: dict[str, Any], query: Optional[dict[str, Any]]) -> bool:
        if not query:
            return True
        if len(query) != 1:
            raise EsError(400, "parsing_exception", "[_na] query malformed, must have exactly one clause")
        kind, body = next(iter(query.items()))
        if kind == "match_all":
            return True
        if kind == "ids":
            return doc_id in set(map(str, body.get("values", [])))
        if kind == "exists":
            return source.get(body["field"]) is not None
        if kind in ("term", "terms"):
            (fname, want), = [(k, v) for k, v in body.items() if k != "boost"]
            if kind == "term":
                want = [want["value"] if isinstance(want, dict) else want]
            have = source.get(fname)
            if have is None:
                return False
            return any(_term_equal(ix.props.get(fname, {}).get("type", "keyword"), have, w) for w in want)
        if kind == "bool":
            def clauses(key: str) -> list[dict[str, Any]]:
                value = body.get(key) or []
                return value if isinstance(value, list) else [value]

            if not all(self.matches(ix, doc_id, source, q) for q in clauses("filter") + clauses("must")):
                return False
            if any(self.matches(ix, doc_id, source, q) for q in clauses("must_not")):
                return False
            should = clauses("should")
            return not should or any(self.matches(ix, doc_id, source, q) for q in should)
        raise EsError(400, "parsing_exception", f"unknown query [{kind}] (stand-in implements match_all, term, terms, ids, exists, bool)")

    def _filter_list(self, value: Any) -> list[dict[str, Any]]:
        if value is None:
            return []
        return value if isinstance(value, list) else [value]

    def search(self, name: str, body: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
        ix = self.index(name)
        size = int(body.get("size", params.get("size", 10)))
        knn = body.get("knn")
        query = body.get("query")
        if knn is not None and query is not None:
            raise EsError(400, "illegal_argument_exception", "stand-in does not combine knn with query")
        hits: list[tuple[str, Doc, float]] = []
        if knn is not None:
            if isinstance(knn, list):
                if len(knn) != 1:
                    raise EsError(400, "illegal_argument_exception", "stand-in supports one knn clause")
                knn = knn[0]
            hits = self._knn(ix, knn)
            hits = hits[:size]
            sort_values: Optional[list[list[Any]]] = None
        else:
            docs = [(k, d) for k, d in ix.visible.items() if self.matches(ix, k, d.source or {}, query)]
            sort = body.get("sort")
            sort_values = None
            if sort:
                first = sort[0]
                sfield, order = (first, "asc") if isinstance(first, str) else next(iter(first.items()))
                order = order["order"] if isinstance(order, dict) else order
                if ix.props.get(sfield, {}).get("type") in (None, "dense_vector", "text"):
                    raise EsError(400, "illegal_argument_exception", f"No mapping found for [{sfield}] in order to sort on")
                docs = [(k, d) for k, d in docs if (d.source or {}).get(sfield) is not None]
                docs.sort(key=lambda kd: (kd[1].source or {})[sfield], reverse=order == "desc")
                after = body.get("search_after")
                if after is not None:
                    pivot = after[0]
                    docs = [(k, d) for k, d in docs if ((d.source or {})[sfield] > pivot if order != "desc" else (d.source or {})[sfield] < pivot)]
                sort_values = [[(d.source or {})[sfield]] for _, d in docs[:size]]
            elif body.get("search_after") is not None:
                raise EsError(400, "illegal_argument_exception", "Sort must contain at least one field.")
            hits = [(k, d, 1.0) for k, d in docs][:size]
        src_spec = body.get("_source", True)
        if "_source_exclude_vectors" in params:
            src_spec = {"exclude_vectors": params["_source_exclude_vectors"] == "true"} if src_spec is True else src_spec
        out_hits = []
        for j, (doc_id, doc, score) in enumerate(hits):
            hit: dict[str, Any] = {"_index": name, "_id": doc_id, "_score": score}
            source = self._source(ix, doc.source or {}, src_spec)
            if source is not None:
                hit["_source"] = source
            if sort_values is not None:
                hit["_score"] = None
                hit["sort"] = sort_values[j]
            out_hits.append(hit)
        total = len(hits) if knn is not None else len([1 for k, d in ix.visible.items() if self.matches(ix, k, d.source or {}, query)])
        return {
            "took": 1,
            "timed_out": False,
            "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
            "hits": {"total": {"value": total, "relation": "eq"}, "max_score": max((h[2] for h in hits), default=None), "hits": out_hits},
        }

    def _knn(self, ix: Index, knn: dict[str, Any]) -> list[tuple[str, Doc, float]]:
        fname = knn.get("field")
        spec = ix.props.get(fname)
        if not spec or spec.get("type") != "dense_vector":
            raise EsError(400, "illegal_argument_exception", f"[knn] queries are only supported on [dense_vector] fields; field [{fname}] is not")
        k = int(knn.get("k", 10))
        num_candidates = int(knn.get("num_candidates", max(int(1.5 * k), 100) if "k" in knn else 100))
        if k < 1:
            raise EsError(400, "illegal_argument_exception", "[k] must be greater than 0")
        if num_candidates < k:
            raise EsError(400, "illegal_argument_exception", "[num_candidates] cannot be less than [k]")
        if num_candidates > MAX_KNN:
            raise EsError(400, "illegal_argument_exception", f"[num_candidates] cannot exceed [{MAX_KNN}]")
        q = np.asarray(knn.get("query_vector"), dtype=np.float32)
        if q.shape != (spec["dims"],):
            raise EsError(400, "illegal_argument_exception", f"The query vector has a different number of dimensions [{q.size}] than the document vectors [{spec['dims']}].")
        sim = spec.get("similarity", "cosine")
        if sim == "cosine" and not q.any():
            raise EsError(400, "illegal_argument_exception", "The [cosine] similarity does not support vectors with zero magnitude.")
        filters = self._filter_list(knn.get("filter"))
        chosen = [
            (doc_id, doc)
            for doc_id, doc in ix.visible.items()
            if (doc.source or {}).get(fname) is not None and all(self.matches(ix, doc_id, doc.source or {}, f) for f in filters)
        ]
        if not chosen:
            return []
        scores = _scores(sim, np.array([(doc.source or {})[fname] for _, doc in chosen], dtype=np.float32), q)
        scored = [(doc_id, doc, float(s)) for (doc_id, doc), s in zip(chosen, scores.tolist())]
        scored.sort(key=lambda t: (-t[2], t[0]))
        return scored[:k]

    def _source(self, ix: Index, source: dict[str, Any], spec: Any) -> Optional[dict[str, Any]]:
        if spec is False:
            return None
        includes: list[str] = []
        excludes: list[str] = []
        exclude_vectors = bool(ix.settings.get("index.mapping.exclude_source_vectors", (ix.settings.get("index") or {}).get("mapping.exclude_source_vectors", True)))
        if isinstance(spec, dict):
            includes = _as_list(spec.get("includes", spec.get("include")))
            excludes = _as_list(spec.get("excludes", spec.get("exclude")))
            if "exclude_vectors" in spec:
                exclude_vectors = bool(spec["exclude_vectors"])
        elif isinstance(spec, (list, str)):
            includes = _as_list(spec)
        out = {}
        for key, value in source.items():
            if includes and key not in includes:
                continue
            if key in excludes:
                continue
            if exclude_vectors and ix.props.get(key, {}).get("type") == "dense_vector" and key not in includes:
                continue
            out[key] = value
        return out

    def count(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        ix = self.index(name)
        query = body.get("query")
        n = sum(1 for k, d in ix.visible.items() if self.matches(ix, k, d.source or {}, query))
        return {"count": n, "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0}}

    def mget(self, default_index: Optional[str], body: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
        wanted: list[tuple[Optional[str], str]] = []
        if "ids" in body:
            wanted = [(default_index, str(i)) for i in body["ids"]]
        for d in body.get("docs", []):
            wanted.append((d.get("_index", default_index), str(d["_id"])))
        src_spec: Any = body.get("_source", params.get("_source", True))
        if src_spec in ("false", "true"):
            src_spec = src_spec == "true"
        docs = []
        for name, doc_id in wanted:
            if name is None:
                raise EsError(400, "action_request_validation_exception", "Validation Failed: 1: index is missing for doc 0")
            ix = self.index(name)
            doc = ix.docs.get(doc_id)
            if doc is None or doc.source is None:
                docs.append({"_index": name, "_id": doc_id, "found": False})
                continue
            entry: dict[str, Any] = {"_index": name, "_id": doc_id, "_version": doc.version, "_seq_no": doc.seq_no, "_primary_term": 1, "found": True}
            source = self._source(ix, doc.source, src_spec)
            if source is not None:
                entry["_source"] = source
            docs.append(entry)
        return {"docs": docs}


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _term_equal(ftype: str, have: Any, want: Any) -> bool:
    if ftype == "boolean":
        if isinstance(want, str):
            want = want == "true"
        return bool(have) is bool(want) if isinstance(want, bool) else False
    if ftype in ("long", "integer", "short", "double", "float"):
        try:
            return float(have) == float(want)
        except (TypeError, ValueError):
            return False
    return str(have) == (str(want).lower() if isinstance(want, bool) else str(want))


def _scores(similarity: str, vectors: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Elasticsearch's documented kNN scores of each row of ``vectors`` against ``q``."""
    v = vectors.astype(np.float64)
    qq = q.astype(np.float64)
    dots = v @ qq
    if similarity == "cosine":
        scores = (1.0 + dots / (np.linalg.norm(v, axis=1) * np.linalg.norm(qq))) / 2.0
    elif similarity == "l2_norm":
        scores = 1.0 / (1.0 + ((v - qq) ** 2).sum(axis=1))
    elif similarity == "dot_product":
        scores = (1.0 + dots) / 2.0
    else:
        scores = np.where(dots < 0, 1.0 / (1.0 - np.minimum(dots, 0.0)), dots + 1.0)
    return scores.astype(np.float32)  # Elasticsearch reports 32-bit scores


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    cluster: Cluster

    def setup(self) -> None:
        super().setup()
        # headers and body go out in two writes; without this, Nagle + delayed ACK add ~40 ms each
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        pass

    def _send(self, status: int, body: Any, head: bool = False) -> None:
        payload = b"" if body is None else json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("X-Elastic-Product", "Elasticsearch")
        self.send_header("Content-Type", "application/vnd.elasticsearch+json;compatible-with=9")
        self.send_header("Content-Length", str(0 if head else len(payload)))
        self.end_headers()
        if not head and payload:
            self.wfile.write(payload)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        parts = [p for p in url.path.split("/") if p]
        raw = self._body()
        try:
            with self.cluster.lock:
                status, body = self._route(method, parts, params, raw)
        except EsError as err:
            status, body = err.status, err.body()
        except (ValueError, KeyError, TypeError) as err:
            status, body = 400, EsError(400, "parsing_exception", f"stand-in could not parse the request: {err}").body()
        self._send(status, body, head=method == "HEAD")

    def _route(self, method: str, parts: list[str], params: dict[str, str], raw: bytes) -> tuple[int, Any]:
        c = self.cluster
        json_body = lambda: json.loads(raw) if raw.strip() else {}  # noqa: E731
        if not parts:
            if method in ("GET", "HEAD"):
                return 200, {
                    "name": "vk-standin",
                    "cluster_name": "vk-standin",
                    "cluster_uuid": "vkstandin0000000000000",
                    "version": {
                        "number": VERSION,
                        "build_flavor": "default",
                        "build_type": "standin",
                        "lucene_version": "10.3.0",
                        "minimum_wire_compatibility_version": "8.19.0",
                        "minimum_index_compatibility_version": "8.0.0",
                    },
                    "tagline": "You Know, for Search",
                }
        elif parts == ["_bulk"] or (len(parts) == 2 and parts[1] == "_bulk"):
            if method in ("POST", "PUT"):
                lines = [json.loads(line) for line in raw.split(b"\n") if line.strip()]
                return 200, c.bulk(parts[0] if len(parts) == 2 else None, lines, params.get("refresh", "false"))
        elif parts == ["_mget"] or (len(parts) == 2 and parts[1] == "_mget"):
            if method in ("GET", "POST"):
                return 200, c.mget(parts[0] if len(parts) == 2 else None, json_body(), params)
        elif len(parts) == 1 and not parts[0].startswith("_"):
            name = parts[0]
            if method == "HEAD":
                return (200 if name in c.indices else 404), None
            if method == "PUT":
                return 200, c.create(name, json_body())
            if method == "DELETE":
                c.index(name)
                del c.indices[name]
                return 200, {"acknowledged": True}
            if method == "GET":
                ix = c.index(name)
                return 200, {name: {"aliases": {}, "mappings": ix.mappings, "settings": {"index": ix.settings}}}
        elif len(parts) == 2:
            name, op = parts
            if op == "_mapping" and method == "GET":
                return 200, {name: {"mappings": c.index(name).mappings}}
            if op == "_refresh" and method in ("POST", "GET"):
                c.index(name).refresh()
                return 200, {"_shards": {"total": 1, "successful": 1, "failed": 0}}
            if op == "_count" and method in ("POST", "GET"):
                return 200, c.count(name, json_body())
            if op == "_search" and method in ("POST", "GET"):
                return 200, c.search(name, json_body(), params)
        raise EsError(405 if parts else 400, "illegal_argument_exception", f"stand-in does not implement {method} /{'/'.join(parts)}")

    def do_GET(self) -> None:  # noqa: N802 - http.server's method names
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802 - http.server's method names
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802 - http.server's method names
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802 - http.server's method names
        self._dispatch("DELETE")

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's method names
        self._dispatch("HEAD")


class StandinServer:
    """Runs the stand-in on 127.0.0.1 on a free port in a daemon thread; ``url`` is its address."""

    def __init__(self) -> None:
        self.cluster = Cluster()
        handler = type("Handler", (_Handler,), {"cluster": self.cluster})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="es-standin", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> StandinServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
