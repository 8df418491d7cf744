"""``FullTextIndex``: a full-text index declared like any ``sqlalchemy.Index``, and the ranked
full-text candidates that ``vk.text_search`` / ``vk.hybrid_search`` select from.

    class Doc(Base):
        __tablename__ = "doc"
        id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[str] = mapped_column(String(200))
        body: Mapped[str | None]
        __table_args__ = (vk.FullTextIndex("doc_fts", "title", "body", config="english"),)

It is created by ``metadata.create_all``. On PostgreSQL it is a GIN expression index on
``to_tsvector(config, coalesce(title, '') || ' ' || coalesce(body, ''))`` (the expression the
queries use, so the index serves them); on SQLite an FTS5 virtual table named like the index, with
the base table as its external content, kept in step by triggers and dropped with the table.
Both dialects write their own SQL (``dialects/postgresql_text.py``, ``dialects/sqlite_text.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Index, event
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.ddl import SchemaDropper
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.visitors import InternalTraversal

from . import dialects
from . import index as _index  # its CreateIndex / DropIndex hooks render FullTextIndex too
from .exc import InvalidIndexError, InvalidSearchSettingError
from .statement import effective, new_token

__all__ = ["MATCH_MODES", "FullTextIndex", "FullTextOptions", "TextSearch", "find_fulltext_index"]

#: how the query text is read: ``"websearch"`` (all words, "quoted phrases", ``or``, ``-word``, as
#: PostgreSQL's ``websearch_to_tsquery``) or ``"any"`` (documents with any of the words)
MATCH_MODES = ("websearch", "any")
_CONFIG = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


@dataclass(frozen=True)
class FullTextOptions:
    """The validated knobs of a :class:`FullTextIndex`."""

    #: PostgreSQL text search configuration (``english``, ``simple``, ``german``, ...)
    config: str = "english"
    #: SQLite FTS5 tokenizer; None derives it from ``config`` (english: ``porter unicode61``,
    #: simple: ``unicode61``)
    tokenize: str | None = None

    def __post_init__(self) -> None:
        check_config(self.config, "FullTextIndex")
        if self.tokenize is not None and (not isinstance(self.tokenize, str) or "'" in self.tokenize or not self.tokenize.strip()):
            raise InvalidIndexError(
                f"FullTextIndex tokenize={self.tokenize!r} is not valid; give an FTS5 tokenizer spec such as 'porter unicode61'."
            )


def check_config(config: Any, where: str) -> str:
    """``config`` if it is a plain text search configuration name (it is written into SQL)."""
    if not isinstance(config, str) or not _CONFIG.fullmatch(config):
        raise InvalidIndexError(
            f"{where} config={config!r} is not a text search configuration name; use a plain name such as 'english' or 'simple'."
        )
    return config


class FullTextIndex(Index):
    """A full-text index over one or more text columns (names, columns or mapped attributes).

    PostgreSQL: ``CREATE INDEX name ON t USING gin (to_tsvector('config'::regconfig,
    coalesce(c1, '') || ' ' || coalesce(c2, '')))``. SQLite: an FTS5 table ``name`` (external
    content: the base table; ``content_rowid`` its integer primary key) with triggers
    ``name__ai`` / ``__au`` / ``__ad``, filled from the existing rows when created.
    """

    def __init__(self, name: str, *columns: Any, config: str = "english", tokenize: str | None = None, **kw: Any) -> None:
        _index.check_index_name(name, "FullTextIndex")
        if not columns:
            raise InvalidIndexError(f"FullTextIndex '{name}' needs at least one text column.")
        self.fulltext_options = FullTextOptions(config, tokenize)
        super().__init__(name, *columns, **kw)
        _index.follow_unattached(self, *columns[:1])
        event.listen(self, "before_create", _before_create)
        event.listen(self, "after_create", _after_create)
        event.listen(self, "after_drop", _after_drop)

    @property
    def text_columns(self) -> list[Any]:
        """The indexed columns, in declaration order (available once attached to a table)."""
        return list(self.columns)

    @property
    def config(self) -> str:
        return self.fulltext_options.config

    def _set_parent(self, parent: Any, **kw: Any) -> None:
        super()._set_parent(parent, **kw)
        self._check_declaration()
        if not event.contains(parent, "after_drop", _after_table_drop):
            event.listen(parent, "after_drop", _after_table_drop)
        _index.follow_table_copies(self, self.text_columns[0])

    def _copy_to(self, table: Any) -> FullTextIndex | None:
        """This index, declared on ``table`` (a copy of its table), unless ``table`` has one of that name."""
        if any(ix.name == self.name for ix in table.indexes):
            return None
        opts = self.fulltext_options
        columns = [table.c[c.key] for c in self.text_columns]
        return FullTextIndex(str(self.name), *columns, config=opts.config, tokenize=opts.tokenize, **self.dialect_kwargs)

    def _check_declaration(self) -> None:
        if len(self.expressions) != len(self.columns):
            raise InvalidIndexError(f"FullTextIndex '{self.name}' indexes columns only, not SQL expressions.")
        for col in self.text_columns:
            if not isinstance(col.type, sa.String) or isinstance(col.type, sa.Enum):
                raise InvalidIndexError(
                    f"FullTextIndex '{self.name}' indexes '{col.table.name}.{col.name}', which is {col.type!r}; "
                    "it indexes text columns (String, Text, Unicode)."
                )
        for name in dialects.SUPPORTED:
            dialects.get(name).check_fulltext_index(self)

    # The CreateIndex / DropIndex compile hooks in index.py hand these indexes to these methods.
    def render_create(self, compiler: Any, create: Any, **kw: Any) -> str:
        return dialects.for_dialect(compiler.dialect).render_create_fulltext_index(compiler, create, **kw)

    def render_drop(self, compiler: Any, drop: Any, **kw: Any) -> str:
        return dialects.for_dialect(compiler.dialect).render_drop_fulltext_index(compiler, drop, **kw)


def _before_create(index: FullTextIndex, connection: Any, **kw: Any) -> None:
    dialects.for_dialect(connection.dialect).before_create_fulltext_index(index, connection)


def _after_create(index: FullTextIndex, connection: Any, **kw: Any) -> None:
    support = dialects.for_dialect(connection.dialect)
    for sql in support.fulltext_index_follow_up(index, connection.dialect.identifier_preparer):
        connection.exec_driver_sql(sql)


def _after_drop(index: FullTextIndex, connection: Any, **kw: Any) -> None:
    support = dialects.for_dialect(connection.dialect)
    for sql in support.fulltext_index_clean_up(str(index.name), connection.dialect.identifier_preparer):
        connection.exec_driver_sql(sql)


def _after_table_drop(table: Any, connection: Any, **kw: Any) -> None:
    if not isinstance(kw.get("_ddl_runner"), SchemaDropper):
        return  # a migration tool's drop (see index._after_table_drop)
    for index in table.indexes:
        if isinstance(index, FullTextIndex):
            _after_drop(index, connection)


def find_fulltext_index(table: Any, columns: list[Any] | None) -> FullTextIndex | None:
    """The FullTextIndex of ``table`` on exactly ``columns`` (in any order); the only one if None."""
    found = [ix for ix in table.indexes if isinstance(ix, FullTextIndex)]
    if columns is None:
        return found[0] if len(found) == 1 else None
    wanted = {c.name for c in columns}
    for ix in found:
        if {c.name for c in ix.text_columns} == wanted and len(ix.text_columns) == len(columns):
            return ix
    return None


class _QueryText(sa.types.TypeDecorator[str]):
    """The query text, rewritten on its way to the driver into what the dialect's matcher reads."""

    impl = sa.String
    cache_ok = True

    def __init__(self, match: str = "websearch", config: str = "english") -> None:
        super().__init__()
        self.match = match
        self.config = config

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        if value is None:
            return None
        return dialects.for_dialect(dialect).fulltext_query_value(value, self.match, self.config)


