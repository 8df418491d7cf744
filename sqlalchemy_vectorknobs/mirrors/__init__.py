"""Mirrors: copies of a vector column in a secondary index (Faiss, Chroma, Elasticsearch, memory).

Every mirror is built with the vector column first and speaks the :class:`Mirror` protocol
(``upsert``, ``delete``, ``search``, ``get``, ``ids``, ``count``, ``clear``, ``close``); see
:mod:`.base` for the shared contract (distance units, ``where`` filters, versions and tombstones)::

    import sqlalchemy_vectorknobs as vk

    mirror = vk.FaissMirror(Doc.embedding, path="docs.vkfaiss", kind="hnsw", metadata_columns=["category"])
    mirror.upsert([doc.id], [doc.embedding], [{"category": doc.category}])
    mirror.search(query, k=10, where={"category": "news"})   # [(pk, distance), ...]

:func:`mirror_from_config` builds any of them (or a third-party mirror registered under the entry
point group ``sqlalchemy_vectorknobs.mirrors``) from a dict or a URL such as
``"faiss:///doc.vkfaiss?kind=hnsw"``.

Importing this package imports none of faiss, chromadb or elasticsearch; each mirror loads its
backend when constructed and names the extra to install if it is missing.
"""

from __future__ import annotations

from .base import BaseMirror, InvalidMirrorError, Mirror, MirrorError
from .chroma import ChromaMirror
from .config import ENTRY_POINT_GROUP, available_backends, mirror_from_config
from .elasticsearch import ElasticsearchMirror
from .faiss import FaissMirror
from .memory import MemoryMirror

__all__ = [
    "ENTRY_POINT_GROUP",
    "BaseMirror",
    "ChromaMirror",
    "ElasticsearchMirror",
    "FaissMirror",
    "InvalidMirrorError",
    "MemoryMirror",
    "Mirror",
    "MirrorError",
    "available_backends",
    "mirror_from_config",
]
