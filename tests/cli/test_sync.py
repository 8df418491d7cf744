"""``vectorknobs sync check|fix`` through the console script: with --model and by reflection, on
SQLite and PostgreSQL. ``check`` exits 3 exactly when stale rows exist; ``fix`` makes it 0."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import sqlalchemy as sa

import sqlalchemy_vectorknobs as vk

from ._cli import one_line_error, vectorknobs, write_module

MODELS = textwrap.dedent(
    """
    from typing import Optional
    import sqlalchemy as sa
    from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
    import sqlalchemy_vectorknobs as vk

    class Base(DeclarativeBase):
        pass

    class Doc(Base):
        __tablename__ = "sync_docs"
        id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[Optional[str]] = mapped_column(sa.Text)
        body: Mapped[Optional[str]] = mapped_column(sa.Text)
        embedding = vk.embedded_column(vk.Vector(24), source=("title", "body"), embedder=vk.HashingEmbedder(24), mode="deferred")
    """
)
REFLECT = ["--table", "docs", "--text-fields", "title,body", "--vector-field", "embedding", "--embedder", "hashing:24"]


def _expected(url: str, table: str) -> None:
    """Every row's vector is HashingEmbedder(24) of its text (an independent recomputation)."""
    engine = vk.create_engine(url)
    t = sa.Table(table, sa.MetaData(), autoload_with=engine)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t.c.title, t.c.body, t.c.embedding)).all()
    engine.dispose()
    texts = ["\n".join(v for v in (r.title, r.body) if v is not None) for r in rows]
    want = vk.HashingEmbedder(24).embed(texts)
    assert np.allclose(np.stack([r.embedding for r in rows]), want, atol=1e-6)


def _counts(proc_stdout: str, label: str) -> dict[str, int]:
    doc = json.loads(proc_stdout)
    (entry,) = doc[label]
    return {k: entry[k] for k in ("rows", "stale", "missing", "other_model", "changed_text")}


def test_model_check_then_fix(tmp_path: Path, db_url: str) -> None:
    write_module(tmp_path, "sync_models", MODELS)
    engine = vk.create_engine(db_url)
    table = sa.Table(
        "sync_docs", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True), sa.Column("title", sa.Text),
        sa.Column("body", sa.Text), sa.Column("embedding", vk.Vector(24)), sa.Column("embedding_model", sa.String(255)),
        sa.Column("embedding_hash", sa.String(64)),
    )
    with engine.begin() as conn:
        table.create(conn)  # the schema the model declares, made without importing it
        conn.execute(sa.text("INSERT INTO sync_docs (id, title, body) VALUES (:i, :t, :b)"),
                     [{"i": i, "t": f"title {i}", "b": None if i % 4 else f"body {i}"} for i in range(40)])
    engine.dispose()
    model = ["-d", db_url, "--model", "sync_models:Doc"]
    check = vectorknobs(tmp_path, "sync", "check", *model, "--json")
    assert check.returncode == 3, check.stdout + check.stderr
    assert _counts(check.stdout, "stale") == {"rows": 40, "stale": 40, "missing": 40, "other_model": 0, "changed_text": 0}
    fix = vectorknobs(tmp_path, "sync", "fix", *model, "--batch-size", "16", "--no-progress")
    assert fix.returncode == 0, fix.stdout + fix.stderr
    assert "embedded 40 row(s) in 3 batch(es)" in fix.stdout
    assert "after: sync_docs.embedding: 0 stale of 40 row(s)" in fix.stdout
    _expected(db_url, "sync_docs")
    engine = vk.create_engine(db_url)
    with engine.begin() as conn:  # raw SQL behind the ORM's back: the text of 3 rows changes
        conn.exec_driver_sql("UPDATE sync_docs SET body = 'rewritten' WHERE id IN (1, 2, 3)")
    engine.dispose()
    check = vectorknobs(tmp_path, "sync", "check", *model, "--json")
    assert check.returncode == 3 and _counts(check.stdout, "stale")["changed_text"] == 3
    fixed = vectorknobs(tmp_path, "sync", "check", *model, "--auto-fix", "--json", "--no-progress")
    assert fixed.returncode == 0 and _counts(fixed.stdout, "after")["stale"] == 0, fixed.stdout + fixed.stderr
    assert vectorknobs(tmp_path, "sync", "check", *model).returncode == 0
    _expected(db_url, "sync_docs")


