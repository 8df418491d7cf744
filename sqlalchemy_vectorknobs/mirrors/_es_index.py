"""What an ``ElasticsearchMirror`` index looks like: its mapping, its settings, and the checks on both.

Kept apart from :mod:`.elasticsearch` (which talks to the cluster) so the shapes can be read in one
place: the ``dense_vector`` field with explicit ``similarity`` and ``index_options``, the
bookkeeping fields, metadata and text fields, and the index settings a mirror creates with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from ..distance import Distance
from .base import InvalidMirrorError

__all__ = [
    "DEFAULT_INDEX_OPTIONS",
    "DELETED_FIELD",
    "PK_FIELD",
    "SIMILARITY",
    "build_settings",
    "check_index_options",
    "filter_field",
    "index_settings",
    "mapping",
]

PK_FIELD = "vk_pk"
DELETED_FIELD = "vk_deleted"
SIMILARITY = {Distance.COSINE: "cosine", Distance.L2: "l2_norm", Distance.INNER_PRODUCT: "max_inner_product"}
#: Elasticsearch's own HNSW defaults, written out so the mapping says what it builds (unquantized:
#: ``_score`` carries exact float distances).
DEFAULT_INDEX_OPTIONS: dict[str, Any] = {"type": "hnsw", "m": 16, "ef_construction": 100}
_HNSW_TYPES = ("hnsw", "int8_hnsw", "int4_hnsw", "bbq_hnsw", "bbq_disk")
_FLAT_TYPES = ("flat", "int8_flat", "int4_flat", "bbq_flat")
#: The settings a rebuild builds a new generation with (no replicas, no periodic refresh) before
#: it restores the configured ones and swaps the alias.
BUILD_SETTINGS = {"number_of_replicas": 0, "refresh_interval": "-1"}
_KEYWORD_LIMIT = 8191  # Lucene's term length limit in UTF-8 bytes, over four bytes per character


def check_index_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """``index_options`` of the ``dense_vector`` field, checked (default :data:`DEFAULT_INDEX_OPTIONS`)."""
    if options is None:
        return dict(DEFAULT_INDEX_OPTIONS)
    if not isinstance(options, Mapping):
        raise InvalidMirrorError(
            f"ElasticsearchMirror index_options={options!r} is not a dict; pass one such as {DEFAULT_INDEX_OPTIONS}."
        )
    out = dict(options)
    kind = out.get("type")
    if kind not in _HNSW_TYPES + _FLAT_TYPES:
        raise InvalidMirrorError(
            f"ElasticsearchMirror index_options type {kind!r} is not known; use one of {list(_HNSW_TYPES + _FLAT_TYPES)}."
        )
    for knob in ("m", "ef_construction"):
        if knob not in out:
            continue
        value = out[knob]
        if kind in _FLAT_TYPES:
            raise InvalidMirrorError(f"ElasticsearchMirror index_options {knob!r} applies to HNSW types, not {kind!r}.")
        if isinstance(value, bool) or not isinstance(value, int) or value < 2:
            raise InvalidMirrorError(f"ElasticsearchMirror index_options {knob}={value!r} is not a whole number of at least 2.")
    return out


def index_settings(shards: Any, replicas: Any, refresh_interval: Any, settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """The settings a mirror creates its index with: shards, replicas, refresh interval, then ``settings``."""
    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
        raise InvalidMirrorError(f"ElasticsearchMirror shards={shards!r} is not a whole number of at least 1.")
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
        raise InvalidMirrorError(f"ElasticsearchMirror replicas={replicas!r} is not a whole number of at least 0.")
    if refresh_interval is not None and not (isinstance(refresh_interval, str) and refresh_interval.strip()):
        raise InvalidMirrorError(
            f"ElasticsearchMirror refresh_interval={refresh_interval!r} is not a time value such as '1s' or '-1'."
        )
    if settings is not None and not isinstance(settings, Mapping):
        raise InvalidMirrorError(f"ElasticsearchMirror settings={settings!r} is not a dict of index settings.")
    out: dict[str, Any] = {"number_of_shards": shards, "number_of_replicas": replicas}
    if refresh_interval is not None:
        out["refresh_interval"] = refresh_interval
    for key, value in (settings or {}).items():
        out[_short(key)] = value
    return out


def build_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` with :data:`BUILD_SETTINGS` in place of the replicas and refresh interval."""
    return {**settings, **BUILD_SETTINGS}


def _short(key: str) -> str:
    return key.removeprefix("index.")


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
    return "keyword"


def mapping(
    table: sa.Table,
    field: str,
    dim: int,
    distance: Distance,
    pk_is_int: bool,
    metadata_columns: Sequence[str],
    text_columns: Sequence[str],
    index_options: Mapping[str, Any],
) -> dict[str, Any]:
    """The index mapping (``dynamic: strict``)."""
    props: dict[str, Any] = {
        field: {
            "type": "dense_vector",
            "dims": dim,
            "index": True,
            "similarity": SIMILARITY[distance],
            "index_options": dict(index_options),
        },
        PK_FIELD: {"type": "long" if pk_is_int else "keyword"},
        DELETED_FIELD: {"type": "boolean"},
    }
    for name in metadata_columns:
        if name in text_columns:
            # BM25 on the analysed text; equality filters on the keyword sub-field.
            props[name] = {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": _KEYWORD_LIMIT}}}
        else:
            props[name] = {"type": _field_type(table.c[name])}
    return {"dynamic": "strict", "properties": props}


def filter_field(name: str, text_columns: Sequence[str]) -> str:
    """The field an equality filter on column ``name`` uses."""
    return f"{name}.keyword" if name in text_columns else name
