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
* ``_count`` and ``_mget``;
* aliases: ``aliases`` in index creation, ``GET /_alias/<name>``, ``POST /_aliases`` with ``add``,
  ``remove`` and ``remove_index`` applied atomically (``remove_index`` first, as Elasticsearch does,
  so an index can be replaced by an alias of its name), and alias names accepted wherever an index
  name is (writes need an alias of exactly one index; deleting through an alias is refused);
* ``PUT /<index>/_settings``; ``index_options`` checked in ``dense_vector`` mappings; ``text``
  fields with a ``keyword`` sub-field (``fields``);
* ``match`` and ``multi_match`` (``best_fields``) queries scored with a BM25 *approximation*:
  lower-cased ``[a-z0-9_]+`` tokens instead of Elasticsearch's standard analyzer, statistics over the
  refreshed documents of the index (one shard), ``k1 = 1.2``, ``b = 0.75``. Rankings agree with
  Elasticsearch on simple English text; absolute scores do not, and nothing in the mirror relies on
  them (hybrid search fuses ranks).

Known simplifications: one shard, exact kNN (a real cluster's HNSW is approximate), and
deleted-document versions are kept for ever (Elasticsearch drops them after ``index.gc_deletes``).
Set ``VECTORKNOBS_ES_URL`` to run the same tests against a real cluster instead.
"""

from __future__ import annotations

import json
import math
import re
import socket
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np

VERSION = "9.2.0"
FIELD_TYPES = {"dense_vector", "keyword", "text", "long", "integer", "short", "double", "float", "boolean"}
SIMILARITIES = {"cosine", "l2_norm", "dot_product", "max_inner_product"}
HNSW_TYPES = {"hnsw", "int8_hnsw", "int4_hnsw", "bbq_hnsw", "bbq_disk"}
FLAT_TYPES = {"flat", "int8_flat", "int4_flat", "bbq_flat"}
BM25_K1, BM25_B = 1.2, 0.75
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
    source: dict[str, Any] | None  # None: deleted (the version is remembered)
    seq_no: int


@dataclass
class Index:
    name: str
    mappings: dict[str, Any]
    settings: dict[str, Any]
    docs: dict[str, Doc] = field(default_factory=dict)
    visible: dict[str, Doc] = field(default_factory=dict)
    seq_no: int = 0
    refreshes: int = 0

    @property
    def props(self) -> dict[str, Any]:
        return self.mappings.get("properties", {})

    def refresh(self) -> None:
        self.visible = {k: d for k, d in self.docs.items() if d.source is not None}
        self.refreshes += 1


class Cluster:
    def __init__(self) -> None:
        self.indices: dict[str, Index] = {}
        self.aliases: dict[str, set[str]] = {}  # alias -> concrete indices
        self.lock = threading.Lock()
        self._stats: dict[Any, tuple[int, float, dict[str, int]]] = {}

    # ------------------------------------------------------------------ index admin

    def index(self, name: str, write: bool = False) -> Index:
        """The index ``name`` names, directly or through an alias."""
        if name in self.indices:
            return self.indices[name]
        targets = self.aliases.get(name)
        if targets:
            if len(targets) > 1:
                if write:
                    raise EsError(400, "illegal_argument_exception", f"no write index is defined for alias [{name}]")
                raise EsError(400, "illegal_argument_exception", f"stand-in reads through an alias of one index only [{name}]")
            return self.indices[next(iter(targets))]
        raise EsError(404, "index_not_found_exception", f"no such index [{name}]")

    def exists(self, name: str) -> bool:
        return name in self.indices or bool(self.aliases.get(name))

    def get_alias(self, name: str) -> tuple[int, dict[str, Any]]:
        targets = self.aliases.get(name)
        if not targets:
            return 404, {"error": f"alias [{name}] missing", "status": 404}
        return 200, {index: {"aliases": {name: {}}} for index in sorted(targets)}

    def _check_alias_name(self, alias: str, indices: dict[str, Index]) -> None:
        if alias in indices:
            raise EsError(400, "invalid_alias_name_exception", f"Invalid alias name [{alias}]: an index or data stream exists with the same name as the alias")

    def update_aliases(self, body: dict[str, Any]) -> dict[str, Any]:
        actions = body.get("actions")
        if not isinstance(actions, list) or not actions:
            raise EsError(400, "action_request_validation_exception", "Validation Failed: 1: no actions specified;")
        indices = dict(self.indices)
        aliases = {a: set(t) for a, t in self.aliases.items()}
        parsed = []
        for action in actions:
            if not isinstance(action, dict) or len(action) != 1:
                raise EsError(400, "parsing_exception", "[aliases] expected one action per object")
            kind, spec = next(iter(action.items()))
            if kind not in ("add", "remove", "remove_index"):
                raise EsError(400, "parsing_exception", f"[aliases] unknown action [{kind}]")
            parsed.append((kind, spec))
        # Elasticsearch removes the indices first, so an index can be swapped for an alias of its name.
        for kind, spec in parsed:
            if kind == "remove_index":
                name = spec.get("index")
                if name in aliases:
                    raise EsError(400, "illegal_argument_exception", f"The provided expression [{name}] matches an alias, specify the corresponding concrete indices instead.")
                if name not in indices:
                    raise EsError(404, "index_not_found_exception", f"no such index [{name}]")
                del indices[name]
                for targets in aliases.values():
                    targets.discard(name)
        for kind, spec in parsed:
            if kind == "remove_index":
                continue
            index, alias = spec.get("index"), spec.get("alias")
            if index not in indices:
                raise EsError(404, "index_not_found_exception", f"no such index [{index}]")
            if not isinstance(alias, str):
                raise EsError(400, "action_request_validation_exception", "Validation Failed: 1: [alias] is required")
            if kind == "add":
                self._check_alias_name(alias, indices)
                aliases.setdefault(alias, set()).add(index)
            else:
                if index not in aliases.get(alias, set()):
                    raise EsError(404, "aliases_not_found_exception", f"aliases [{alias}] missing")
                aliases[alias].discard(index)
        self.indices = indices
        self.aliases = {a: t for a, t in aliases.items() if t}
        return {"acknowledged": True, "errors": False}

    def delete(self, name: str) -> dict[str, Any]:
        if name in self.aliases and name not in self.indices:
            raise EsError(400, "illegal_argument_exception", f"The provided expression [{name}] matches an alias, specify the corresponding concrete indices instead.")
        self.index(name)
        del self.indices[name]
        for targets in self.aliases.values():
            targets.discard(name)
        self.aliases = {a: t for a, t in self.aliases.items() if t}
        return {"acknowledged": True}

    def put_settings(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        ix = self.index(name)
        given = body.get("index", body) if isinstance(body.get("index"), dict) else body
        for key, value in given.items():
            key = key.removeprefix("index.")
            if key == "number_of_shards":
                raise EsError(400, "illegal_argument_exception", f"final {name} setting [index.number_of_shards], not updateable")
            if value is None:
                ix.settings.pop(key, None)
            else:
                ix.settings[key] = value
        return {"acknowledged": True}

    def create(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_.+-]*", name):
            raise EsError(400, "invalid_index_name_exception", f"Invalid index name [{name}], must be lowercase")
        if name in self.indices:
            raise EsError(400, "resource_already_exists_exception", f"index [{name}/{uuid.uuid4().hex[:22]}] already exists")
        if name in self.aliases:
            raise EsError(400, "invalid_index_name_exception", f"Invalid index name [{name}], already exists as alias")
        mappings = body.get("mappings") or {}
        settings = {(k.removeprefix("index.")): v for k, v in (body.get("settings") or {}).items()}
        for alias in body.get("aliases") or {}:
            self._check_alias_name(alias, self.indices)
        for fname, spec in (mappings.get("properties") or {}).items():
            ftype = spec.get("type")
            if ftype not in FIELD_TYPES:
                raise EsError(400, "mapper_parsing_exception", f"No handler for type [{ftype}] declared on field [{fname}]")
            for sub, sub_spec in (spec.get("fields") or {}).items():
                if sub_spec.get("type") not in FIELD_TYPES - {"dense_vector"}:
                    raise EsError(400, "mapper_parsing_exception", f"No handler for type [{sub_spec.get('type')}] declared on field [{sub}]")
            if ftype == "dense_vector":
                options = spec.get("index_options")
                if options is not None:
                    otype = options.get("type")
                    if otype not in HNSW_TYPES | FLAT_TYPES:
                        raise EsError(400, "mapper_parsing_exception", f"Unknown vector index options type [{otype}] for field [{fname}]")
                    for knob in set(options) - {"type"}:
                        if otype in FLAT_TYPES or knob not in ("m", "ef_construction", "confidence_interval", "rescore_vector"):
                            raise EsError(400, "mapper_parsing_exception", f"Mapping definition for [{fname}] has unsupported parameters:  [{knob} : {options[knob]}]")
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
        for alias in body.get("aliases") or {}:
            self.aliases.setdefault(alias, set()).add(name)
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
            elif isinstance(value, (dict, list)) or (ftype == "text" and not isinstance(value, str)):
                raise EsError(400, "document_parsing_exception", f"[1:2] failed to parse field [{key}] of type [{ftype}]")

    def write(self, ix: Index, action: str, meta: dict[str, Any], source: dict[str, Any] | None) -> dict[str, Any]:
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

    def bulk(self, default_index: str | None, lines: list[dict[str, Any]], refresh: str) -> dict[str, Any]:
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
                ix = self.index(name, write=True)
                base["_index"] = ix.name
                result = self.write(ix, action, meta, source)
                touched.add(ix.name)
                items.append({action: {**base, **result, "_shards": {"total": 1, "successful": 1, "failed": 0}}})
            except EsError as err:
                items.append({action: {**base, "status": err.status, "error": {"type": err.type, "reason": err.reason, "index": name}}})
        if refresh in ("true", "wait_for", ""):
            for name in touched:
                self.indices[name].refresh()
        errors = any("error" in next(iter(item.values())) for item in items)
        return {"took": 1, "errors": errors, "items": items}

    # ------------------------------------------------------------------ queries

    def field_value(self, ix: Index, source: dict[str, Any], fname: str) -> tuple[Any, str]:
        """(value, type) of ``fname`` in ``source``, following multi-fields such as ``title.keyword``."""
        if fname in ix.props:
            return source.get(fname), ix.props[fname].get("type", "keyword")
        if "." in fname:
            parent, sub = fname.split(".", 1)
            spec = ((ix.props.get(parent) or {}).get("fields") or {}).get(sub)
            if spec:
                return source.get(parent), spec.get("type", "keyword")
        return source.get(fname), "keyword"

    def matches(self, ix: Index, doc_id: str, source: dict[str, Any], query: dict[str, Any] | None) -> bool:
        return self.score(ix, doc_id, source, query) is not None

    def score(self, ix: Index, doc_id: str, source: dict[str, Any], query: dict[str, Any] | None) -> float | None:
        """The document's score for ``query`` (None: it does not match)."""
        if not query:
            return 1.0
        if len(query) != 1:
            raise EsError(400, "parsing_exception", "[_na] query malformed, must have exactly one clause")
        kind, body = next(iter(query.items()))
        if kind == "match_all":
            return 1.0
        if kind == "ids":
            return 1.0 if doc_id in set(map(str, body.get("values", []))) else None
        if kind == "exists":
            return 1.0 if self.field_value(ix, source, body["field"])[0] is not None else None
        if kind in ("term", "terms"):
            (fname, want), = [(k, v) for k, v in body.items() if k != "boost"]
            if kind == "term":
                want = [want["value"] if isinstance(want, dict) else want]
            have, ftype = self.field_value(ix, source, fname)
            if have is None:
                return None
            return 1.0 if any(_term_equal(ftype, have, w) for w in want) else None
        if kind == "match":
            (fname, spec), = body.items()
            text = spec["query"] if isinstance(spec, dict) else spec
            return self.bm25(ix, source, fname, str(text))
        if kind == "multi_match":
            if body.get("type", "best_fields") != "best_fields":
                raise EsError(400, "illegal_argument_exception", "stand-in implements multi_match type best_fields only")
            scores = [self.bm25(ix, source, f, str(body["query"])) for f in body.get("fields") or []]
            found = [x for x in scores if x is not None]
            return max(found) if found else None
        if kind == "bool":
            def clauses(key: str) -> list[dict[str, Any]]:
                value = body.get(key) or []
                return value if isinstance(value, list) else [value]

            if not all(self.matches(ix, doc_id, source, q) for q in clauses("filter")):
                return None
            if any(self.matches(ix, doc_id, source, q) for q in clauses("must_not")):
                return None
            total = 0.0
            for q in clauses("must"):
                got = self.score(ix, doc_id, source, q)
                if got is None:
                    return None
                total += got
            should = [self.score(ix, doc_id, source, q) for q in clauses("should")]
            if should and not clauses("must") and not clauses("filter") and all(x is None for x in should):
                return None
            return total + sum(x for x in should if x is not None)
        raise EsError(
            400,
            "parsing_exception",
            f"unknown query [{kind}] (stand-in implements match_all, term, terms, ids, exists, match, multi_match, bool)",
        )

    def bm25(self, ix: Index, source: dict[str, Any], fname: str, text: str) -> float | None:
        """BM25 of ``text`` against field ``fname`` (the approximation the module docstring describes)."""
        value, ftype = self.field_value(ix, source, fname)
        terms = _tokens(text)
        if value is None or not terms:
            return None
        if ftype != "text":  # keyword and other exact fields: the whole value is one term
            return 1.0 if str(value) == text else None
        doc_terms = _tokens(str(value))
        n, avgdl, df = self._field_stats(ix, fname)
        score = 0.0
        hit = False
        for term in set(terms):
            tf = doc_terms.count(term)
            if not tf:
                continue
            hit = True
            idf = math.log(1.0 + (n - df.get(term, 0) + 0.5) / (df.get(term, 0) + 0.5))
            score += idf * tf * (BM25_K1 + 1) / (tf + BM25_K1 * (1 - BM25_B + BM25_B * len(doc_terms) / avgdl))
        return score if hit else None

    def _field_stats(self, ix: Index, fname: str) -> tuple[int, float, dict[str, int]]:
        key = (ix.name, fname, ix.refreshes)
        cached = self._stats.get(key)
        if cached is None:
            df: dict[str, int] = {}
            lengths = []
            for doc in ix.visible.values():
                value = (doc.source or {}).get(fname)
                if value is None:
                    continue
                toks = _tokens(str(value))
                lengths.append(len(toks))
                for term in set(toks):
                    df[term] = df.get(term, 0) + 1
            cached = (len(lengths), (sum(lengths) / len(lengths)) if lengths and sum(lengths) else 1.0, df)
            self._stats = {key: cached}  # statistics of the latest refresh only
        return cached

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
            sort_values: list[list[Any]] | None = None
        else:
            scored = [(k, d, self.score(ix, k, d.source or {}, query)) for k, d in ix.visible.items()]
            scored = [(k, d, sc) for k, d, sc in scored if sc is not None]
            scored.sort(key=lambda kds: -kds[2])  # stable: equal scores keep index order
            docs = [(k, d) for k, d, _ in scored]
            doc_scores = {k: sc for k, _, sc in scored}
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
            hits = [(k, d, float(np.float32(doc_scores[k]))) for k, d in docs][:size]
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

    def _source(self, ix: Index, source: dict[str, Any], spec: Any) -> dict[str, Any] | None:
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

    def mget(self, default_index: str | None, body: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
        wanted: list[tuple[str | None, str]] = []
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


def _tokens(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


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

    def log_message(self, format: str, *args: Any) -> None:
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
        json_body = lambda: json.loads(raw) if raw.strip() else {}
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
        elif parts == ["_aliases"]:
            if method == "POST":
                return 200, c.update_aliases(json_body())
        elif len(parts) == 2 and parts[0] == "_alias":
            if method in ("GET", "HEAD"):
                return c.get_alias(parts[1])
        elif len(parts) == 1 and not parts[0].startswith("_"):
            name = parts[0]
            if method == "HEAD":
                return (200 if c.exists(name) else 404), None
            if method == "PUT":
                return 200, c.create(name, json_body())
            if method == "DELETE":
                return 200, c.delete(name)
            if method == "GET":
                ix = c.index(name)
                aliases = {a: {} for a, targets in c.aliases.items() if ix.name in targets}
                return 200, {ix.name: {"aliases": aliases, "mappings": ix.mappings, "settings": {"index": ix.settings}}}
        elif len(parts) == 2:
            name, op = parts
            if op == "_mapping" and method == "GET":
                ix = c.index(name)
                return 200, {ix.name: {"mappings": ix.mappings}}
            if op == "_settings" and method == "PUT":
                return 200, c.put_settings(name, json_body())
            if op == "_settings" and method == "GET":
                ix = c.index(name)
                return 200, {ix.name: {"settings": {"index": ix.settings}}}
            if op == "_refresh" and method in ("POST", "GET"):
                c.index(name).refresh()
                return 200, {"_shards": {"total": 1, "successful": 1, "failed": 0}}
            if op == "_count" and method in ("POST", "GET"):
                return 200, c.count(name, json_body())
            if op == "_search" and method in ("POST", "GET"):
                return 200, c.search(name, json_body(), params)
        raise EsError(405 if parts else 400, "illegal_argument_exception", f"stand-in does not implement {method} /{'/'.join(parts)}")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_HEAD(self) -> None:
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
