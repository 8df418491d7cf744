"""sqlalchemy-vectorknobs: vector columns, distance operators and ready engines for SQLAlchemy.

Importing the package has no side effects: no listeners are attached and no optional backend is
imported until an engine is created or a backend is used::

    import sqlalchemy_vectorknobs as vk
    from sqlalchemy import select

    engine = vk.create_engine("sqlite:///docs.db")
    stmt = select(Doc).order_by(Doc.embedding.cosine_distance(query)).limit(10)
"""

from __future__ import annotations

from .bulk import bulk_load
from .distance import Distance
from .embedding import (
    BackfillReport,
    BatchFailure,
    CallableEmbedder,
    EmbeddedColumn,
    Embedder,
    EmbeddingConfigError,
    HashingEmbedder,
    ReembedJob,
    SentenceTransformerEmbedder,
    Vectorizer,
    abackfill,
    backfill,
    embedded_column,
    reembed,
    stale,
    stale_condition,
)
from .engine import create_async_engine, create_engine
from .exc import (
    DimensionMismatchError,
    EmbeddingError,
    InvalidMirrorError,
    MirrorError,
    MirrorSyncError,
    ExtensionError,
    IncompatibleOperatorError,
    InvalidDistanceError,
    InvalidIndexError,
    InvalidSearchSettingError,
    InvalidVectorError,
    MissingDependencyError,
    UnsupportedDialectError,
    VectorKnobsError,
    VectorTypeError,
)
from .fulltext import FullTextIndex
from .index import VectorIndex, VectorIndexOptions
from .mirrors import ChromaMirror, ElasticsearchMirror, FaissMirror, MemoryMirror, Mirror, mirror_from_config
from .inspection import VectorColumnInfo, VectorIndexInfo, VectorInventory, inspect_vectors
from .query import ExplainResult, explain, nearest, search_settings
from .rerank import ammr, arerank, mmr, rerank, rerank_query
from .search import (
    VectorSearchResult,
    anear_text,
    asearch_results,
    hybrid_search,
    near_text,
    search_results,
    text_search,
)
from .sync import (
    Attachment,
    DeadLetter,
    DrainReport,
    DriftReport,
    adrain,
    attach,
    create_outbox,
    drain,
    outbox_table,
    rebuild,
    verify,
)
from .types import BitVector, HalfVector, SparseVector, Vector, VectorType

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "Vector",
    "HalfVector",
    "BitVector",
    "SparseVector",
    "VectorType",
    "Distance",
    "VectorIndex",
    "VectorIndexOptions",
    "nearest",
    "search_settings",
    "explain",
    "ExplainResult",
    "bulk_load",
    "create_engine",
    "create_async_engine",
    "inspect_vectors",
    "VectorInventory",
    "VectorColumnInfo",
    "VectorIndexInfo",
    "VectorKnobsError",
    "InvalidVectorError",
    "DimensionMismatchError",
    "VectorTypeError",
    "IncompatibleOperatorError",
    "InvalidDistanceError",
    "InvalidIndexError",
    "InvalidSearchSettingError",
    "UnsupportedDialectError",
    "MissingDependencyError",
    "ExtensionError",
    "EmbeddingError",
    "EmbeddingConfigError",
    "embedded_column",
    "EmbeddedColumn",
    "Embedder",
    "HashingEmbedder",
    "SentenceTransformerEmbedder",
    "CallableEmbedder",
    "stale",
    "stale_condition",
    "backfill",
    "abackfill",
    "BackfillReport",
    "BatchFailure",
    "reembed",
    "ReembedJob",
    "Vectorizer",
    "Mirror",
    "MemoryMirror",
    "FaissMirror",
    "ChromaMirror",
    "ElasticsearchMirror",
    "mirror_from_config",
    "MirrorError",
    "InvalidMirrorError",
    "MirrorSyncError",
    "attach",
    "Attachment",
    "drain",
    "adrain",
    "DrainReport",
    "DeadLetter",
    "create_outbox",
    "outbox_table",
    "rebuild",
    "verify",
    "DriftReport",
    "FullTextIndex",
    "near_text",
    "anear_text",
    "text_search",
    "hybrid_search",
    "VectorSearchResult",
    "search_results",
    "asearch_results",
    "mmr",
    "ammr",
    "rerank",
    "arerank",
    "rerank_query",
]
