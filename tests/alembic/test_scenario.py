"""A help-desk project's migration history through the real ``alembic`` command, on PostgreSQL 18 +
pgvector and on SQLite + sqlite-vec.

The project is made by ``alembic init`` and runs the env.py of docs/alembic.md. Before each step
its models.py is rewritten, as its developer would edit it:

1. create: tickets with an embedded column (title + body), a vector index with a filter
   (metadata) column and a full-text index; knowledge-base articles without vectors;
2. the articles, which have rows by now, get an embedded column, a vector index and a full-text
   index; ``vk.backfill`` embeds them;
3. a new embedding model of another dimension (the vectors are cleared, then backfilled);
4. the vector index's parameters change (distance, m);
5. a filter column (priority) is added, and the index filters on it;
6. an ordinary column change (title 200 -> 300 characters: a batch table copy on SQLite);
7. a column rename (body -> content), written by hand as Alembic asks for renames;
8. the vector index is dropped;
9. downgrade to base.

Every step: ``alembic check`` fails with a readable list (no traceback) while the change is
pending; ``alembic revision --autogenerate`` writes the migration (its text is checked, then it
runs as generated); ``alembic upgrade head``; ``alembic check`` passes. Those are subprocesses of
the ``alembic`` console script. Then, through Alembic's command API in this process (a
subprocess would add nothing): a second autogenerate is empty; rows written now are found by
``vk.nearest``, ``vk.text_search`` and ``vk.hybrid_search``; every vec0 and FTS5 shadow equals
its table row for row; ``downgrade -1`` (shadows checked) and ``upgrade head`` (shadows and
searches checked) work.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

import sqlalchemy_vectorknobs as vk
from sqlalchemy_vectorknobs import dialects
from sqlalchemy_vectorknobs.dialects.sqlite_search import parse_vec0

pytest.importorskip("alembic", reason="needs the alembic extra")

from alembic import command  # noqa: E402
from alembic.config import Config  # noqa: E402

from .test_round_trip import subprocess_env  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ALEMBIC = Path(sys.executable).with_name("alembic")  # the console script, next to this interpreter


def env_py_from_docs() -> str:
    """The env.py docs/alembic.md tells users to write (the first python block of its setup section)."""
    text = (ROOT / "docs" / "alembic.md").read_text(encoding="utf-8")
    section = text[text.index("## Setting up `env.py`") :]
    return section.split("```python\n", 1)[1].split("\n```", 1)[0] + "\n"


# ------------------------------------------------------------------------------------- the models


@dataclass(frozen=True)
class Models:
    """What models.py declares at one point of the history."""

    dim: int = 8
    articles_embedded: bool = False
    distance: str = "cosine"
    m: int = 16
    priority: bool = False
    title_length: int = 200
    text_column: str = "body"
    ticket_index: bool = True

    @property
    def filters(self) -> list[str]:
        return ["category", "priority"] if self.priority else ["category"]

    def source(self) -> str:
        priority = '    priority: Mapped[int] = mapped_column(server_default="0")\n' if self.priority else ""
        index = (
            f'        vk.VectorIndex("ticket_embedding_idx", "embedding", distance="{self.distance}", m={self.m},\n'
            f"                       metadata_columns={self.filters!r}),\n"
            if self.ticket_index
            else ""
        )
        article = (
            '    embedding = vk.embedded_column(vk.Vector(8), source="headline", embedder=vk.HashingEmbedder(8))\n'
            "    __table_args__ = (\n"
            '        vk.VectorIndex("article_embedding_idx", "embedding", distance="cosine"),\n'
            '        vk.FullTextIndex("article_fts", "headline"),\n'
            "    )\n"
            if self.articles_embedded
            else ""
        )
        return f'''"""The help desk's models."""
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import sqlalchemy_vectorknobs as vk


class Base(DeclarativeBase):
    pass


class Ticket(Base):
    __tablename__ = "ticket"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(sa.String({self.title_length}))
    {self.text_column}: Mapped[str] = mapped_column(sa.Text)
    category: Mapped[str] = mapped_column(sa.String(20))
{priority}    embedding = vk.embedded_column(vk.Vector({self.dim}), source=("title", "{self.text_column}"),
                                   embedder=vk.HashingEmbedder({self.dim}))
    __table_args__ = (
{index}        vk.FullTextIndex("ticket_fts", "title", "{self.text_column}"),
    )


class Article(Base):
    __tablename__ = "article"
    id: Mapped[int] = mapped_column(primary_key=True)
    headline: Mapped[str] = mapped_column(sa.String(200))
{article}'''


RENAME_BODY = '''
def upgrade() -> None:
    with op.batch_alter_table("ticket") as batch_op:
        batch_op.alter_column("body", new_column_name="content")


