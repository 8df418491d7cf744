"""The registry of dialect modules: the only place that maps a dialect name to its support.

Everything outside this package asks ``dialects.for_dialect(dialect)`` (or ``for_url``) and calls
the :class:`~.base.DialectSupport` methods; only the modules here know a dialect's SQL.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any

from sqlalchemy.engine import URL
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.ext.compiler import compiles

from ..exc import UnsupportedDialectError
from .base import DialectSupport

__all__ = ["SUPPORTED", "DialectSupport", "for_dialect", "for_url", "get", "register_type_compilation"]

SUPPORTED = {"postgresql": ".postgresql", "sqlite": ".sqlite"}
_loaded: dict[str, DialectSupport] = {}


def get(name: str) -> DialectSupport:
    """The support module for dialect ``name``, or :class:`UnsupportedDialectError`."""
    support = _loaded.get(name)
    if support is None:
        if name not in SUPPORTED:
            raise UnsupportedDialectError(
                f"Dialect '{name}' is not supported by sqlalchemy-vectorknobs; "
                f"supported dialects are {' and '.join(SUPPORTED)}."
            )
        support = importlib.import_module(SUPPORTED[name], __name__).SUPPORT
        _loaded[name] = support
    return support


#: SQLAlchemy's string compiler (``str(statement)``, ``print(stmt)``): no database to run on, so
#: statements render as on PostgreSQL (pgvector's syntax) instead of failing.
_STRING_DIALECT = "default"


def for_dialect(dialect: Dialect) -> DialectSupport:
    """The support module for an SQLAlchemy dialect instance."""
    name = dialect.name
    return get("postgresql" if name == _STRING_DIALECT else name)


def for_url(url: URL) -> DialectSupport:
    """The support module for an engine URL."""
    return get(url.get_backend_name())


def register_type_compilation(base: type, classes: Iterable[type]) -> None:
    """Make each vector type class render its column spec through the dialect module."""

    def _col_spec(type_: Any, compiler: Any, **kw: Any) -> str:
        return for_dialect(compiler.dialect).col_spec(type_)

    for cls in classes:
        compiles(cls)(_col_spec)
