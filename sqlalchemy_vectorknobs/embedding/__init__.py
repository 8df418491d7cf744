"""Embedding sync: vectors that follow their source text (``embedded_column``, ``stale``, ``backfill``).

Importing this package installs nothing; the session listeners are attached the first time a
model declares an :func:`embedded_column`.
"""

from __future__ import annotations

from .column import EmbeddedColumn, EmbeddingConfigError, embedded_column
from .embedders import CallableEmbedder, Embedder, HashingEmbedder, SentenceTransformerEmbedder
from .maintenance import (
    BackfillReport,
    BatchFailure,
    ReembedJob,
    Vectorizer,
    abackfill,
    backfill,
    reembed,
    stale,
    stale_condition,
)

__all__ = [
    "BackfillReport",
    "BatchFailure",
    "CallableEmbedder",
    "EmbeddedColumn",
    "Embedder",
    "EmbeddingConfigError",
    "HashingEmbedder",
    "ReembedJob",
    "SentenceTransformerEmbedder",
    "Vectorizer",
    "abackfill",
    "backfill",
    "embedded_column",
    "reembed",
    "stale",
    "stale_condition",
]