def downgrade() -> None:
    with op.batch_alter_table("ticket") as batch_op:
        batch_op.alter_column("content", new_column_name="body")
'''


@dataclass
class Step:
    """One change of the history: the models after it, what ``alembic check`` reports before it,
    what the generated migration must say, and what runs after the upgrade."""

    name: str
    models: Models
    pending: list[str]  # diff kinds alembic check reports
    upgrade: list[str] = field(default_factory=list)  # in the generated upgrade()
    downgrade: list[str] = field(default_factory=list)  # in the generated downgrade()
    only: dict[str, list[str]] = field(default_factory=dict)  # dialect -> more for upgrade()
    pending_only: dict[str, list[str]] = field(default_factory=dict)  # dialect -> more diff kinds
    downgrade_only: dict[str, list[str]] = field(default_factory=dict)  # dialect -> more for downgrade()
    body: str | None = None  # the migration as the developer rewrites it
    backfill: tuple[str, ...] = ()


def history() -> list[Step]:
    m = Models()
    steps = [
        Step(
            "create tickets",
            m,
            ["add_table", "add_vector_index", "add_fulltext_index"],
            upgrade=[
                "sa.Column('embedding', sqlalchemy_vectorknobs.Vector(8), nullable=True)",
                "sa.Column('embedding_model', sa.String(length=255), nullable=True)",
                "sa.Column('embedding_hash', sa.String(length=64), nullable=True)",
                "op.create_vector_index('ticket_embedding_idx', 'ticket', 'embedding', "
                "column_type=sqlalchemy_vectorknobs.Vector(8), m=16, metadata_columns=['category'])",
                "op.create_fulltext_index('ticket_fts', 'ticket', ['title', 'body'])",
            ],
            downgrade=["op.drop_vector_index('ticket_embedding_idx', 'ticket')", "op.drop_fulltext_index('ticket_fts', 'ticket')"],
            only={"postgresql": ["op.create_vector_extension()"]},
            pending_only={"postgresql": ["add_vector_extension"]},
        ),
    ]
    m = replace(m, articles_embedded=True)
    steps.append(
        Step(
            "embed articles",
            m,
            ["add_column", "add_vector_index", "add_fulltext_index"],
            upgrade=[
                "sa.Column('embedding', sqlalchemy_vectorknobs.Vector(8), nullable=True)",
                "op.create_vector_index('article_embedding_idx', 'article', 'embedding', "
                "column_type=sqlalchemy_vectorknobs.Vector(8))",
                "op.create_fulltext_index('article_fts', 'article', ['headline'])",
            ],
            backfill=("Article",),
        )
    )
    m = replace(m, dim=12)
    steps.append(
        Step(
            "new embedding model",
            m,
            ["modify_vector_type"],
            upgrade=[
                "op.alter_vector_column('ticket', 'embedding', type_=sqlalchemy_vectorknobs.Vector(12), "
                "existing_type=sqlalchemy_vectorknobs.Vector(8), using='NULL')"
            ],
            downgrade=[
                "op.alter_vector_column('ticket', 'embedding', type_=sqlalchemy_vectorknobs.Vector(8), "
                "existing_type=sqlalchemy_vectorknobs.Vector(12), using='NULL')"
            ],
            backfill=("Ticket",),
        )
    )
    m = replace(m, distance="l2", m=24)
    steps.append(
        Step(
            "index parameters",
            m,
            ["remove_vector_index", "add_vector_index"],
            upgrade=["op.drop_vector_index('ticket_embedding_idx', 'ticket')", "distance='l2', m=24"],
            downgrade=["op.drop_vector_index('ticket_embedding_idx', 'ticket')"],
            # The downgrade re-creates the live index from the catalog; the knobs its database does not
            # record come from the model, and the file says so (on SQLite m=24 is the model's m now:
            # SQLite cannot know it was 16, and it changes nothing there).
            downgrade_only={
                "postgresql": [
                    "# metadata_columns: from the model's declaration (not recorded by this database)",
                    "column_type=sqlalchemy_vectorknobs.Vector(12), m=16, ef_construction=128, metadata_columns=['category'])",
                ],
                "sqlite": [
                    "# m: from the model's declaration (not recorded by this database)",
                    "column_type=sqlalchemy_vectorknobs.Vector(12), m=24, metadata_columns=['category'])",
                ],
            },
        )
    )
    m = replace(m, priority=True)
    steps.append(
        Step(
            "filter column",
            m,
            ["add_column"],
            upgrade=["sa.Column('priority', sa.Integer(), server_default='0', nullable=False)"],
            only={"sqlite": ["metadata_columns=['category', 'priority']"]},
        )
    )
    m = replace(m, title_length=300)
    steps.append(Step("longer titles", m, ["modify_type"], upgrade=["type_=sa.String(length=300)"]))
    m = replace(m, text_column="content")
    steps.append(
        Step(
            "rename body",
            m,
            ["add_column", "remove_column", "remove_fulltext_index", "add_fulltext_index"],
            upgrade=["op.create_fulltext_index('ticket_fts', 'ticket', ['title', 'content'])"],
            only={"sqlite": ["batch_op.drop_column('body')"], "postgresql": ["op.drop_column('ticket', 'body')"]},
            body=RENAME_BODY,
        )
    )
    m = replace(m, ticket_index=False)
    steps.append(
        Step(
            "drop the vector index",
            m,
            ["remove_vector_index"],
            upgrade=["op.drop_vector_index('ticket_embedding_idx', 'ticket')"],
            downgrade=[
                "op.create_vector_index('ticket_embedding_idx', 'ticket', 'embedding', "
                "column_type=sqlalchemy_vectorknobs.Vector(12), distance='l2'"
            ],
        )
    )
    return steps


# ------------------------------------------------------------------------------------ the project


class Project:
    """A project made by ``alembic init``: the console script in subprocesses, the command API here."""

    def __init__(self, root: Path, url: str) -> None:
        self.root, self.url = root, url
        import alembic

        version = self.run("--version", ini=False).stdout.split()[-1]
        assert version == alembic.__version__, (version, alembic.__version__)  # the same Alembic as here
        self.run("init", "migrations", ini=False)
        (root / "migrations" / "env.py").write_text(env_py_from_docs())
        ini = (root / "alembic.ini").read_text()
        escaped = url.replace("%", "%%")  # configparser interpolation
        ini = re.sub(r"(?m)^sqlalchemy\.url = .*$", lambda _: f"sqlalchemy.url = {escaped}", ini)
        (root / "alembic.ini").write_text(ini)
        self.config = Config(str(root / "alembic.ini"))
        self.config.set_main_option("script_location", str(root / "migrations"))
        self.generation = 0

    def run(self, *args: str, ini: bool = True, ok: bool = True) -> subprocess.CompletedProcess[str]:
        """The ``alembic`` console script, in the project directory."""
        argv = [str(ALEMBIC), *(["-c", str(self.root / "alembic.ini")] if ini else []), *args]
        proc = subprocess.run(argv, cwd=self.root, capture_output=True, text=True, timeout=300, env=subprocess_env())
        if ok:
            assert proc.returncode == 0, f"alembic {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
        return proc

    def write_models(self, models: Models) -> None:
        (self.root / "models.py").write_text(models.source())
        for cached in self.root.glob("__pycache__/models*"):
            cached.unlink()
        self.generation += 1

    @contextmanager
    def in_process(self) -> Iterator[None]:
        """Alembic's command API here: env.py imports models.py afresh, and leaves no trace."""
        path = list(sys.path)
        sys.modules.pop("models", None)
        try:
            yield
        finally:
            sys.path[:] = path
            sys.modules.pop("models", None)

    def autogenerate(self, message: str) -> Path:
        out = self.run("revision", "--autogenerate", "-m", message)
        found = re.search(r"Generating (\S+\.py)", out.stdout + out.stderr)
        assert found, out.stdout + out.stderr
        return Path(found.group(1))

    def assert_second_autogenerate_empty(self) -> None:
        with self.in_process():
            script = command.revision(self.config, message="nothing to do", autogenerate=True)
        assert script is not None and not isinstance(script, list)
        path = Path(script.path)
        try:
            text = path.read_text()
            assert upgrade_lines(text) == ["pass"], text
            assert downgrade_lines(text) == ["pass"], text
        finally:
            path.unlink()

    def downgrade(self, target: str) -> None:
        with self.in_process():
            command.downgrade(self.config, target)

    def upgrade(self, target: str = "head") -> None:
        with self.in_process():
            command.upgrade(self.config, target)

    def models(self) -> ModuleType:
        """models.py as it is now, imported under a name of its own."""
        name = f"vk_scenario_models_{uuid.uuid4().hex[:8]}"
        spec = importlib.util.spec_from_file_location(name, self.root / "models.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module


def _body(script: str, function: str) -> str:
    after = script.split(f"def {function}()", 1)[1]
    return after.split("\ndef ", 1)[0]


def _statements(body: str) -> list[str]:
    lines = [ln.strip() for ln in body.splitlines()[1:]]
    return [ln for ln in lines if ln and not ln.startswith(("#", '"""'))]


def upgrade_lines(script: str) -> list[str]:
    return _statements(_body(script, "upgrade"))


def downgrade_lines(script: str) -> list[str]:
    return _statements(_body(script, "downgrade"))


# ------------------------------------------------------------------------------------ the checks


def assert_check_reports(project: Project, kinds: list[str]) -> None:
    """``alembic check`` with a change pending: non-zero, one readable line, no traceback."""
    proc = project.run("check", ok=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "Traceback" not in out and "New upgrade operations detected" in out, out
    for kind in kinds:
        assert f"('{kind}'" in out, (kind, out)


def assert_searches_find_new_rows(project: Project, models: Models, tag: str) -> None:
    """Rows written now are found by vk.nearest (through the vector index where there is one),
    vk.text_search and vk.hybrid_search; with a filter on the index's metadata columns too."""
    module = project.models()
    engine = vk.create_engine(project.url)
    try:
        with Session(engine) as session:
            word = f"zq{tag}"
            values: dict[str, Any] = {"title": f"printer {word} jam", models.text_column: f"paper {word} stuck", "category": "hw"}
            if models.priority:
                values["priority"] = 7
            ticket = module.Ticket(**values)
            targets: list[tuple[Any, Any]] = [(module.Ticket, ticket)]
            if models.articles_embedded:
                targets.append((module.Article, module.Article(headline=f"how to clear a {word} paper jam")))
            session.add_all([row for _, row in targets])
            session.commit()
            for model, row in targets:
                session.refresh(row)
                assert row.embedding is not None, f"{model.__name__} row was not embedded"
                # HashingEmbedder vectors of texts that share most words may coincide: the row must
                # be among the nearest, at distance 0
                found = session.execute(vk.nearest(model.embedding, row.embedding, k=5)).all()
                assert row.id in [r.id for r, d in found if d < 1e-6], (tag, model.__name__, "nearest", found)
                found = session.execute(vk.text_search(model, word, k=1)).all()
                assert [r.id for r, _ in found] == [row.id], (tag, model.__name__, "text_search", found)
                found = session.execute(vk.hybrid_search(model, text=word, k=1)).all()
                assert [r.id for r, _ in found] == [row.id], (tag, model.__name__, "hybrid_search", found)
            if models.priority:
                stmt = vk.nearest(module.Ticket.embedding, ticket.embedding, k=5, where=module.Ticket.priority == 7)
                assert ticket.id in [r.id for r, d in session.execute(stmt) if d < 1e-6], (tag, "filtered nearest")
    finally:
        engine.dispose()


def assert_shadows_in_step(url: str) -> None:
    """Every vec0 table holds exactly the rows of its table that have a (searchable) vector, with
    the same vectors and metadata values; every FTS5 index is its table's, row for row (FTS5's
    integrity-check against its content table); each has its triggers on its table."""
    engine = vk.create_engine(url)
    try:
        with engine.connect() as conn:
            if conn.dialect.name != "sqlite":
                return  # PostgreSQL indexes are the table's own; nothing can drift
            q = conn.dialect.identifier_preparer.quote
            triggers = {name: table for name, table in conn.exec_driver_sql("SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger'")}
            for info in vk.inspect_vectors(conn).indexes:
                parsed = parse_vec0(info.definition or "")
                for suffix in ("__ai", "__au", "__an", "__ad"):
                    assert triggers.get(info.name + suffix) == info.table, (info.name, suffix, triggers)
                names = [parsed["primary_key"], parsed["column"], *parsed["metadata"]]
                base = conn.exec_driver_sql(
                    f"SELECT {', '.join(q(n) for n in names)} FROM {q(info.table)} WHERE {q(parsed['column'])} IS NOT NULL"
                ).all()
                cosine = parsed["metric"] == "cosine"
                expected = {
                    row[0]: (bytes(row[1]), tuple(row[2:]))
                    for row in base
                    if not cosine or float(np.dot(v := np.frombuffer(row[1], np.float32), v)) > 0
                }
                shadow = conn.exec_driver_sql(f"SELECT * FROM {q(info.name)}").all()
                got = {row[0]: (bytes(row[1]), tuple(row[2 : 2 + len(parsed["metadata"])])) for row in shadow}
                assert got == expected, (info.name, sorted(got), sorted(expected))
            support = dialects.for_dialect(conn.dialect)
            for table in sa.inspect(conn).get_table_names():
                for name in support.fulltext_indexes(conn, table, None):
                    for suffix in ("__ai", "__au", "__ad"):
                        assert triggers.get(name + suffix) == table, (name, suffix, triggers)
                    try:
                        conn.exec_driver_sql(f"INSERT INTO {q(name)}({q(name)}, rank) VALUES ('integrity-check', 1)")
                    except sa.exc.DBAPIError as err:
                        raise AssertionError(f"FTS5 index {name} is out of step with table {table}: {err}") from err
                    indexed = set(conn.exec_driver_sql(f"SELECT id FROM {q(name + '_docsize')}").scalars())
                    rows = set(conn.exec_driver_sql(f"SELECT rowid FROM {q(table)}").scalars())
                    assert indexed == rows, (name, indexed ^ rows)
            conn.rollback()
    finally:
        engine.dispose()


def backfill(project: Project, model_names: tuple[str, ...]) -> None:
    module = project.models()
    engine = vk.create_engine(project.url)
    try:
        with Session(engine) as session:
            for name in model_names:
                model = getattr(module, name)
                report = vk.backfill(session, model, progress=False)
                assert report.ok, report.failures
                assert session.execute(vk.stale(model)).first() is None, f"{name} rows are still stale"
    finally:
        engine.dispose()


def assert_database_empty(url: str) -> None:
    engine = vk.create_engine(url)
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                left = conn.exec_driver_sql(
                    "SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger', 'index') AND name NOT LIKE 'sqlite_%'"
                ).scalars().all()
                assert left == ["alembic_version"], left
            else:
                assert sa.inspect(conn).get_table_names() == ["alembic_version"]
                assert conn.exec_driver_sql("SELECT count(*) FROM pg_extension WHERE extname = 'vector'").scalar() == 0
    finally:
        engine.dispose()


# ------------------------------------------------------------------------------------ the suite


def run_history(project: Project, dialect: str) -> None:
    last = Models()
    for number, step in enumerate(history(), 1):
        project.write_models(step.models)
        assert_check_reports(project, step.pending + step.pending_only.get(dialect, []))
        path = project.autogenerate(step.name)
        script = path.read_text()
        upgrade, downgrade = _body(script, "upgrade"), _body(script, "downgrade")
        for expected in step.upgrade + step.only.get(dialect, []):
            assert expected in upgrade, (step.name, expected, upgrade)
        for expected in step.downgrade + step.downgrade_only.get(dialect, []):
            assert expected in downgrade, (step.name, expected, downgrade)
        assert "info=" not in script and "<" not in upgrade + downgrade, script  # nothing non-renderable
        assert "schema='" not in script, script  # default schema: no schema argument
        if step.body is not None:
            path.write_text(script.split("\ndef upgrade()", 1)[0] + "\n" + step.body)
        project.run("upgrade", "head")
        if number == 1:  # the articles exist now, and have rows before they get vectors
            engine = vk.create_engine(project.url)
            with engine.begin() as conn:
                conn.execute(sa.text("INSERT INTO article (id, headline) VALUES (1, 'reset a password'), (2, 'paper jams')"))
            engine.dispose()
        if step.backfill:
            backfill(project, step.backfill)
        assert "No new upgrade operations detected" in project.run("check").stdout
        project.assert_second_autogenerate_empty()
        assert_searches_find_new_rows(project, step.models, f"{number}a")
        assert_shadows_in_step(project.url)
        project.downgrade("-1")
        assert_shadows_in_step(project.url)
        project.upgrade("head")
        assert_shadows_in_step(project.url)
        if step.backfill:  # a downgrade of a new embedding model clears the vectors again
            backfill(project, step.backfill)
        assert_searches_find_new_rows(project, step.models, f"{number}b")
        assert_shadows_in_step(project.url)
        last = step.models
    assert last.ticket_index is False
    project.run("downgrade", "base")
    assert_database_empty(project.url)


def test_help_desk_history_on_sqlite(tmp_path: Path) -> None:
    run_history(Project(tmp_path, f"sqlite:///{tmp_path}/helpdesk.db"), "sqlite")


def test_help_desk_history_on_postgresql(tmp_path: Path, fresh_pg_url: sa.URL) -> None:
    run_history(Project(tmp_path, fresh_pg_url.render_as_string(hide_password=False)), "postgresql")


def test_env_py_in_the_docs_is_the_example_projects() -> None:
    """The env.py the docs show, which these tests run, is examples/alembic's."""
    assert env_py_from_docs() == (ROOT / "examples" / "alembic" / "migrations" / "env.py").read_text()
