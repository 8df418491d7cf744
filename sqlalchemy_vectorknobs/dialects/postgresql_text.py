"""PostgreSQL full-text search: ``FullTextIndex`` as a GIN expression index, and ranked candidates
with ``websearch_to_tsquery`` / ``to_tsquery`` and ``ts_rank_cd``.

A mixin of :class:`.postgresql.PostgreSQLSupport`. The document expression is written in one place
(:func:`document`) for both the index and the queries, so the planner matches the index.
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy import func, literal_column
from sqlalchemy import select as sa_select
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlalchemy.engine import Connection

from .base import subquery_sql

_WORD = re.compile(r"\w+")
_DEF_CONFIG = re.compile(r"to_tsvector\('([^']+)'::regconfig")
_DEF_COLUMN = re.compile(r'COALESCE\(("[^"]+"|\w+),')


def _config_literal(config: str) -> Any:
    # A constant (not a bound parameter): an expression index only serves queries whose
    # expression is the same, constants included. ``config`` is checked to be a plain name.
    return literal_column(f"'{config}'::regconfig")


def document(columns: list[Any], config: str) -> Any:
    """``to_tsvector('config'::regconfig, coalesce(c1, '') || ' ' || coalesce(c2, ''))``, or the
    column itself when it is a single ``tsvector`` column (the generated-column recipe)."""
    if len(columns) == 1 and isinstance(columns[0].type, TSVECTOR):
        return columns[0]
    empty: Any = literal_column("''")
    space: Any = literal_column("' '")
    text: Any = None
    for col in columns:
        part = func.coalesce(col, empty)
        text = part if text is None else text.op("||")(space).op("||")(part)
    return func.to_tsvector(_config_literal(config), text)


class PostgreSQLText:
    """Full-text DDL and queries for PostgreSQL."""

    def check_fulltext_index(self, index: Any) -> None:
        return None

    def before_create_fulltext_index(self, index: Any, connection: Connection) -> None:
        return None

    def render_create_fulltext_index(self, compiler: Any, create: Any, **kw: Any) -> str:
        index = create.element
        expr = document(index.text_columns, index.config)
        sql = "CREATE INDEX "
        if getattr(create, "if_not_exists", False):
            sql += "IF NOT EXISTS "
        body = compiler.sql_compiler.process(expr, include_table=False, literal_binds=True)
        return (
            f"{sql}{compiler._prepared_index_name(index, include_schema=False)} "
            f"ON {compiler.preparer.format_table(index.table)} USING gin ({body})"
        )

    def render_drop_fulltext_index(self, compiler: Any, drop: Any, **kw: Any) -> str:
        return str(compiler.visit_drop_index(drop, **kw))

    def fulltext_index_follow_up(self, index: Any, preparer: Any) -> list[str]:
        return []  # the CREATE INDEX is the whole index

    def fulltext_index_clean_up(self, name: str, preparer: Any) -> list[str]:
        return []  # DROP INDEX (or DROP TABLE) removed everything

    def drop_fulltext_index_sql(self, name: str, preparer: Any) -> list[str]:
        return [f"DROP INDEX IF EXISTS {preparer.quote(name)}"]

    def fulltext_index_preamble(self, index: Any, preparer: Any) -> list[str]:
        return []  # a clash with an existing index should fail, not be replaced

    def fulltext_indexes(self, connection: Connection, table: str, schema: str | None) -> dict[str, dict[str, Any]]:
        """The GIN ``to_tsvector`` indexes on ``table``: {name: {columns, config, tokenize, definition}}."""
        rows = connection.execute(
            sa.text(
                "SELECT i.relname, pg_catalog.pg_get_indexdef(i.oid) FROM pg_catalog.pg_index ix "
                "JOIN pg_catalog.pg_class i ON i.oid = ix.indexrelid "
                "JOIN pg_catalog.pg_class t ON t.oid = ix.indrelid "
                "JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace "
                "JOIN pg_catalog.pg_am am ON am.oid = i.relam "
                "WHERE am.amname = 'gin' AND t.relname = :t AND n.nspname = coalesce(:s, current_schema())"
            ),
            {"t": table, "s": schema},
        )
        out = {}
        for name, definition in rows:
            config = _DEF_CONFIG.search(definition)
            if config is None:
                continue
            columns = [c.strip('"') for c in _DEF_COLUMN.findall(definition)]
            out[name] = {"columns": columns, "config": config.group(1), "tokenize": None, "definition": definition}
        return out

    def fulltext_index_matches(self, index: Any, info: dict[str, Any]) -> bool:
        return bool([c.name for c in index.text_columns] == info["columns"] and index.config == info["config"])

    def fulltext_query_value(self, text: str, match: str, config: str) -> str:
        if match == "websearch":
            return text  # websearch_to_tsquery reads it as it is
        return " | ".join(_WORD.findall(text))  # to_tsquery syntax; stop words are dropped by it

    def text_search_select(self, element: Any) -> Any:
        index = element.index
        columns = index.text_columns if index is not None else list(element.text_columns)
        doc = document(columns, element.config)
        if element.match_mode == "websearch":
            query = func.websearch_to_tsquery(_config_literal(element.config), element.query)
        else:
            query = func.to_tsquery(_config_literal(element.config), element.query)
        score = func.ts_rank_cd(doc, query, type_=sa.Float).label("score")
        pk = element.key_column
        stmt = sa_select(pk.label("id"), score).where(doc.op("@@")(query))
        if element.where is not None:
            stmt = stmt.where(element.where)
        return stmt.order_by(score.desc(), pk).limit(literal_column(str(int(element.limit))))

    def render_text_search(self, compiler: Any, element: Any, **kw: Any) -> str:
        return subquery_sql(compiler, self.text_search_select(element), **kw)