class TextSearch(FunctionElement[Any]):
    """Full-text candidates ``(id, score)`` of one table, best first (higher score is better),
    at most ``limit`` of them; the dialect writes the SQL (``render_text_search``)."""

    name = "vk_text_search"
    inherit_cache = True
    #: its rows are a search's results: ``.where()`` on them stays outside (statement.py)
    vk_search_element = True
    _traverse_internals = FunctionElement._traverse_internals + [
        ("text_columns", InternalTraversal.dp_clauseelement_tuple),
        ("query", InternalTraversal.dp_clauseelement),
        ("where", InternalTraversal.dp_clauseelement),
        ("limit", InternalTraversal.dp_plain_obj),
        ("config", InternalTraversal.dp_string),
        ("match_mode", InternalTraversal.dp_string),
        ("index_name", InternalTraversal.dp_string),
    ]

    def __init__(
        self,
        text_columns: list[Any],
        text: str,
        limit: int,
        *,
        config: str,
        match: str,
        where: Any = None,
        index: FullTextIndex | None = None,
    ) -> None:
        if match not in MATCH_MODES:
            raise InvalidSearchSettingError(f"Full-text match={match!r} is not valid; use 'websearch' or 'any'.")
        if not isinstance(text, str):
            raise InvalidSearchSettingError(f"Full-text query must be a string, got {type(text).__name__}.")
        self.text_columns = tuple(text_columns)
        self.query = sa.bindparam("vk_text_query", text, type_=_QueryText(match, config), unique=True)
        self.limit = limit
        self.config = config
        self.match_mode = match
        self.where = where
        self.index_name = str(index.name) if index is not None else ""
        self.vk_token = new_token()
        super().__init__()

    @property
    def table(self) -> Any:
        return self.text_columns[0].table

    @property
    def index(self) -> FullTextIndex | None:
        for ix in self.table.indexes:
            if isinstance(ix, FullTextIndex) and ix.name == self.index_name:
                return ix
        return None

    @property
    def key_column(self) -> Any:
        pks = list(self.table.primary_key.columns)
        if len(pks) != 1:
            raise InvalidIndexError(
                f"Table '{self.table.name}' has {len(pks)} primary key columns; full-text search needs exactly one."
            )
        return pks[0]


@compiles(TextSearch)
def _compile_text_search(element: TextSearch, compiler: Any, **kw: Any) -> str:
    return dialects.for_dialect(compiler.dialect).render_text_search(compiler, effective(compiler, element), **kw)
