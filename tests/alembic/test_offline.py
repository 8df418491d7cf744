"""Offline ``--sql`` on PostgreSQL for every ``alembic_ext`` operation and every index option.

One hand-written migration uses them all. ``alembic upgrade head --sql`` and ``alembic downgrade
head:base --sql`` (the real console command) write SQL that ``psql`` applies to an empty database;
the indexes it builds are the ones the same migration builds online."""

from __future__ import annotations

import subprocess
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import sqlalchemy_vectorknobs as vk

pytest.importorskip("alembic", reason="needs the alembic extra")

from .test_round_trip import HAND_WRITTEN, SQLITE_MODELS, Project  # noqa: E402

EVERYTHING = '''
"""every operation and option"""
from alembic import op
import sqlalchemy as sa
import alembic_ext  # noqa: F401
import sqlalchemy_vectorknobs as vk

revision = "everything"
down_revision = None
branch_labels = None
depends_on = None

V = vk.Vector(24)
INDEXES = ["doc_hnsw", "doc_ivf", "doc_ivf_default", "doc_auto", "doc_halfprec", "doc_binary", "doc_partial",
           "doc_bits", "doc_sparse"]


def upgrade():
    op.create_vector_extension()
    op.create_table(
        "doc",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("cat", sa.String(10), nullable=False),
        sa.Column("title", sa.Text),
        sa.Column("body", sa.Text),
        sa.Column("embedding", vk.Vector(16)),
        sa.Column("half", vk.HalfVector(16)),
        sa.Column("bits", vk.BitVector(16)),
        sa.Column("sparse", vk.SparseVector(30)),
    )
    op.alter_vector_column("doc", "embedding", dim=24, existing_type=vk.Vector(16))
    op.alter_vector_column("doc", "half", type_=vk.HalfVector(24), existing_type=vk.HalfVector(16), using="NULL")
    op.create_vector_index("doc_hnsw", "doc", "embedding", column_type=V, distance="cosine", m=8, ef_construction=40,
                           metadata_columns=["cat"])
    op.create_vector_index("doc_ivf", "doc", "embedding", column_type=V, distance="l2", method="ivfflat", lists=10)
    op.create_vector_index("doc_ivf_default", "doc", "embedding", column_type=V, distance="ip", method="ivfflat")
    op.create_vector_index("doc_auto", "doc", "embedding", column_type=V, distance="l1", method="auto")
    op.create_vector_index("doc_halfprec", "doc", "embedding", column_type=V, distance="ip", precision="halfvec")
    op.create_vector_index("doc_binary", "doc", "embedding", column_type=V, distance="l2", precision="binary")
    op.create_vector_index("doc_partial", "doc", "half", column_type=vk.HalfVector(24), distance="l2", where="cat = 'a'")
    op.create_vector_index("doc_bits", "doc", "bits", column_type=vk.BitVector(16), distance="hamming", concurrently=True)
    op.create_vector_index("doc_sparse", "doc", "sparse", column_type=vk.SparseVector(30), distance="l2")
    op.reindex_vector_index("doc_hnsw", concurrently=False)
    op.reindex_vector_index("doc_bits")
    op.create_fulltext_index("doc_fts", "doc", ["title", "body"], config="simple")
    op.create_fulltext_index("doc_gone_fts", "doc", ["title"])
    op.drop_fulltext_index("doc_gone_fts", "doc")
    op.create_vector_index("doc_gone", "doc", "embedding", column_type=V)
    op.drop_vector_index("doc_gone", "doc")


def downgrade():
    op.drop_fulltext_index("doc_fts", "doc")
    for name in INDEXES:
        op.drop_vector_index(name, "doc")
    op.alter_vector_column("doc", "half", type_=vk.HalfVector(16), existing_type=vk.HalfVector(24), using="NULL")
    op.alter_vector_column("doc", "embedding", dim=16, existing_type=vk.Vector(24), using="NULL")
    op.drop_table("doc")
    op.drop_vector_extension()
'''


