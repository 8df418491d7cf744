"""Large flushes pause the cyclic garbage collector while the listener builds its jobs, and always
give it back: after a flush, after a failing embedder, and never switched on if it was off."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

import sqlalchemy_vectorknobs as vk
from sqlalchemy_vectorknobs.embedding import listener

from .conftest import Counting, make_model, reference

ROWS = listener._GC_PAUSE_ROWS  # the smallest flush that pauses the collector


@pytest.fixture
def engine() -> Iterator[sa.Engine]:
    eng = vk.create_engine("sqlite://")
    yield eng
    eng.dispose()


@pytest.fixture(autouse=True)
def collector_restored() -> Iterator[None]:
    was = gc.isenabled()
    yield
    gc.enable() if was else gc.disable()


def seen_by_embedder(embedder: Counting) -> list[bool]:
    """gc.isenabled() at each embedder call (the calls happen inside the listener's loop)."""
    states: list[bool] = []
    original = embedder.embed

    def embed(texts: list[str]) -> np.ndarray:
        states.append(gc.isenabled())
        return original(texts)

    embedder.embed = embed  # type: ignore[method-assign]
    return states


def test_a_large_flush_pauses_the_collector_and_restores_it(engine: sa.Engine) -> None:
    embedder = Counting()
    Doc = make_model(embedder)
    Doc.metadata.create_all(engine)
    states = seen_by_embedder(embedder)
    with Session(engine) as s:
        s.add_all([Doc(id=i, title=f"t{i}", body="b") for i in range(ROWS)])
        s.commit()
        assert gc.isenabled()
        assert states and not any(states)  # paused while the listener ran
        got = s.scalar(sa.select(Doc.embedding).where(Doc.id == 7))
    want = reference(embedder, "t7", "b")
    assert got is not None and want is not None and np.allclose(got, want, atol=1e-6)
    states.clear()
    with Session(engine) as s:  # a small flush leaves the collector alone
        s.add_all([Doc(id=ROWS + i, title="x", body=None) for i in range(3)])
        s.commit()
    assert states == [True]


def test_the_collector_comes_back_when_the_embedder_fails(engine: sa.Engine) -> None:
    embedder = Counting(fail_on=lambda texts: True)
    Doc = make_model(embedder)
    Doc.metadata.create_all(engine)
    with Session(engine) as s:
        s.add_all([Doc(id=i, title=f"t{i}", body="b") for i in range(ROWS)])
        with pytest.raises(vk.EmbeddingError):
            s.commit()
    assert gc.isenabled()


def test_a_collector_switched_off_by_the_caller_stays_off(engine: sa.Engine) -> None:
    embedder = Counting()
    Doc = make_model(embedder)
    Doc.metadata.create_all(engine)
    gc.disable()
    with Session(engine) as s:
        s.add_all([Doc(id=i, title=f"t{i}", body="b") for i in range(ROWS)])
        s.commit()
    assert not gc.isenabled()
