"""Declaring embedded columns and the built-in embedders (no database needed except where noted)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, configure_mappers, mapped_column

import sqlalchemy_vectorknobs as vk
from sqlalchemy_vectorknobs import codec
from sqlalchemy_vectorknobs.embedding.column import SourceHash

from ..conftest import Backend, unique
from .conftest import Counting, make_model


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"type_": vk.Vector}, vk.EmbeddingConfigError, "sized type"),
        ({"type_": vk.BitVector(16)}, vk.EmbeddingConfigError, "vk.Vector"),
        ({"source": ()}, vk.EmbeddingConfigError, "at least one"),
        ({"source": ("title", "title")}, vk.EmbeddingConfigError, "twice"),
        ({"template": "{title} {summary}"}, vk.EmbeddingConfigError, "summary"),
        ({"template": "{title"}, vk.EmbeddingConfigError, "format string"),
        ({"batch_size": 0}, vk.EmbeddingConfigError, "batch_size"),
        ({"on_error": "ignore"}, vk.EmbeddingConfigError, "on_error"),
        ({"mode": "later"}, vk.EmbeddingConfigError, "mode"),
        ({"embedder": vk.HashingEmbedder(8)}, vk.DimensionMismatchError, "8 dimensions"),
        ({"embedder": "word2vec"}, ValueError, "not known"),
        ({"embedder": object()}, TypeError, "not an Embedder"),
    ],
)
def test_bad_declarations_fail_at_declaration(kwargs: dict[str, Any], error: type, message: str) -> None:
    args: dict[str, Any] = {"type_": vk.Vector(16), "source": ("title", "body"), "embedder": vk.HashingEmbedder(16)}
    args.update(kwargs)
    with pytest.raises(error, match=message):
        vk.embedded_column(**args)


def test_sources_must_exist_and_be_text() -> None:
    class Base(DeclarativeBase):
        pass

    class Bad(Base):
        __tablename__ = unique("bad")
        id: Mapped[int] = mapped_column(primary_key=True)
        n: Mapped[int | None]
        embedding = vk.embedded_column(vk.Vector(4), source="n", embedder=vk.HashingEmbedder(4))

    with pytest.raises(vk.EmbeddingConfigError, match="sources must be text columns"):
        configure_mappers()
    Base.registry.dispose()

    class Base2(DeclarativeBase):
        pass

    class Missing(Base2):
        __tablename__ = unique("missing")
        id: Mapped[int] = mapped_column(primary_key=True)
        embedding = vk.embedded_column(vk.Vector(4), source="titel", embedder=vk.HashingEmbedder(4))

    with pytest.raises(vk.EmbeddingConfigError, match="'titel', which is not a column"):
        configure_mappers()
    Base2.registry.dispose()


def test_companion_columns_are_named_predictably_and_renameable() -> None:
    Doc = make_model(vk.HashingEmbedder(16))
    assert Doc.__table__.c.keys() == ["id", "title", "body", "other", "embedding", "embedding_model", "embedding_hash"]
    assert isinstance(Doc.embedding_model.type, sa.String) and Doc.embedding_hash.type.length == 64

    class Base(DeclarativeBase):
        pass

    class Renamed(Base):
        __tablename__ = unique("renamed")
        id: Mapped[int] = mapped_column(primary_key=True)
        text: Mapped[str]
        vec = vk.embedded_column(
            vk.HalfVector(16), source="text", embedder=vk.HashingEmbedder(16), model_column="vec_by", hash_column="vec_of"
        )

    assert {"vec_by", "vec_of"} <= set(Renamed.__table__.c.keys())


def test_dimension_mismatch_at_first_use_writes_nothing(sqlite_backend: Backend) -> None:
    wide = vk.CallableEmbedder(lambda texts: np.ones((len(texts), 20)), dim=None, name="unknown-width")
    Doc = make_model(wide)
    sqlite_backend.create(Doc.metadata)
    with Session(sqlite_backend.engine) as s:
        s.add(Doc(id=1, title="x"))
        with pytest.raises(vk.DimensionMismatchError, match="produces 20 dimensions but its column expects 16"):
            s.commit()
        s.rollback()
        assert s.scalar(sa.select(sa.func.count()).select_from(Doc)) == 0


@pytest.mark.parametrize(
    ("output", "message"),
    [([[np.nan] * 16], "NaN"), ([[1.0] * 16] * 2, "shape"), ("nope", "could not convert string")],
)
def test_bad_embedder_output_is_an_embedding_error(sqlite_backend: Backend, output: Any, message: str) -> None:
    Doc = make_model(vk.CallableEmbedder(lambda texts: output, dim=16, name="broken"))
    sqlite_backend.create(Doc.metadata)
    with Session(sqlite_backend.engine) as s:
        s.add(Doc(id=1, title="x"))
        with pytest.raises(vk.EmbeddingError, match=message):
            s.commit()


def test_hashing_embedder_is_deterministic_normalised_and_word_based() -> None:
    a, b = vk.HashingEmbedder(64), vk.HashingEmbedder(64)
    texts = ["The cat sat on the mat", "the CAT sat", "Quantum chromodynamics", "", "!!!"]
    x, y = a.embed(texts), b.embed(texts)
    assert x.dtype == np.float32 and x.shape == (5, 64)
    assert np.array_equal(x, y)
    assert np.allclose(np.linalg.norm(x, axis=1), 1.0)
    assert x[0] @ x[1] > x[0] @ x[2]
    assert np.array_equal(x[3], x[4])  # no word characters: one fixed vector
    assert not np.array_equal(vk.HashingEmbedder(64, seed=1).embed(texts[:1]), x[:1])
    # Stable across processes (BLAKE2b, not Python's randomised hash()).
    code = "import sqlalchemy_vectorknobs as vk; print(vk.HashingEmbedder(64).embed(['The cat sat on the mat']).tobytes().hex())"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert other == x[0].tobytes().hex()
    assert isinstance(a, vk.Embedder)


def test_fingerprint_follows_name_version_and_template() -> None:
    emb = vk.HashingEmbedder(16, version="3")
    Doc = make_model(emb)
    spec = Doc.__table__.c.embedding.info["vectorknobs.embedding"]
    assert spec.fingerprint == "hashing-16-seed0@3"
    Templated = make_model(emb, template="{title}: {body}")
    fp = Templated.__table__.c.embedding.info["vectorknobs.embedding"].fingerprint
    assert fp.startswith("hashing-16-seed0@3#t") and fp != spec.fingerprint


def test_declaring_installs_listeners_importing_does_not() -> None:
    code = """
