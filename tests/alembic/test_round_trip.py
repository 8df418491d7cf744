"""Real ``alembic`` commands against PostgreSQL and SQLite: autogenerate, upgrade, downgrade, --sql.

Each test builds a throw-away Alembic project (``alembic init``, an env.py with the one-line
``alembic_ext.autogenerate_options()`` setup, a models.py rewritten between steps) and checks
the generated files, the live catalog, and that a second autogenerate is empty.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import sqlalchemy_vectorknobs as vk

#: the env.py users copy from the example project: the tests run exactly that one
ENV_PY = Path(__file__).resolve().parents[2] / "examples" / "alembic" / "migrations" / "env.py"

MODELS_HEAD = '''
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
import sqlalchemy_vectorknobs as vk


class Base(DeclarativeBase):
    pass


class Doc(Base):
    __tablename__ = "doc"
    id: Mapped[int] = mapped_column(primary_key=True)
    cat: Mapped[str] = mapped_column(sa.String(10))
    embedding = mapped_column(vk.Vector({dim}))
    half = mapped_column(vk.HalfVector(16))
'''

PG_MODELS = MODELS_HEAD + '''    __table_args__ = (
        vk.VectorIndex("doc_hnsw", "embedding", distance="{distance}", m={m}),
        vk.VectorIndex("doc_ivf", "embedding", distance="l2", method="ivfflat", lists=10),
        vk.VectorIndex("doc_halfprec", "embedding", distance="ip", precision="halfvec"),
        vk.VectorIndex("doc_partial", "half", distance="l2", where=sa.text("cat = 'a'")),
    )
'''

SQLITE_MODELS = MODELS_HEAD + '''    __table_args__ = (
        vk.VectorIndex("doc_hnsw", "embedding", distance="{distance}", m={m}, metadata_columns=["cat"]),
        vk.VectorIndex("doc_halfprec", "half", distance="l2"),
    )
'''


def subprocess_env() -> dict[str, str]:
    """This process's environment with PYTHONPATH made absolute, so that ``alembic`` run in the
    project directory imports the SQLAlchemy and Alembic the tests run with (``make test-oldest``)."""
    paths = [str(Path(p).resolve()) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)} if paths else dict(os.environ)


class Project:
    """A throw-away Alembic project on one database."""

    def __init__(self, root: Path, url: str, models: str) -> None:
        self.root, self.url, self.models = root, url, models
        self.alembic("init", "migrations")
        (root / "migrations" / "env.py").write_text(ENV_PY.read_text())
        ini = (root / "alembic.ini").read_text()
        escaped = url.replace("%", "%%")  # configparser interpolation
        (root / "alembic.ini").write_text(re.sub(r"(?m)^sqlalchemy\.url = .*$", lambda _: f"sqlalchemy.url = {escaped}", ini))

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        ini = ["-c", str(self.root / "alembic.ini")] if (self.root / "alembic.ini").exists() else []
        return subprocess.run(
            [sys.executable, "-m", "alembic", *ini, *args], cwd=self.root, capture_output=True, text=True, timeout=300,
            env=subprocess_env(),
        )

    def alembic(self, *args: str) -> str:
        proc = self.run(*args)
        assert proc.returncode == 0, f"alembic {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout + proc.stderr

    def write_models(self, **values: Any) -> None:
        (self.root / "models.py").write_text(self.models.format(**values))
        for cached in self.root.glob("__pycache__/models*"):
            cached.unlink()

    def autogenerate(self, message: str) -> str:
        out = self.alembic("revision", "--autogenerate", "-m", message)
        path = re.search(r"Generating (\S+\.py)", out)
        assert path, out
        self.last = Path(path.group(1))
        return self.last.read_text()

    def assert_nothing_to_do(self) -> None:
        """A second autogenerate right now must produce an empty migration (which is then removed)."""
        assert_empty(self.autogenerate("nothing to do"))
        self.last.unlink()

    def engine(self) -> sa.Engine:
        return vk.create_engine(self.url)

    def indexes(self) -> dict[str, vk.VectorIndexInfo]:
        engine = self.engine()
        try:
            return {i.name: i for i in vk.inspect_vectors(engine).indexes}
        finally:
            engine.dispose()


def upgrade_body(script: str) -> str:
    return script.split("def upgrade()", 1)[1].split("def downgrade()", 1)[0]


def assert_empty(script: str) -> None:
    body = upgrade_body(script)
    statements = [
        ln.strip() for ln in body.splitlines()[1:] if ln.strip() and not ln.strip().startswith(("#", '"""'))
    ]
    assert statements == ["pass"], body


