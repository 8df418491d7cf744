"""FullTextIndex on real databases: created by create_all, kept in step with the rows, backfilled,
hidden from reflection, dropped with its table; the query-text rewriting for FTS5; clear errors."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.schema import CreateIndex

import sqlalchemy_vectorknobs as vk
from sqlalchemy_vectorknobs import search
from sqlalchemy_vectorknobs.dialects.sqlite_text import any_words_to_fts5, websearch_to_fts5
from sqlalchemy_vectorknobs.fulltext import FullTextIndex

from ..conftest import Backend, unique


def make_table(**index_kw: Any) -> tuple[sa.MetaData, sa.Table, FullTextIndex]:
    md = sa.MetaData()
    t = sa.Table(
        unique("ft"),
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("title", sa.String(100)),
        sa.Column("body", sa.Text),
        sa.Column("n", sa.Integer),
    )
    index = FullTextIndex(f"{t.name}_fts", t.c.title, "body", **index_kw)
    return md, t, index


def ids(backend: Backend, t: sa.Table, text: str, **kw: Any) -> list[int]:
    class Base(DeclarativeBase):
        pass

    mapped = type("Row", (Base,), {"__table__": t})

    def go(session: Session) -> list[int]:
        return [row.id for row, _ in session.execute(search.text_search(mapped, text, k=50, **kw))]

    return backend.session(go)


ROWS = [
    {"id": 1, "title": "Copy files", "body": "Copy a file and its permission bits.", "n": 1},
    {"id": 2, "title": "Move", "body": "Recursively move a file or directory.", "n": 2},
    {"id": 3, "title": "JSON", "body": "Deserialize a JSON document to a Python object.", "n": 1},
    {"id": 4, "title": "Nothing", "body": None, "n": 2},
]


def test_index_follows_inserts_updates_deletes(backend: Backend) -> None:
    md, t, _ = make_table()
    backend.create(md)
    try:
        backend.run(lambda c: c.execute(t.insert(), ROWS))
        assert ids(backend, t, "file") == [1, 2] or ids(backend, t, "file") == [2, 1]
        assert ids(backend, t, "json python") == [3]
        assert ids(backend, t, "files", where=t.c.n == 2) == [2]
        backend.run(lambda c: c.execute(t.update().where(t.c.id == 3).values(body="Nothing about that format now.")))
        assert ids(backend, t, "python") == []
        assert ids(backend, t, "json") == [3]  # still in its title
        backend.run(lambda c: c.execute(t.update().where(t.c.id == 4).values(title="Python")))
        assert ids(backend, t, "python") == [4]
        backend.run(lambda c: c.execute(t.delete().where(t.c.id == 1)))
        assert ids(backend, t, "copy") == []
        assert ids(backend, t, '"file move"') == []  # both words, not that phrase
        assert ids(backend, t, '"move a file or directory"') == [2]
        assert ids(backend, t, "move or json") in ([2, 3], [3, 2])
        assert ids(backend, t, "file -directory") == []
    finally:
        backend.drop(md)


def test_index_created_later_is_filled_from_existing_rows(backend: Backend) -> None:
    md, t, index = make_table()
    t.indexes.discard(index)
    backend.create(md)
    t.indexes.add(index)
    try:
        backend.run(lambda c: c.execute(t.insert(), ROWS))
        backend.run(index.create)
        assert sorted(ids(backend, t, "file")) == [1, 2]
        backend.run(lambda c: c.execute(t.insert(), [{"id": 5, "title": "Later", "body": "a file written later", "n": 3}]))
        assert sorted(ids(backend, t, "file")) == [1, 2, 5]
    finally:
        backend.drop(md)


def test_sqlite_tables_hidden_and_dropped(sqlite_backend: Backend) -> None:
    md, t, index = make_table()
    backend = sqlite_backend
    backend.create(md)

    def names(conn: sa.Connection) -> list[str]:
        return conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE name LIKE ?", (f"{t.name}%",)).scalars().all()

    try:
        found = backend.run(names)
        assert {f"{t.name}_fts", f"{t.name}_fts_data", f"{t.name}_fts__ai", f"{t.name}_fts__au", f"{t.name}_fts__ad"} <= set(found)
        assert backend.run(lambda c: [n for n in sa.inspect(c).get_table_names() if n.startswith(t.name)]) == [t.name]
        backend.run(index.drop)
        assert backend.run(names) == [t.name]
        backend.run(index.create)
    finally:
        backend.drop(md)
    assert backend.run(names) == []


def test_postgresql_gin_expression_index_is_used(pg_backend: Backend) -> None:
    md, t, index = make_table(config="simple")
    pg_backend.create(md)
    try:
        definition = pg_backend.run(
            lambda c: c.execute(sa.text("SELECT pg_get_indexdef(CAST(:n AS regclass))"), {"n": index.name}).scalar()
        )
        assert "USING gin (to_tsvector('simple'::regconfig" in definition, definition

        class Base(DeclarativeBase):
            pass

        mapped = type("Row", (Base,), {"__table__": t})

        def plan(session: Session) -> vk.ExplainResult:
            session.execute(sa.text("SET LOCAL enable_seqscan = off"))
            return vk.explain(session, search.text_search(mapped, "copy"))

        result = pg_backend.session(plan)
        assert index.name in result.indexes_used, result.plan
    finally:
        pg_backend.drop(md)


def test_postgresql_generated_tsvector_column_recipe(pg_backend: Backend) -> None:
    from sqlalchemy.dialects.postgresql import TSVECTOR

    class Base(DeclarativeBase):
        pass

    class Article(Base):
        __tablename__ = unique("art")
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        title: Mapped[str] = mapped_column(sa.String(100))
        body: Mapped[str | None] = mapped_column(sa.Text)
        tsv = mapped_column(
            TSVECTOR,
            sa.Computed("to_tsvector('english', coalesce(title, '') || ' ' || coalesce(body, ''))", persisted=True),
        )
        __table_args__ = (sa.Index(f"{__tablename__}_tsv", "tsv", postgresql_using="gin"),)

    pg_backend.create(Base.metadata)
    try:
        pg_backend.run(lambda c: c.execute(Article.__table__.insert(), [{k: r[k] for k in ("id", "title", "body")} for r in ROWS]))
        got = pg_backend.session(
            lambda s: [a.id for a, _ in s.execute(search.text_search(Article, "files copy", text_columns=[Article.tsv]))]
        )
        assert got == [1]
    finally:
        pg_backend.drop(Base.metadata)


def test_ddl_text() -> None:
    md, t, index = make_table()
    pg = str(CreateIndex(index).compile(dialect=postgresql.dialect()))
    assert pg == (
        f"CREATE INDEX {index.name} ON {t.name} USING gin (to_tsvector('english'::regconfig, "
        "(coalesce(title, '') || ' ') || coalesce(body, '')))"
    )
    lite = str(CreateIndex(index).compile(dialect=sqlite.dialect()))
    assert lite == (
        f"CREATE VIRTUAL TABLE {index.name} USING fts5(title, body, content='{t.name}', content_rowid='id', "
        "tokenize='porter unicode61')"
    )
    _, _, simple = make_table(config="simple", tokenize="trigram")
    assert "tokenize='trigram'" in str(CreateIndex(simple).compile(dialect=sqlite.dialect()))
    plain = sa.Index("plain_ix", t.c.n)
    assert str(CreateIndex(plain).compile(dialect=postgresql.dialect())) == f"CREATE INDEX plain_ix ON {t.name} (n)"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("copy file permissions", '"copy" AND "file" AND "permissions"'),
        ("the copy of a file", '"copy" AND "file"'),
        ('"copy a file" or move', '("copy a file") OR ("move")'),
        ("copy -directory -tree", '(("copy") NOT "directory") NOT "tree"'),
        ("what's new?", '"new"'),
        ("", '""'),
        ("the and of", '""'),
        ("-only -negative", '""'),
        ('unbalanced "quote', '"unbalanced" AND "quote"'),
        ("col:umn (x) AND y*", '"col umn" AND "x" AND "y"'),  # joined words: a phrase, as PostgreSQL reads them
    ],
)
def test_websearch_to_fts5(text: str, expected: str) -> None:
    assert websearch_to_fts5(text) == expected


def test_any_words_to_fts5() -> None:
    assert any_words_to_fts5("copy the file, copy it") == '"copy" OR "file"'
    assert any_words_to_fts5("the it", config="simple") == '"the" OR "it"'
    assert any_words_to_fts5("?!") == '""'


def test_unusual_queries_run(backend: Backend) -> None:
    md, t, _ = make_table()
    backend.create(md)
    try:
        backend.run(lambda c: c.execute(t.insert(), ROWS))
        for text in ["", "the", '"', "col:umn AND (x) NEAR y*", "or or", "'; DROP TABLE x; --"]:
            assert ids(backend, t, text) == [], text
            ids(backend, t, text, match="any")
        # only exclusions: PostgreSQL matches the rows without the word, FTS5 cannot say that
        assert ids(backend, t, "-file") == ([] if backend.dialect == "sqlite" else [3, 4])
    finally:
        backend.drop(md)


def test_declaration_errors() -> None:
    with pytest.raises(vk.InvalidIndexError, match="config='eng lish'"):
        FullTextIndex("x", "a", config="eng lish")
    with pytest.raises(vk.InvalidIndexError, match="at least one text column"):
        FullTextIndex("x")
    md = sa.MetaData()
    with pytest.raises(vk.InvalidIndexError, match="which is Integer"):
        sa.Table("t", md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("n", sa.Integer), FullTextIndex("t_fts", "n"))


def test_sqlite_refusals(sqlite_backend: Backend) -> None:
    md = sa.MetaData()
    name = unique("ft")
    sa.Table(name, md, sa.Column("key", sa.String(10), primary_key=True), sa.Column("title", sa.String(50)),
             FullTextIndex(f"{name}_fts", "title"))
    with pytest.raises(vk.UnsupportedDialectError, match="single integer primary key"):
        sqlite_backend.create(md)
    md2, _, _ = make_table(config="german")
    with pytest.raises(vk.UnsupportedDialectError, match="no FTS5 tokenizer for config='german'"):
        sqlite_backend.create(md2)
    md3 = sa.MetaData()
    t3 = sa.Table(unique("ft"), md3, sa.Column("id", sa.Integer, primary_key=True), sa.Column("title", sa.String(50)))

    class Base(DeclarativeBase):
        pass

    mapped = type("Row", (Base,), {"__table__": t3})
    sqlite_backend.create(md3)
    try:
        with pytest.raises(vk.UnsupportedDialectError, match=r"needs a vk.FullTextIndex on ft_\w+\(title\)"):
            sqlite_backend.session(lambda s: s.execute(search.text_search(mapped, "x", text_columns=["title"])).all())
    finally:
        sqlite_backend.drop(md3)