import sqlalchemy_vectorknobs as vk
from sqlalchemy.orm import Session
from sqlalchemy import event
from sqlalchemy_vectorknobs.embedding import listener
print(event.contains(Session, "before_flush", listener._before_flush))
vk.embedded_column(vk.Vector(4), source="t", embedder=vk.HashingEmbedder(4))
print(event.contains(Session, "before_flush", listener._before_flush))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True"]


@pytest.mark.parametrize(
    "values",
    [("a",), ("a", None, "b"), (None, None), ("", ""), ("naïve café ☕", "Zürich\n日本語"), ("x" * 5000, None)],
)
def test_sql_source_hash_equals_python(backend: Backend, values: tuple[str | None, ...]) -> None:
    """The staleness check relies on the database hashing text exactly as codec.source_hash does."""
    params = [sa.bindparam(f"p{i}", v, type_=sa.Text) for i, v in enumerate(values)]
    got = backend.run(lambda c: c.execute(sa.select(SourceHash(*params))).scalar_one())
    text = "\n".join(v for v in values if v is not None)
    assert got == hashlib.sha256(text.encode("utf-8")).hexdigest() == codec.source_hash(*values)


def test_counting_helper_counts() -> None:
    emb = Counting(8)
    emb.embed(["a", "b"])
    assert emb.calls == 1 and emb.texts == ["a", "b"]
