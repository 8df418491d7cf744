"""FullTextIndex through real ``alembic`` commands: autogenerate writes op.create_fulltext_index,
upgrade builds it (GIN on PostgreSQL, FTS5 + triggers on SQLite), a second autogenerate is empty,
a changed declaration is dropped and re-created, downgrades restore the previous one."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from sqlalchemy_vectorknobs import dialects

from .test_round_trip import Project, upgrade_body

MODELS = '''
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
import sqlalchemy_vectorknobs as vk
from sqlalchemy_vectorknobs.fulltext import FullTextIndex


class Base(DeclarativeBase):
    pass


class Doc(Base):
    __tablename__ = "doc"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(100))
    body: Mapped[str] = mapped_column(sa.Text)
    embedding = mapped_column(vk.Vector(8))
    __table_args__ = (FullTextIndex("doc_fts", {columns}, config={config!r}),)
'''


def live(project: Project) -> dict[str, dict[str, object]]:
    engine = project.engine()
    try:
        with engine.connect() as conn:
            found = dialects.for_dialect(conn.dialect).fulltext_indexes(conn, "doc", None)
            return {name: {k: v for k, v in info.items() if k != "definition"} for name, info in found.items()}
    finally:
        engine.dispose()


def matches(project: Project, text: str) -> list[int]:
    """Row ids the SQLite FTS5 table finds for one word."""
    engine = project.engine()
    try:
        with engine.begin() as conn:
            sql = "SELECT rowid FROM doc_fts WHERE doc_fts MATCH :q ORDER BY rowid"
            return [int(i) for i in conn.execute(sa.text(sql), {"q": text}).scalars()]
    finally:
        engine.dispose()


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_fulltext_index_round_trip(tmp_path: Path, dialect: str, request: pytest.FixtureRequest) -> None:
    if dialect == "sqlite":
        url = f"sqlite:///{tmp_path}/app.db"
    else:
        url = request.getfixturevalue("fresh_pg_url").render_as_string(hide_password=False)
    project = Project(tmp_path, url, MODELS)
    project.write_models(columns='"title", "body"', config="english")
    first = project.autogenerate("create docs")
    assert "op.create_fulltext_index('doc_fts', 'doc', ['title', 'body'])" in first, first
    assert "op.create_index" not in first and "import alembic_ext" in first, first
    project.alembic("upgrade", "head")
    assert live(project) == {"doc_fts": {"columns": ["title", "body"], "config": "english", "tokenize": None}}
    engine = project.engine()
    try:
        with engine.begin() as conn:  # rows written after the migration are indexed
            conn.execute(sa.text("INSERT INTO doc (id, title, body) VALUES (1, 'Copy files', 'shutil copies'), (2, 'Other', 'x')"))
            if dialect == "sqlite":
                assert sa.inspect(conn).get_table_names() == ["alembic_version", "doc"]
    finally:
        engine.dispose()
    if dialect == "sqlite":
        assert matches(project, "copy") == [1]
    project.assert_nothing_to_do()

    project.write_models(columns='"title"', config="simple")
    change = upgrade_body(project.autogenerate("title only, simple"))
    assert "op.drop_fulltext_index('doc_fts', 'doc')" in change, change
    assert "op.create_fulltext_index('doc_fts', 'doc', ['title'], config='simple')" in change, change
    project.alembic("upgrade", "head")
    assert live(project) == {"doc_fts": {"columns": ["title"], "config": "simple", "tokenize": None}}
    if dialect == "sqlite":  # rebuilt from the rows already there, over the title only
        assert matches(project, "shutil") == [] and matches(project, "files") == [1]
    project.assert_nothing_to_do()

    project.alembic("downgrade", "-1")
    assert live(project) == {"doc_fts": {"columns": ["title", "body"], "config": "english", "tokenize": None}}
    project.alembic("downgrade", "base")
    assert live(project) == {}
    engine = project.engine()
    try:
        with engine.connect() as conn:
            if dialect == "sqlite":
                left = conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'").scalars().all()
                assert left == ["alembic_version"], left
            else:
                assert sa.inspect(conn).get_table_names() == ["alembic_version"]
    finally:
        engine.dispose()