def test_postgresql_round_trip(tmp_path: Path, fresh_pg_url: sa.URL) -> None:
    project = Project(tmp_path, fresh_pg_url.render_as_string(hide_password=False), PG_MODELS)
    project.write_models(dim=16, distance="cosine", m=8)

    first = project.autogenerate("create docs")
    for expected in (
        "import alembic_ext",
        "import sqlalchemy_vectorknobs",
        "op.create_vector_extension()",
        "sqlalchemy_vectorknobs.Vector(16)",
        "sqlalchemy_vectorknobs.HalfVector(16)",
        "op.create_vector_index('doc_hnsw', 'doc', 'embedding', column_type=sqlalchemy_vectorknobs.Vector(16), m=8)",
        "method='ivfflat', lists=10",
        "precision='halfvec'",
        "where=\"cat = 'a'\"",
    ):
        assert expected in first, (expected, first)
    assert "op.create_index" not in first  # Alembic's own (opclass-less) index ops never appear

    project.alembic("upgrade", "head")
    live = project.indexes()
    assert (live["doc_hnsw"].method, live["doc_hnsw"].opclass, live["doc_hnsw"].options) == ("hnsw", "vector_cosine_ops", {"m": "8", "ef_construction": "128"})
    assert (live["doc_ivf"].method, live["doc_ivf"].opclass, live["doc_ivf"].options) == ("ivfflat", "vector_l2_ops", {"lists": "10"})
    assert live["doc_halfprec"].opclass == "halfvec_ip_ops" and "halfvec(16)" in live["doc_halfprec"].expression
    assert live["doc_partial"].opclass == "halfvec_l2_ops" and "cat" in (live["doc_partial"].where or "")

    project.assert_nothing_to_do()

    # change m, a distance and the dimension
    project.write_models(dim=24, distance="l2", m=12)
    change = upgrade_body(project.autogenerate("change"))
    assert "op.alter_vector_column('doc', 'embedding', type_=sqlalchemy_vectorknobs.Vector(24)" in change, change
    assert "op.drop_vector_index('doc_hnsw', 'doc')" in change and "m=12" in change and "distance='l2'" in change, change
    project.alembic("upgrade", "head")
    live = project.indexes()
    assert (live["doc_hnsw"].opclass, live["doc_hnsw"].options) == ("vector_l2_ops", {"m": "12", "ef_construction": "128"})
    assert "halfvec(24)" in live["doc_halfprec"].expression
    engine = project.engine()
    try:
        (col,) = [c for c in vk.inspect_vectors(engine).columns if c.column == "embedding"]
        assert col.dim == 24
    finally:
        engine.dispose()
    project.assert_nothing_to_do()

    project.alembic("downgrade", "-1")
    live = project.indexes()
    assert (live["doc_hnsw"].opclass, live["doc_hnsw"].options) == ("vector_cosine_ops", {"m": "8", "ef_construction": "128"})
    project.alembic("downgrade", "base")
    engine = project.engine()
    try:
        with engine.connect() as conn:
            assert sa.inspect(conn).get_table_names() == ["alembic_version"]
            assert conn.exec_driver_sql("SELECT count(*) FROM pg_extension WHERE extname = 'vector'").scalar() == 0
    finally:
        engine.dispose()


