"""sqlalchemy-vectorknobs: vector columns, distance operators and ready engines for SQLAlchemy.

Importing the package has no side effects: no listeners are attached and no optional backend is
imported until an engine is created or a backend is used::

    import sqlalchemy_vectorknobs as vk
    from sqlalchemy import select

    engine = vk.create_engine("sqlite:///docs.db")
    stmt = select(Doc).order_by(Doc.embedding.cosine_distance(query)).limit(10)
"""

from __future__ import annotations

from .aggregates import avg, sum  # vk.sum shadows the builtin here, as pgvector.sqlalchemy.sum does
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
    ExtensionError,
    IncompatibleOperatorError,
    InvalidDistanceError,
    InvalidIndexError,
    InvalidMirrorError,
    InvalidSearchSettingError,
    InvalidVectorError,
    MigrationError,
    MirrorError,
    MirrorSyncError,
    MissingDependencyError,
    ReadOnlyDatabaseError,
    StandbyUnavailableError,
    UnsupportedDialectError,
    VectorKnobsError,
    VectorTypeError,
)
from .fulltext import FullTextIndex
from .index import VectorIndex, VectorIndexOptions
from .inspection import VectorColumnInfo, VectorIndexInfo, VectorInventory, inspect_vectors
from .migration import MigrateReport, TableMigration, migrate, vector_checksum
from .mirrors import ChromaMirror, ElasticsearchMirror, FaissMirror, MemoryMirror, Mirror, mirror_from_config
from .overview import DatabaseReport, OutboxDepth, describe_database, outbox_depth
from .query import ExplainResult, explain, nearest, search_settings
from .reflected import StaleCounts, count_stale, embedder_from_spec, reflect_embedded_column
from .rerank import ammr, arerank, mmr, rerank, rerank_query
from .routing import RoutingSession, routing_sessionmaker
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
    "Attachment",
    "BackfillReport",
    "BatchFailure",
    "BitVector",
    "CallableEmbedder",
    "ChromaMirror",
    "DatabaseReport",
    "DeadLetter",
    "DimensionMismatchError",
    "Distance",
    "DrainReport",
    "DriftReport",
    "ElasticsearchMirror",
    "EmbeddedColumn",
    "Embedder",
    "EmbeddingConfigError",
    "EmbeddingError",
    "ExplainResult",
    "ExtensionError",
    "FaissMirror",
    "FullTextIndex",
    "HalfVector",
    "HashingEmbedder",
    "IncompatibleOperatorError",
    "InvalidDistanceError",
    "InvalidIndexError",
    "InvalidMirrorError",
    "InvalidSearchSettingError",
    "InvalidVectorError",
    "MemoryMirror",
    "MigrateReport",
    "MigrationError",
    "Mirror",
    "MirrorError",
    "MirrorSyncError",
    "MissingDependencyError",
    "OutboxDepth",
    "ReadOnlyDatabaseError",
    "ReembedJob",
    "RoutingSession",
    "SentenceTransformerEmbedder",
    "SparseVector",
    "StaleCounts",
    "StandbyUnavailableError",
    "TableMigration",
    "UnsupportedDialectError",
    "Vector",
    "VectorColumnInfo",
    "VectorIndex",
    "VectorIndexInfo",
    "VectorIndexOptions",
    "VectorInventory",
    "VectorKnobsError",
    "VectorSearchResult",
    "VectorType",
    "VectorTypeError",
    "Vectorizer",
    "__version__",
    "abackfill",
    "adrain",
    "ammr",
    "anear_text",
    "arerank",
    "asearch_results",
    "attach",
    "avg",
    "backfill",
    "bulk_load",
    "count_stale",
    "create_async_engine",
    "create_engine",
    "create_outbox",
    "describe_database",
    "drain",
    "embedded_column",
    "embedder_from_spec",
    "explain",
    "hybrid_search",
    "inspect_vectors",
    "migrate",
    "mirror_from_config",
    "mmr",
    "near_text",
    "nearest",
    "outbox_depth",
    "outbox_table",
    "rebuild",
    "reembed",
    "reflect_embedded_column",
    "rerank",
    "rerank_query",
    "routing_sessionmaker",
    "search_results",
    "search_settings",
    "stale",
    "stale_condition",
    "sum",
    "text_search",
    "vector_checksum",
    "verify",
]
