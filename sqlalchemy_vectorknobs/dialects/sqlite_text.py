"""SQLite full-text search: ``FullTextIndex`` as an FTS5 table kept in step by triggers, ranked
candidates with ``bm25()``, and query text rewritten into FTS5 query syntax.

The FTS5 table is named like the index and reads its text from the base table (external content,
``content_rowid`` = the integer primary key), so the text is stored once. Triggers
``<index>__ai`` / ``__au`` / ``__ad`` keep its index in step; creating the index fills it from
the existing rows (FTS5 ``'rebuild'``). ``bm25()`` is lower-is-better, so the score is ``-bm25()``.

Query text: ``match="websearch"`` follows PostgreSQL's ``websearch_to_tsquery`` (all words,
``"quoted phrases"``, ``or`` between alternatives, ``-word`` to exclude); ``match="any"`` matches
documents with any word. Every word is quoted, so no input is an FTS5 syntax error. With
``config="english"`` the English stop words PostgreSQL drops are dropped too (its tokenizer
``porter unicode61`` stems words as PostgreSQL's english configuration does, closely not exactly).
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy import func, literal_column
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Connection, Engine

from ..exc import UnsupportedDialectError
from .base import subquery_sql

_TOKENIZERS = {"english": "porter unicode61", "simple": "unicode61"}
_FTS_SHADOW = re.compile(r"^(?P<base>.+?)_(data|idx|content|docsize|config)$")
_TRIGGERS = ("__ai", "__au", "__ad")
_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TOKEN = re.compile(r'-?"[^"]*"?|\S+')
_WORD = re.compile(r"\w+")
#: the English stop words of PostgreSQL's english configuration (Snowball's list)
ENGLISH_STOP_WORDS = frozenset(
    ["i", "me", "my", "myself", "we", "our", "ours", "ourselves", "you", "your", "yours", "yourself", "yourselves", "he", "him", "his", "himself", "she", "her", "hers", "herself", "it", "its", "itself", "they", "them", "their", "theirs", "themselves", "what", "which", "who", "whom", "this", "that", "these", "those", "am", "is", "are", "was", "were", "be", "been", "being", "have", "has", "had", "having", "do", "does", "did", "doing", "a", "an", "the", "and", "but", "if", "or", "because", "as", "until", "while", "of", "at", "by", "for", "with", "about", "against", "between", "into", "through", "during", "before", "after", "above", "below", "to", "from", "up", "down", "in", "out", "on", "off", "over", "under", "again", "further", "then", "once", "here", "there", "when", "where", "why", "how", "all", "any", "both", "each", "few", "more", "most", "other", "some", "such", "no", "nor", "not", "only", "own", "same", "so", "than", "too", "very", "s", "t", "can", "will", "just", "don", "should", "now"]
)
#: an FTS5 query that matches no row (an empty phrase)
MATCH_NOTHING = '""'


def _phrase(words: list[str]) -> str:
    return '"' + " ".join(words) + '"'


def websearch_to_fts5(text: str, config: str = "english") -> str:
    """``text`` read as ``websearch_to_tsquery`` reads it, written as an FTS5 query."""
    stop = ENGLISH_STOP_WORDS if config == "english" else frozenset()
    groups: list[tuple[list[str], list[str]]] = [([], [])]  # OR-ed groups of (required, excluded)
    pending_or = False
    for token in _TOKEN.findall(text):
        negate = token.startswith("-")
        body = token[1:] if negate else token
        if body.startswith('"'):
            words = _WORD.findall(body)
            term = _phrase(words) if words else None
        elif not negate and body.lower() == "or":
            pending_or = bool(groups[-1][0])
            continue
        else:
            words = [w for w in _WORD.findall(body) if w.lower() not in stop]
            term = _phrase(words) if words else None
        if term is None:
            continue
        if pending_or and not negate:
            groups.append(([], []))
        pending_or = False
        groups[-1][1 if negate else 0].append(term)
    parts = []
    for required, excluded in groups:
        if not required:
            continue  # only exclusions: FTS5's NOT needs something to subtract from
        part = " AND ".join(required)
        for term in excluded:
            part = f"({part}) NOT {term}"
        parts.append(f"({part})" if len(groups) > 1 else part)
    return " OR ".join(parts) if parts else MATCH_NOTHING


def any_words_to_fts5(text: str, config: str = "english") -> str:
    """An FTS5 query matching documents with any word of ``text`` (stop words dropped for english)."""
    stop = ENGLISH_STOP_WORDS if config == "english" else frozenset()
    words = [w for w in _WORD.findall(text) if w.lower() not in stop]
    return " OR ".join(_phrase([w]) for w in dict.fromkeys(words)) if words else MATCH_NOTHING


def fts_table(index: Any) -> sa.TableClause:
    """A lightweight table for the FTS5 table of ``index`` (rowid and the table-named column)."""
    return sa.table(str(index.name), sa.column("rowid", sa.Integer), sa.column(str(index.name)))


class SQLiteText:
    """Full-text DDL and queries for SQLite (FTS5)."""

    def check_fulltext_index(self, index: Any) -> None:
        return None  # SQLite-only limits are checked when the index is created, on SQLite

    def _fts_parts(self, index: Any) -> tuple[Any, list[str]]:
        where = f"FullTextIndex '{index.name}' on SQLite"
        table = index.table
        pks = list(table.primary_key.columns)
        if len(pks) != 1 or not isinstance(pks[0].type, sa.Integer):
            raise UnsupportedDialectError(
                f"{where} needs a single integer primary key (FTS5 rows are keyed by rowid), got "
                f"{', '.join(repr(p.type) for p in pks) or 'none'}."
            )
        names = [c.name for c in index.text_columns]
        for name in [pks[0].name, *names, str(index.name), table.name]:
            if not _PLAIN.fullmatch(name):
                raise UnsupportedDialectError(
                    f"{where} cannot use the name {name!r}; FTS5 takes only letters, digits and underscores in its names."
                )
        return pks[0], names

    def _tokenizer(self, index: Any) -> str:
        opts = index.fulltext_options
        if opts.tokenize is not None:
            return str(opts.tokenize)
        tokenizer = _TOKENIZERS.get(opts.config)
        if tokenizer is None:
            raise UnsupportedDialectError(
                f"FullTextIndex '{index.name}' on SQLite has no FTS5 tokenizer for config={opts.config!r}; "
                "use 'english' or 'simple', or pass tokenize= (e.g. 'unicode61')."
            )
        return tokenizer

    def _fts_definition(self, index: Any) -> str:
        pk, names = self._fts_parts(index)
        return (
            f"CREATE VIRTUAL TABLE {index.name} USING fts5({', '.join(names)}, content='{index.table.name}', "
            f"content_rowid='{pk.name}', tokenize='{self._tokenizer(index)}')"
        )

    def before_create_fulltext_index(self, index: Any, connection: Connection) -> None:
        self._fts_definition(index)  # refuse before any DDL

    def render_create_fulltext_index(self, compiler: Any, create: Any, **kw: Any) -> str:
        return self._fts_definition(create.element)

    def render_drop_fulltext_index(self, compiler: Any, drop: Any, **kw: Any) -> str:
        return f"DROP TABLE IF EXISTS {compiler.preparer.quote_identifier(drop.element.name)}"

    def fulltext_index_follow_up(self, index: Any, preparer: Any) -> list[str]:
        """The three triggers, then the backfill from the rows already there."""
        pk, names = self._fts_parts(index)
        fts, base = str(index.name), index.table.name
        target = ", ".join(["rowid", *names])

        def values(row: str) -> str:
            return ", ".join(f"{row}.{n}" for n in [pk.name, *names])

        delete = f"INSERT INTO {fts}({fts}, {target}) VALUES ('delete', {values('OLD')});"
        insert = f"INSERT INTO {fts}({target}) VALUES ({values('NEW')});"
        return [
            f"CREATE TRIGGER {fts}__ai AFTER INSERT ON {base} BEGIN {insert} END",
            f"CREATE TRIGGER {fts}__au AFTER UPDATE OF {', '.join([pk.name, *names])} ON {base} BEGIN {delete} {insert} END",
            f"CREATE TRIGGER {fts}__ad AFTER DELETE ON {base} BEGIN {delete} END",
            f"INSERT INTO {fts}({fts}) VALUES ('rebuild')",
        ]

    def fulltext_index_clean_up(self, name: str, preparer: Any) -> list[str]:
        return self.drop_fulltext_index_sql(name, preparer)

    def drop_fulltext_index_sql(self, name: str, preparer: Any) -> list[str]:
        """Everything an FTS5-backed index leaves behind: its triggers, then its table."""
        q = preparer.quote_identifier
        return [f"DROP TRIGGER IF EXISTS {q(name + suffix)}" for suffix in _TRIGGERS] + [f"DROP TABLE IF EXISTS {q(name)}"]

    def fulltext_indexes(self, connection: Connection, table: str, schema: str | None) -> dict[str, dict[str, Any]]:
        """The FTS5 tables this package made for ``table`` (found by their insert trigger):
        {name: {columns, config, tokenize, definition}}."""
        out = {}
        for name, (base, definition) in _fts_tables(connection).items():
            if base != table:
                continue
            body = definition[definition.find("(") + 1 : definition.rfind(")")]
            parts = [p.strip() for p in body.split(",")]
            options = dict(p.split("=", 1) for p in parts if "=" in p)
            tokenize = options.get("tokenize", "'unicode61'").strip("'\"")
            config = {v: k for k, v in _TOKENIZERS.items()}.get(tokenize)
            out[name] = {
                "columns": [p for p in parts if "=" not in p],
                "config": config or "english",
                "tokenize": None if config else tokenize,
                "definition": definition,
            }
        return out

    def fulltext_index_preamble(self, index: Any, preparer: Any) -> list[str]:
        # A table rebuild (batch migration) drops the triggers and leaves the FTS5 table orphaned.
        return self.drop_fulltext_index_sql(str(index.name), preparer)

    def fulltext_index_matches(self, index: Any, info: dict[str, Any]) -> bool:
        tokenize = info["tokenize"] or _TOKENIZERS[info["config"]]
        return bool([c.name for c in index.text_columns] == info["columns"] and self._tokenizer(index) == tokenize)

    def recreate_fulltext_index_sql(self, index: Any, content_table: str, preparer: Any) -> list[str]:
        """The FTS5 index ``index`` built afresh on the table it is declared on, a copy that will be
        renamed to ``content_table``, replacing one of the same name: the old triggers and FTS5
        table dropped, the FTS5 table created reading its text from ``content_table``, the triggers
        of :meth:`fulltext_index_follow_up` on the copy (SQLite moves them when the copy is
        renamed), and the index filled from the copy's rows ('rebuild' would read
        ``content_table``, which is not the copy yet).

        alembic_ext runs it for the copy a batch migration makes of an indexed table.
        """
        pk, names = self._fts_parts(index)
        fts, copy = str(index.name), str(index.table.name)
        definition = self._fts_definition(index).replace(f"content='{copy}'", f"content='{content_table}'", 1)
        triggers = [sql for sql in self.fulltext_index_follow_up(index, preparer) if sql.startswith("CREATE TRIGGER")]
        fill = f"INSERT INTO {fts}(rowid, {', '.join(names)}) SELECT {', '.join([pk.name, *names])} FROM {copy}"
        return [*self.drop_fulltext_index_sql(fts, preparer), definition, *triggers, fill]

    def fulltext_query_value(self, text: str, match: str, config: str) -> str:
        if match == "websearch":
            return websearch_to_fts5(text, config)
        return any_words_to_fts5(text, config)

    def text_search_select(self, element: Any) -> Any:
        index = element.index
        if index is None:
            names = ", ".join(c.name for c in element.text_columns)
            raise UnsupportedDialectError(
                f"Full-text search on SQLite needs a vk.FullTextIndex on {element.table.name}({names}) (an FTS5 table); "
                "declare one next to the table's columns."
            )
        fts = fts_table(index)
        bm25 = func.bm25(literal_column(str(index.name)), type_=sa.Float)
        pk = element.key_column
        stmt = sa_select(fts.c.rowid.label("id"), (-bm25).label("score")).where(fts.c[str(index.name)].op("MATCH")(element.query))
        if element.where is not None:
            stmt = stmt.join_from(fts, element.table, pk == fts.c.rowid).where(element.where)
        return stmt.order_by(bm25, fts.c.rowid).limit(literal_column(str(int(element.limit))))

    def render_text_search(self, compiler: Any, element: Any, **kw: Any) -> str:
        return subquery_sql(compiler, self.text_search_select(element), **kw)

    def hide_fulltext_tables(self, engine: Engine) -> None:
        """Reflection through this engine skips the FTS5 tables of FullTextIndexes and their shadow tables."""
        dialect = engine.dialect
        get_table_names = dialect.get_table_names

        def table_names(connection: Any, schema: Any = None, **kw: Any) -> list[str]:
            hidden = set(_fts_tables(connection))
            names = get_table_names(connection, schema=schema, **kw)
            return [n for n in names if n not in hidden and not _is_shadow(n, hidden)]

        dialect.get_table_names = table_names  # type: ignore[method-assign]


def _is_shadow(name: str, hidden: set[str]) -> bool:
    match = _FTS_SHADOW.match(name)
    return bool(match and match.group("base") in hidden)


def _fts_tables(connection: Any) -> dict[str, tuple[str, str]]:
    """{FTS5 table: (base table, definition)} for the FTS5 tables that have this package's insert trigger."""
    rows = connection.exec_driver_sql(
        "SELECT v.name, t.tbl_name, v.sql FROM sqlite_master v JOIN sqlite_master t "
        "ON t.type = 'trigger' AND t.name = v.name || '__ai' "
        "WHERE v.type = 'table' AND v.sql LIKE 'CREATE VIRTUAL TABLE%' AND lower(v.sql) LIKE '%using fts5%'"
    )
    return {name: (base, sql) for name, base, sql in rows}
