"""``vectorknobs backfill`` (and ``--follow``) as a user runs it: a real process, a real SQLite file."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

import sqlalchemy_vectorknobs as vk

MODELS = textwrap.dedent(
    """
    from typing import Optional
    import sqlalchemy as sa
    from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
    import sqlalchemy_vectorknobs as vk

    class Base(DeclarativeBase):
        pass

    class Note(Base):
        __tablename__ = "cli_notes"
        id: Mapped[int] = mapped_column(primary_key=True)
        text: Mapped[Optional[str]] = mapped_column(sa.Text)
        embedding = vk.embedded_column(vk.Vector(32), source="text", embedder=vk.HashingEmbedder(32), mode="deferred")
    """
)


def _setup(tmp_path: Path, rows: int) -> tuple[str, object]:
    (tmp_path / "cli_models.py").write_text(MODELS)
    sys.path.insert(0, str(tmp_path))
    try:
        import importlib

        models = importlib.import_module("cli_models")
        importlib.reload(models)
    finally:
        sys.path.remove(str(tmp_path))
    url = f"sqlite:///{tmp_path}/notes.db"
    engine = vk.create_engine(url)
    models.Base.metadata.create_all(engine)
    with Session(engine) as s:
        s.add_all([models.Note(id=i, text=f"note number {i}") for i in range(rows)])
        s.commit()
    engine.dispose()
    return url, models


def _cli(tmp_path: Path, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sqlalchemy_vectorknobs", *args], cwd=tmp_path, capture_output=True, text=True, timeout=120, **kw  # type: ignore[call-overload]
    )


def _fresh(url: str, models: object) -> tuple[int, bool]:
    engine = vk.create_engine(url)
    Note = models.Note  # type: ignore[attr-defined]
    with Session(engine) as s:
        stale = s.scalar(sa.select(sa.func.count()).select_from(vk.stale(Note).subquery()))
        rows = s.execute(sa.select(Note.text, Note.embedding)).all()
    engine.dispose()
    ok = all(v is not None and np.allclose(v, vk.HashingEmbedder(32).embed([t])[0]) for t, v in rows)
    return int(stale or 0), ok


def test_backfill_command_embeds_stale_rows(tmp_path: Path) -> None:
    url, models = _setup(tmp_path, 120)
    assert _fresh(url, models)[0] == 120
    proc = _cli(tmp_path, "backfill", "--database", url, "--model", "cli_models:Note", "--batch-size", "50", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "embedded 120 row(s) in 3 batch(es); 0 batch(es) failed" in proc.stdout
    assert _fresh(url, models) == (0, True)


def test_backfill_follow_embeds_rows_as_they_appear(tmp_path: Path) -> None:
    url, models = _setup(tmp_path, 0)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sqlalchemy_vectorknobs", "backfill", "-d", url, "-m", "cli_models:Note", "--follow", "--poll-interval", "0.1"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        engine = vk.create_engine(url)
        with Session(engine) as s:
            s.add_all([models.Note(id=i, text=f"late note {i}") for i in range(40)])  # type: ignore[attr-defined]
            s.commit()
        engine.dispose()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _fresh(url, models)[0]:
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert _fresh(url, models) == (0, True), err
    assert proc.returncode == 0 and "stopped after embedding 40 row(s)" in out, out + err


def test_failures_are_one_line_and_non_zero(tmp_path: Path) -> None:
    url, _ = _setup(tmp_path, 1)
    cases = [
        (["backfill", "-d", url, "-m", "no_such_module:Note"], "cannot import module 'no_such_module'"),
        (["backfill", "-d", url, "-m", "cli_models:Nope"], "has no attribute 'Nope'"),
        (["backfill", "-d", url, "-m", "cli_models"], "is not of the form module:Class"),
        (["backfill", "-d", "notaurl", "-m", "cli_models:Note"], "bad database URL"),
        (["backfill", "-d", url, "-m", "cli_models:Base"], "has no embedded_column"),
    ]
    for args, message in cases:
        proc = _cli(tmp_path, *args)
        assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (args, proc.stderr)


def test_help_loads_no_optional_backend() -> None:
    probe = (
        "import sys, contextlib, io\n"
        "from sqlalchemy_vectorknobs.cli import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    main(['backfill', '--help'])\n"
        "heavy = [m for m in ('faiss', 'chromadb', 'elasticsearch', 'torch', 'sentence_transformers', 'psycopg', 'asyncpg') if m in sys.modules]\n"
        "print('--database' in out.getvalue(), heavy)\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "True []"
