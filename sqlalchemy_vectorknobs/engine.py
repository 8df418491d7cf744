"""Ready engines: ``create_engine`` / ``create_async_engine`` and the ``vectorknobs`` engine plugin.

Three equivalent ways to get an engine that loads sqlite-vec on every SQLite connection, sends
vectors in pgvector's binary format and reflects vector columns::

    engine = vk.create_engine("sqlite:///docs.db")
    engine = sqlalchemy.create_engine("postgresql+psycopg://...", plugins=["vectorknobs"])
    engine = vk.create_async_engine("postgresql+asyncpg://...")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy
from sqlalchemy.engine import URL, CreateEnginePlugin, Engine

from . import dialects

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["PLUGIN_NAME", "VectorKnobsPlugin", "create_async_engine", "create_engine"]

PLUGIN_NAME = "vectorknobs"


class VectorKnobsPlugin(CreateEnginePlugin):
    """The ``sqlalchemy.plugins`` entry point ``vectorknobs``."""

    def __init__(self, url: URL, kwargs: dict[str, Any]) -> None:
        super().__init__(url, kwargs)
        from .query import ENGINE_SEARCH_DEFAULTS, validate_search_settings

        self._support = dialects.for_url(url)
        self._settings = validate_search_settings(kwargs.pop("vector_search", ENGINE_SEARCH_DEFAULTS))
        self._support.prepare_engine_kwargs(url, kwargs)

    def update_url(self, url: URL) -> URL:
        return url

    def engine_created(self, engine: Engine) -> None:
        self._support.setup_engine(engine)
        self._support.set_connection_defaults(engine, self._settings)


def _register_plugin() -> None:
    # Lets vk.create_engine work from a source checkout too, where no entry point is installed.
    from sqlalchemy.dialects import plugins

    plugins.register(PLUGIN_NAME, __name__, "VectorKnobsPlugin")


def _with_plugin(kw: dict[str, Any]) -> dict[str, Any]:
    _register_plugin()
    names = list(kw.pop("plugins", []) or [])
    if PLUGIN_NAME not in names:
        names.append(PLUGIN_NAME)
    kw["plugins"] = names
    return kw


def create_engine(url: str | URL, **kw: Any) -> Engine:
    """``sqlalchemy.create_engine`` with the vectorknobs plugin; same arguments, plus
    ``vector_search={...}``: search knobs every connection starts with (default
    ``{"ef_search": 100}``; ``{}`` keeps the database's own defaults).

    >>> import sqlalchemy_vectorknobs as vk
    >>> engine = vk.create_engine("sqlite://")
    """
    return sqlalchemy.create_engine(url, **_with_plugin(kw))


def create_async_engine(url: str | URL, **kw: Any) -> AsyncEngine:
    """``sqlalchemy.ext.asyncio.create_async_engine`` with the vectorknobs plugin."""
    from sqlalchemy.ext.asyncio import create_async_engine as _create

    return _create(url, **_with_plugin(kw))