def test_reflection_check_auto_fix(tmp_path: Path, db_url: str) -> None:
    engine = vk.create_engine(db_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE docs (id INTEGER PRIMARY KEY, title TEXT, body TEXT)")
        conn.execute(sa.text("INSERT INTO docs VALUES (:i, :t, :b)"), [{"i": i, "t": f"doc {i}", "b": "text"} for i in range(30)])
    engine.dispose()
    args = ["-d", db_url, *REFLECT]
    check = vectorknobs(tmp_path, "sync", "check", *args, "--add-columns", "--json")  # adds vector + companions
    assert check.returncode == 3 and _counts(check.stdout, "stale")["missing"] == 30, check.stdout + check.stderr
    fixed = vectorknobs(tmp_path, "sync", "check", *args, "--auto-fix", "--no-progress")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "before: docs.embedding: 30 stale" in fixed.stdout and "after: docs.embedding: 0 stale" in fixed.stdout
    assert vectorknobs(tmp_path, "sync", "check", *args).returncode == 0
    _expected(db_url, "docs")


def test_reflection_other_model_is_stale(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/m.db"
    engine = vk.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE docs (id INTEGER PRIMARY KEY, title TEXT, body TEXT)")
        conn.execute(sa.text("INSERT INTO docs VALUES (:i, :t, NULL)"), [{"i": i, "t": f"doc {i}"} for i in range(20)])
    engine.dispose()
    args = ["-d", url, *REFLECT]
    assert vectorknobs(tmp_path, "sync", "fix", *args, "--add-columns", "--no-progress").returncode == 0
    # Another model's view: a different seed is a different fingerprint, so every row is stale for it.
    other = [a if a != "hashing:24" else "sync_embedder:OTHER" for a in args]
    write_module(tmp_path, "sync_embedder", "import sqlalchemy_vectorknobs as vk\nOTHER = vk.HashingEmbedder(24, seed=7)\n")
    check = vectorknobs(tmp_path, "sync", "check", *other, "--auto-fix", "--json", "--no-progress")
    assert check.returncode == 0, check.stdout + check.stderr
    assert _counts(check.stdout, "before")["other_model"] == 20 and _counts(check.stdout, "after")["stale"] == 0
    assert vectorknobs(tmp_path, "sync", "check", *args).returncode == 3  # and now the first model's view is stale


def test_reflection_errors_are_one_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/e.db"
    engine = vk.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE docs (id INTEGER PRIMARY KEY, title TEXT, body TEXT, embedding VECTOR(24))")
    engine.dispose()
    base = ["sync", "check", "-d", url]
    one_line_error(vectorknobs(tmp_path, *base, *[a.replace("embedding", "vec") for a in REFLECT]), "has no column 'vec'")
    one_line_error(vectorknobs(tmp_path, *base, *REFLECT), "lacks the companion column(s) 'embedding_model', 'embedding_hash'")
    one_line_error(vectorknobs(tmp_path, *base, *[a.replace("docs", "ghost") for a in REFLECT]), "Table 'ghost' does not exist")
    one_line_error(vectorknobs(tmp_path, *base, *[a.replace("body", "bogus") for a in REFLECT]), "has no column 'bogus'")
    one_line_error(vectorknobs(tmp_path, *base, *[a.replace("hashing:24", "hashing:8") for a in REFLECT]), "produces 8 dimensions")
    one_line_error(vectorknobs(tmp_path, *base, *[a.replace("hashing:24", "nosuch") for a in REFLECT]), "Embedder 'nosuch' is not known")
    one_line_error(vectorknobs(tmp_path, *base, "--table", "docs"), "also needs --text-fields, --vector-field, --embedder")
    one_line_error(vectorknobs(tmp_path, *base), "name the rows to work on")
