"""Fixtures for the mirror contract suite: an Elasticsearch URL (a real cluster or the test-only stand-in)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from .es_standin import StandinServer


@pytest.fixture(scope="session")
def es_url() -> Iterator[str]:
    """``VECTORKNOBS_ES_URL`` when set; otherwise the stand-in server of :mod:`.es_standin`."""
    env = os.environ.get("VECTORKNOBS_ES_URL")
    if env:
        yield env
        return
    with StandinServer() as server:
        yield server.url


@pytest.fixture(scope="session")
def real_es() -> bool:
    """True when the suite talks to a real cluster (whose kNN is approximate)."""
    return bool(os.environ.get("VECTORKNOBS_ES_URL"))
