"""Running the real ``vectorknobs`` console script, and small database helpers for the CLI tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import sqlalchemy as sa

#: The console script pip installed next to this interpreter.
VECTORKNOBS = str(Path(sys.executable).with_name("vectorknobs"))


def vectorknobs(cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``vectorknobs *args`` in ``cwd`` and return the finished process (text output)."""
    return subprocess.run([VECTORKNOBS, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def one_line_error(proc: subprocess.CompletedProcess[str], fragment: str) -> None:
    """The command failed with status 1 and exactly one stderr line containing ``fragment``."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert len(lines) == 1 and fragment in lines[0], proc.stderr


def scalar(url: str, sql: str, **params: Any) -> Any:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(sql), params).scalar()
    finally:
        engine.dispose()


def write_module(directory: Path, name: str, source: str) -> None:
    (directory / f"{name}.py").write_text(source)
