"""Fixtures of the example tests: a fresh PostgreSQL database URL to pass to a script."""

from __future__ import annotations

import pytest
import sqlalchemy as sa


@pytest.fixture
def pg_database(fresh_pg_url: sa.URL) -> str:
    return fresh_pg_url.render_as_string(hide_password=False)
