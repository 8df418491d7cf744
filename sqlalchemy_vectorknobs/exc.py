"""Every error the package raises: one root, each also the matching built-in.

All errors carry SQLAlchemy's ``DontWrapMixin`` so that an error raised while a
statement's parameters are processed (a bad vector caught at bind time) reaches
the caller as itself, not wrapped in ``sqlalchemy.exc.StatementError``::

    try:
        session.add(Doc(embedding=[1.0, 2.0]))
        session.flush()
    except vk.DimensionMismatchError as err:
        print(err)   # Column 'doc.embedding' expects 3 dimensions, got 2.
"""

from __future__ import annotations

from sqlalchemy.exc import DontWrapMixin

__all__ = [
    "DimensionMismatchError",
    "EmbeddingError",
    "ExtensionError",
    "IncompatibleOperatorError",
    "InvalidDistanceError",
    "InvalidIndexError",
    "InvalidMirrorError",
    "InvalidSearchSettingError",
    "InvalidVectorError",
    "MirrorError",
    "MirrorSyncError",
    "MigrationError",
    "MissingDependencyError",
    "ReadOnlyDatabaseError",
    "StandbyUnavailableError",
    "UnsupportedDialectError",
    "VectorKnobsError",
    "VectorTypeError",
]


class VectorKnobsError(DontWrapMixin, Exception):
    """Root of every error raised by sqlalchemy-vectorknobs."""


class InvalidVectorError(VectorKnobsError, ValueError):
    """A vector value is malformed: NaN/Inf, empty, wrong shape, out of range."""


class DimensionMismatchError(InvalidVectorError):
    """A vector has a different number of dimensions than its column declares."""


class VectorTypeError(InvalidVectorError, TypeError):
    """A value is not something a vector can be made from (strings, None, objects)."""


class IncompatibleOperatorError(VectorKnobsError, TypeError):
    """A distance operator or aggregate (``vk.avg``/``vk.sum``) was used on a type it does not apply to."""


class InvalidDistanceError(VectorKnobsError, ValueError):
    """A metric name is not one of the known distances or their aliases."""


class InvalidIndexError(VectorKnobsError, ValueError):
    """A VectorIndex declaration is invalid or beyond the database's limits."""


class InvalidSearchSettingError(VectorKnobsError, ValueError):
    """A query-time knob (``vector_search`` / ``search_settings``) has a bad name or value."""


class UnsupportedDialectError(VectorKnobsError, NotImplementedError):
    """The database dialect cannot store a type or evaluate an operator."""


class MissingDependencyError(VectorKnobsError, ImportError):
    """An optional package needed for a feature is not installed."""


class ExtensionError(VectorKnobsError, RuntimeError):
    """The database's vector extension is missing or may not be created."""


class EmbeddingError(VectorKnobsError, RuntimeError):
    """An embedder failed or returned something unusable; under ``on_error="raise"`` nothing is written."""


class MirrorError(VectorKnobsError, RuntimeError):
    """A mirror backend failed: unreachable server, rejected write, unreadable or corrupt file."""


class InvalidMirrorError(VectorKnobsError, ValueError):
    """A mirror was configured or called with something it cannot use (column, key, metadata, filter)."""


class ReadOnlyDatabaseError(VectorKnobsError, PermissionError):
    """A command that writes was pointed at a database that cannot be written to (a hot standby)."""


class StandbyUnavailableError(VectorKnobsError, ConnectionError):
    """No hot standby of a ``vk.routing_sessionmaker`` answers, and it was told not to read from the primary then."""


class MigrationError(VectorKnobsError, RuntimeError):
    """``vk.migrate`` cannot copy a table, or the copy does not match its source (counts, checksum)."""


class MirrorSyncError(VectorKnobsError, RuntimeError):
    """Committed changes could not be written to one or more mirrors (the data *is* committed).

    ``failures`` maps each failing mirror's name to the exception it raised.
    """

    def __init__(self, message: str, failures: dict[str, BaseException]) -> None:
        super().__init__(message)
        self.failures = failures
