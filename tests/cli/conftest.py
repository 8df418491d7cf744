"""``db_url``: each CLI test runs once on a SQLite file and once on a fresh PostgreSQL database."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/cli.db"
    url = request.getfixturevalue("fresh_pg_url")
    return str(url.render_as_string(hide_password=False))
