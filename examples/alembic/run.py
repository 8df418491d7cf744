"""Run the example migrations: upgrade, check the database matches the models, downgrade.

    python examples/alembic/run.py [database-url]

The default is a new SQLite file; pass a PostgreSQL URL to run the same migration there.
``alembic check`` fails if autogenerate would find any difference between the models and the
migrated database: vector indexes (operator classes, m, metadata columns) included.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import sqlalchemy_vectorknobs as vk

HERE = Path(__file__).resolve().parent


def alembic(url: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(HERE / "alembic.ini"), "-x", f"url={url}", *args],
        capture_output=True, text=True, cwd=HERE,
    )
    if proc.returncode:
        sys.exit(f"alembic {' '.join(args)} failed: {proc.stdout}{proc.stderr}")
    return proc.stdout + proc.stderr


def main(url: str) -> int:
    alembic(url, "upgrade", "head")
    engine = vk.create_engine(url)
    report = vk.inspect_vectors(engine)
    engine.dispose()
    print(f"upgraded {report.dialect} ({report.extension} {report.extension_version})")
    for col in report.columns:
        print(f"  column {col.table}.{col.column}: {col.type}({col.dim})")
    for index in report.indexes:
        print(f"  index {index.name}: {index.method} {index.opclass or ''} {index.options}".rstrip())
    print(alembic(url, "check").strip().splitlines()[-1])  # "No new upgrade operations detected."
    alembic(url, "downgrade", "base")
    print("downgraded to base")
    return 0


if __name__ == "__main__":
    default = f"sqlite:///{tempfile.mkdtemp(prefix='vk-alembic-')}/example.db"
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else default))