def test_postgresql_offline_sql_applies_with_psql(tmp_path: Path, fresh_pg_url: sa.URL, pg_url: sa.URL) -> None:
    project = Project(tmp_path, fresh_pg_url.render_as_string(hide_password=False), PG_MODELS)
    project.write_models(dim=16, distance="cosine", m=8)
    project.autogenerate("create docs")
    sql = project.alembic("upgrade", "head", "--sql")
    assert "CREATE INDEX doc_hnsw ON doc USING hnsw (embedding vector_cosine_ops) WITH (m = 8, ef_construction = 128)" in sql
    name = f"vk_offline_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(pg_url.set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        script = tmp_path / "upgrade.sql"
        script.write_text(sql.split("INFO", 1)[0] if sql.lstrip().startswith("INFO") else sql)
        host = pg_url.query["host"]
        psql = Path(__import__("pgserver").__file__).parent / "pginstall" / "bin" / "psql"
        proc = subprocess.run(
            [str(psql), "-v", "ON_ERROR_STOP=1", "-h", host, "-U", "postgres", "-d", name, "-f", str(script)],
            capture_output=True, text=True,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        engine = vk.create_engine(pg_url.set(drivername="postgresql+psycopg", database=name))
        try:
            names = {i.name: i.opclass for i in vk.inspect_vectors(engine).indexes}
        finally:
            engine.dispose()
        assert names == {"doc_hnsw": "vector_cosine_ops", "doc_ivf": "vector_l2_ops", "doc_halfprec": "halfvec_ip_ops",
                         "doc_partial": "halfvec_l2_ops"}
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE {name} WITH (FORCE)")
        admin.dispose()


def test_sqlite_round_trip(tmp_path: Path) -> None:
    project = Project(tmp_path, f"sqlite:///{tmp_path}/app.db", SQLITE_MODELS)
    project.write_models(dim=16, distance="cosine", m=8)
    first = project.autogenerate("create docs")
    assert "sqlalchemy_vectorknobs.Vector(16)" in first and "import sqlalchemy_vectorknobs" in first, first
    assert "op.create_vector_index('doc_hnsw', 'doc', 'embedding'" in first and "metadata_columns=['cat']" in first, first
    assert "create_vector_extension" not in first and "op.create_index" not in first
    project.alembic("upgrade", "head")
    live = project.indexes()
    assert live["doc_hnsw"].options == {"distance_metric": "cosine"} and live["doc_halfprec"].options == {"distance_metric": "l2"}
    engine = project.engine()
    try:
        with engine.begin() as conn:  # the vec0 index follows rows written after the migration
            conn.execute(sa.text("INSERT INTO doc (id, cat, embedding, half) VALUES (1, 'a', :e, :h)"),
                         {"e": vk.Vector(16).bind_processor(conn.dialect)([1.0] * 16), "h": None})
            assert conn.exec_driver_sql("SELECT count(*) FROM doc_hnsw").scalar() == 1
            assert sa.inspect(conn).get_table_names() == ["alembic_version", "doc"]
    finally:
        engine.dispose()
    project.assert_nothing_to_do()

    engine = project.engine()
    with engine.begin() as conn:  # 16-d vectors cannot become 24-d ones: a real app would re-embed
        conn.exec_driver_sql("DELETE FROM doc")
    engine.dispose()
    project.write_models(dim=24, distance="l2", m=8)
    change = upgrade_body(project.autogenerate("change"))
    assert "op.alter_vector_column('doc', 'embedding', type_=sqlalchemy_vectorknobs.Vector(24)" in change, change
    assert "op.drop_vector_index('doc_hnsw', 'doc')" in change and "distance='l2'" in change, change
    project.alembic("upgrade", "head")
    live = project.indexes()
    assert live["doc_hnsw"].options == {"distance_metric": "l2"} and "float[24]" in (live["doc_hnsw"].definition or "")
    project.assert_nothing_to_do()
    project.alembic("downgrade", "base")
    engine = project.engine()
    try:
        with engine.connect() as conn:
            names = conn.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger') AND name NOT LIKE 'sqlite_%'"
            ).scalars().all()
    finally:
        engine.dispose()
    assert names == ["alembic_version"], names


HAND_WRITTEN = '''
"""hand written"""
from alembic import op
import sqlalchemy as sa
import alembic_ext  # noqa: F401
import sqlalchemy_vectorknobs as vk

revision = "handwritten1"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_vector_extension()
    op.create_table("item", sa.Column("id", sa.Integer, primary_key=True), sa.Column("v", vk.Vector(8)))
    op.execute("INSERT INTO item (id) VALUES (1)")
    op.create_vector_index("item_v_idx", "item", "v", distance="l2")
    op.reindex_vector_index("item_v_idx", concurrently=False)
    op.alter_vector_column("item", "v", dim=12, existing_type=vk.Vector(8))


def downgrade():
    op.alter_vector_column("item", "v", dim=8, existing_type=vk.Vector(12))
    op.drop_vector_index("item_v_idx", "item")
    op.drop_table("item")
'''


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_hand_written_migration(tmp_path: Path, dialect: str, request: pytest.FixtureRequest) -> None:
    url = f"sqlite:///{tmp_path}/hand.db" if dialect == "sqlite" else request.getfixturevalue("fresh_pg_url").render_as_string(hide_password=False)
    project = Project(tmp_path, url, SQLITE_MODELS)
    project.write_models(dim=16, distance="cosine", m=8)
    (tmp_path / "migrations" / "versions" / "handwritten1_.py").write_text(textwrap.dedent(HAND_WRITTEN))
    project.alembic("upgrade", "head")
    engine = project.engine()
    try:
        report = vk.inspect_vectors(engine)
        assert [(c.column, c.dim) for c in report.columns if c.table == "item"] == [("v", 12)]
        assert [i.name for i in report.indexes] == ["item_v_idx"]
    finally:
        engine.dispose()
    project.alembic("downgrade", "base")
    engine = project.engine()
    try:
        assert vk.inspect_vectors(engine).indexes == []
    finally:
        engine.dispose()