@pytest.fixture
def databases(pg_url: sa.URL) -> Iterator[tuple[sa.URL, sa.URL]]:
    names = [f"vk_offline_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    admin = sa.create_engine(pg_url.set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for name in names:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield tuple(pg_url.set(drivername="postgresql+psycopg", database=n) for n in names)  # type: ignore[misc]
    finally:
        with admin.connect() as conn:
            for name in names:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


def psql(url: sa.URL, sql: str, path: Path) -> None:
    path.write_text(sql)
    binary = Path(__import__("pgserver").__file__).parent / "pginstall" / "bin" / "psql"
    proc = subprocess.run(
        [str(binary), "-v", "ON_ERROR_STOP=1", "-h", str(url.query["host"]), "-U", "postgres", "-d", str(url.database), "-f", str(path)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def indexes(url: sa.URL) -> dict[str, str | None]:
    engine = vk.create_engine(url)
    try:
        return {i.name: i.definition for i in vk.inspect_vectors(engine).indexes}
    finally:
        engine.dispose()


def test_every_op_and_option_offline(tmp_path: Path, databases: tuple[sa.URL, sa.URL]) -> None:
    online, offline = databases
    project = Project(tmp_path, offline.render_as_string(hide_password=False), SQLITE_MODELS)
    project.write_models(dim=16, distance="cosine", m=8)  # env.py imports them; the migration is hand-written
    (tmp_path / "migrations" / "versions" / "everything_.py").write_text(textwrap.dedent(EVERYTHING))
    upgrade_sql = project.alembic("upgrade", "head", "--sql")
    for expected in (
        "CREATE EXTENSION IF NOT EXISTS vector",
        "ALTER TABLE doc ALTER COLUMN embedding TYPE vector(24) USING embedding::vector(24)",
        "CREATE INDEX doc_hnsw ON doc USING hnsw (embedding vector_cosine_ops) WITH (m = 8, ef_construction = 40)",
        "CREATE INDEX CONCURRENTLY doc_bits ON doc USING hnsw (bits bit_hamming_ops)",
        "REINDEX INDEX CONCURRENTLY doc_bits",
        "(binary_quantize(embedding)::bit(24)) bit_hamming_ops",
        "WHERE cat = 'a'",
    ):
        assert expected in upgrade_sql, (expected, upgrade_sql)
    psql(offline, upgrade_sql, tmp_path / "upgrade.sql")
    with_sql = indexes(offline)
    # the same migration online, into the other database
    project.alembic("-x", f"url={online.render_as_string(hide_password=False)}", "upgrade", "head")
    live = indexes(online)
    assert sorted(with_sql) == sorted(live) == sorted(
        ["doc_hnsw", "doc_ivf", "doc_ivf_default", "doc_auto", "doc_halfprec", "doc_binary", "doc_partial", "doc_bits", "doc_sparse"]
    )
    for name, definition in live.items():
        if name == "doc_ivf_default":  # online, lists comes from the row count (100 for none); offline, pgvector's default (100)
            assert definition == "CREATE INDEX doc_ivf_default ON public.doc USING ivfflat (embedding vector_ip_ops) WITH (lists='100')"
            assert with_sql[name] == "CREATE INDEX doc_ivf_default ON public.doc USING ivfflat (embedding vector_ip_ops)"
        else:
            assert with_sql[name] == definition, name
    downgrade_sql = project.alembic("downgrade", "head:base", "--sql")
    psql(offline, downgrade_sql, tmp_path / "downgrade.sql")
    engine = vk.create_engine(offline)
    try:
        with engine.connect() as conn:
            left = sa.inspect(conn).get_table_names()  # Alembic 1.13 drops alembic_version at base, later ones empty it
            assert left in ([], ["alembic_version"]), left
            assert not left or conn.exec_driver_sql("SELECT count(*) FROM alembic_version").scalar() == 0
            assert conn.exec_driver_sql("SELECT count(*) FROM pg_extension WHERE extname = 'vector'").scalar() == 0
    finally:
        engine.dispose()


def test_sqlite_offline_vector_index_is_refused_with_a_reason(tmp_path: Path) -> None:
    project = Project(tmp_path, f"sqlite:///{tmp_path}/app.db", SQLITE_MODELS)
    project.write_models(dim=16, distance="cosine", m=8)
    (tmp_path / "migrations" / "versions" / "handwritten1_.py").write_text(textwrap.dedent(HAND_WRITTEN))
    proc = project.run("upgrade", "head", "--sql")
    assert proc.returncode != 0
    assert "Offline --sql migrations cannot create vector indexes on this database" in proc.stderr, proc.stderr
