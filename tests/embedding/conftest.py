"""Models and an instrumented embedder for the embedding-sync suite."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import sqlalchemy_vectorknobs as vk

from ..conftest import Backend, unique

DIM = 16


class Counting(vk.HashingEmbedder):
    """A HashingEmbedder that records every batch of texts it is asked to embed."""

    def __init__(self, dim: int = DIM, *, fail_on: Callable[[list[str]], bool] | None = None, **kw: Any) -> None:
        super().__init__(dim, **kw)
        self.batches: list[list[str]] = []
        self.fail_on = fail_on

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if self.fail_on is not None and self.fail_on(texts):
            raise RuntimeError("model server unavailable")
        self.batches.append(texts)
        return super().embed(texts)

    @property
    def calls(self) -> int:
        return len(self.batches)

    @property
    def texts(self) -> list[str]:
        return [t for b in self.batches for t in b]

    def reset(self) -> None:
        self.batches.clear()


def reference(embedder: vk.HashingEmbedder, title: str | None, body: str | None) -> np.ndarray | None:
    """What the vector must be, computed here from the spec's rule (non-NULL sources joined by newlines)."""
    text = "\n".join(v for v in (title, body) if v is not None)
    if text == "":
        return None
    # A fresh embedder with the same name/seed, so the instrumented one's counters are untouched.
    return vk.HashingEmbedder(embedder.dim, embedder.seed).embed([text])[0]


def make_model(embedder: Any, dim: int = DIM, **kw: Any) -> Any:
    class Base(DeclarativeBase):
        pass

    class Doc(Base):
        __tablename__ = unique("esync")
        id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
        title: Mapped[str | None] = mapped_column(sa.String(200))
        body: Mapped[str | None] = mapped_column(sa.Text)
        other: Mapped[int | None] = mapped_column(sa.Integer)
        embedding = vk.embedded_column(vk.Vector(dim), source=("title", "body"), embedder=embedder, **kw)

    return Doc


def stale_ids(session: Session, target: Any) -> set[int]:
    return {d.id for d in session.scalars(vk.stale(target))}


def drift(session: Session, Doc: Any, embedder: Any) -> tuple[set[int], set[int]]:
    """(rows whose vector disagrees with their text, rows listed by stale()), read from the database."""
    t = Doc.__table__
    listed = {r[0] for r in session.execute(sa.select(t.c.id).where(vk.stale_condition(Doc)))}
    wrong = set()
    for row in session.execute(sa.select(t.c.id, t.c.title, t.c.body, t.c.embedding)):
        want = reference(embedder, row.title, row.body)
        got = row.embedding
        if (want is None) != (got is None) or (want is not None and not np.allclose(got, want, atol=1e-6)):
            wrong.add(row.id)
    return wrong, listed


@pytest.fixture
def env(session_backend: Backend) -> Backend:
    return session_backend
