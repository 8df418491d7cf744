"""``vectorknobs inspect``, ``mirror rebuild|verify|drain``, ``backfill --table`` and ``--help`` through
the console script, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

import sqlalchemy_vectorknobs as vk
from sqlalchemy_vectorknobs.cli import COMMANDS

from ._cli import VECTORKNOBS, one_line_error, vectorknobs, write_module

OPTIONAL = ("psycopg", "psycopg2", "asyncpg", "faiss", "chromadb", "elasticsearch", "sentence_transformers", "torch",
            "sqlite_vec", "pysqlite3", "sqlean", "alembic", "tqdm")

MODELS = textwrap.dedent(
    """
    import sqlalchemy as sa
    from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
    import sqlalchemy_vectorknobs as vk

    class Base(DeclarativeBase):
        pass

    class Item(Base):
        __tablename__ = "cmd_items"
        id: Mapped[int] = mapped_column(primary_key=True)
        category: Mapped[str] = mapped_column(sa.String(20))
        embedding = mapped_column(vk.Vector(8), nullable=True)
        __table_args__ = (vk.VectorIndex("cmd_items_hnsw", embedding, method="hnsw", distance="cosine", m=8, ef_construction=32),)
    """
)


def _items(tmp_path: Path, url: str, n: int = 60) -> object:
    write_module(tmp_path, "cmd_models", MODELS)
    sys.path.insert(0, str(tmp_path))
    try:
        import importlib

        models = importlib.reload(importlib.import_module("cmd_models"))
    finally:
        sys.path.remove(str(tmp_path))
    engine = vk.create_engine(url)
    models.Base.metadata.create_all(engine)
    rng = np.random.default_rng(3)
    with Session(engine) as s:
        s.add_all([models.Item(id=i, category="ab"[i % 2], embedding=rng.standard_normal(8).astype(np.float32)) for i in range(n)])
        s.commit()
    engine.dispose()
    return models


def test_inspect_reports_columns_indexes_and_outbox(tmp_path: Path, db_url: str) -> None:
    _items(tmp_path, db_url)
    engine = vk.create_engine(db_url)
    vk.create_outbox(engine)
    with engine.begin() as conn:
        conn.execute(vk.outbox_table.insert(), [{"mirror": "faiss:cmd_items.embedding", "table_name": "cmd_items", "pk": str(i), "op": "upsert", "dead": int(i == 0)} for i in range(3)])
    engine.dispose()
    proc = vectorknobs(tmp_path, "inspect", "-d", db_url, "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    inv = doc["inventory"]
    assert inv["extension_version"]
    assert {(c["table"], c["column"], c["type"], c["dim"]) for c in inv["columns"]} == {("cmd_items", "embedding", "Vector", 8)}
    (index,) = inv["indexes"]
    assert index["table"] == "cmd_items" and index["method"] in ("hnsw", "vec0")
    if index["method"] == "hnsw":
        assert index["options"] == {"m": "8", "ef_construction": "32"} and index["opclass"] == "vector_cosine_ops"
    else:
        assert index["options"]["distance_metric"] == "cosine"
    assert doc["outbox"] == [{"mirror": "faiss:cmd_items.embedding", "pending": 2, "dead": 1, "oldest_pending_at": doc["outbox"][0]["oldest_pending_at"]}]
    text = vectorknobs(tmp_path, "inspect", "-d", db_url)
    assert text.returncode == 0 and "cmd_items.embedding  Vector(8)" in text.stdout
    assert "mirror faiss:cmd_items.embedding: 2 pending, 1 dead" in text.stdout


def test_mirror_verify_rebuild_drain(tmp_path: Path, db_url: str) -> None:
    _items(tmp_path, db_url)
    index = tmp_path / "items.vkfaiss"
    config = tmp_path / "mirrors.toml"
    config.write_text(f'[[mirrors]]\nbackend = "faiss"\ncolumn = "cmd_models:Item.embedding"\npath = "{index}"\nname = "items"\n')
    base = ["-d", db_url, "--config", str(config), "--no-progress"]
    drift = vectorknobs(tmp_path, "mirror", "verify", *base)
    assert drift.returncode == 3 and "60 missing" in drift.stdout, drift.stdout + drift.stderr
    rebuilt = vectorknobs(tmp_path, "mirror", "rebuild", *base)
    assert rebuilt.returncode == 0 and "rebuilt mirror 'items': 60 vector(s)" in rebuilt.stdout, rebuilt.stderr
    assert vectorknobs(tmp_path, "mirror", "verify", *base).returncode == 0
    # The file is the real thing: what it holds equals the table (numpy comparison).
    engine = vk.create_engine(db_url)
    table = sa.Table("cmd_items", sa.MetaData(), autoload_with=engine)
    with engine.connect() as conn:
        want = {r.id: r.embedding for r in conn.execute(sa.select(table.c.id, table.c.embedding))}
        conn.execute(table.delete().where(table.c.id < 5))  # raw SQL: the mirror drifts
        conn.commit()
    mirror = vk.FaissMirror(table.c.embedding, path=index)
    got = mirror.get(list(want))
    mirror.close()
    assert all(np.allclose(got[k], v, atol=1e-6) for k, v in want.items())
    # Reflection names the column: --mirror URL with --table/--vector-field.
    by_url = ["-d", db_url, "--mirror", f"faiss:///{index}?name=items", "--table", "cmd_items", "--vector-field", "embedding", "--no-progress"]
    drift = vectorknobs(tmp_path, "mirror", "verify", *by_url)
    assert drift.returncode == 3 and "5 extra" in drift.stdout
    repaired = vectorknobs(tmp_path, "mirror", "verify", *by_url, "--repair")
    assert repaired.returncode == 0 and "after repair: mirror 'items' in step" in repaired.stdout, repaired.stdout
    one_line_error(vectorknobs(tmp_path, "mirror", "drain", *base), "no vk_outbox table")
    vk.create_outbox(engine)
    with engine.begin() as conn:  # a pending change: row 7's vector changed and queued
        conn.execute(table.update().where(table.c.id == 7).values(embedding=np.ones(8, np.float32)))
        conn.execute(vk.outbox_table.insert().values(mirror="items", table_name="cmd_items", pk="7", op="upsert"))
    engine.dispose()
    drained = vectorknobs(tmp_path, "mirror", "drain", *base)
    assert drained.returncode == 0 and "1 applied" in drained.stdout, drained.stdout + drained.stderr
    assert vectorknobs(tmp_path, "mirror", "verify", *base).returncode == 0
    one_line_error(vectorknobs(tmp_path, "mirror", "verify", *base, "--name", "nope"), "no mirror is named 'nope'")
    one_line_error(vectorknobs(tmp_path, "mirror", "verify", "-d", db_url, "--mirror", "bogus:///x", "--column", "cmd_models:Item.embedding"), "Mirror backend 'bogus' is not known")


def test_backfill_by_reflection_adds_the_column(tmp_path: Path, db_url: str) -> None:
    engine = vk.create_engine(db_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE docs (id INTEGER PRIMARY KEY, title TEXT, content TEXT)")
        conn.execute(sa.text("INSERT INTO docs VALUES (:i, :t, :c)"), [{"i": i, "t": f"title {i}", "c": f"content {i}"} for i in range(250)])
    engine.dispose()
    args = ["backfill", "-d", db_url, "--table", "docs", "--text-fields", "title,content", "--vector-field", "embedding",
            "--embedder", "hashing", "--batch-size", "100"]
    one_line_error(vectorknobs(tmp_path, *args, "--add-column"), "needs a dimension")
    one_line_error(vectorknobs(tmp_path, *[a.replace("hashing", "hashing:12") for a in args]), "has no column 'embedding'")
    proc = vectorknobs(tmp_path, *args, "--add-column", "--dim", "12")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "embedded 250 row(s) in 3 batch(es); 0 batch(es) failed" in proc.stdout
    assert "backfill docs.embedding" in proc.stderr  # the progress bar
    engine = vk.create_engine(db_url)
    table = sa.Table("docs", sa.MetaData(), autoload_with=engine)
    assert isinstance(table.c.embedding.type, vk.Vector) and table.c.embedding.type.dim == 12
    with engine.connect() as conn:
        rows = conn.execute(sa.select(table).order_by(table.c.id)).all()
    engine.dispose()
    want = vk.HashingEmbedder(12).embed([f"{r.title}\n{r.content}" for r in rows])
    assert np.allclose(np.stack([r.embedding for r in rows]), want, atol=1e-6)
    again = vectorknobs(tmp_path, *args, "--no-progress")  # nothing stale any more
    assert again.returncode == 0 and "embedded 0 row(s)" in again.stdout


def test_help_works_without_optional_extras(tmp_path: Path) -> None:
    """``--help`` of every command with the optional packages made unimportable."""
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\n"
        f"for name in {OPTIONAL!r}:\n"
        "    sys.modules[name] = None  # import of it raises ImportError\n"
    )
    env = {"PYTHONPATH": str(blocker), "PATH": "/usr/bin:/bin"}
    probe = subprocess.run([VECTORKNOBS, "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert probe.returncode == 0 and all(c in probe.stdout for c in COMMANDS), probe.stderr
    check = subprocess.run([sys.executable, "-c", "import faiss"], capture_output=True, text=True, env=env)
    assert check.returncode != 0, "the blocker did not block"
    commands = [[c] for c in COMMANDS] + [["sync", "check"], ["sync", "fix"], ["mirror", "rebuild"], ["mirror", "verify"], ["mirror", "drain"]]
    for cmd in commands:
        proc = subprocess.run([VECTORKNOBS, *cmd, "--help"], capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 0 and "usage: vectorknobs" in proc.stdout, (cmd, proc.stderr)
    # A command that needs a missing extra says which, in one line.
    proc = subprocess.run([VECTORKNOBS, "inspect", "-d", "postgresql+psycopg://u@/db?host=/nonexistent"], capture_output=True, text=True, env=env, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and "psycopg" in lines[0], proc.stderr
