"""What only ``ElasticsearchMirror`` does: mapping and settings, the alias and its generations, bulk chunks, 409s, hybrid search.

Runs against the test-only stand-in (``es_standin.py``) through the official client, or a real
cluster when ``VECTORKNOBS_ES_URL`` is set. Expected hybrid rankings are computed here from the two
rankings fetched separately (kNN through ``search``, BM25 through the raw client), never through
``hybrid_search`` itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import sqlalchemy_vectorknobs as vk
from sqlalchemy_vectorknobs.mirrors import ElasticsearchMirror, InvalidMirrorError, MirrorError

from .test_contract import DIM, Doc


class Base(DeclarativeBase):
    pass


class Article(Base):
    __tablename__ = "article"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str | None] = mapped_column(sa.String(200))
    lang: Mapped[str | None] = mapped_column(sa.String(8))
    embedding = mapped_column(vk.Vector(DIM))


@pytest.fixture
def make(es_url: str) -> Iterator[Callable[..., ElasticsearchMirror]]:
    made: list[ElasticsearchMirror] = []

    def build(column: Any = Doc.embedding, **kw: Any) -> ElasticsearchMirror:
        kw.setdefault("index", f"vk-es-{uuid.uuid4().hex[:10]}")
        mirror = ElasticsearchMirror(column, url=es_url, **kw)
        made.append(mirror)
        return mirror

    yield build
    for mirror in made:
        if not mirror.closed:
            mirror.clear()
            mirror.close()


def test_mapping_has_similarity_and_index_options_and_settings_are_applied(make: Callable[..., Any]) -> None:
    default = make(metadata_columns=["category", "rank"])
    field = default.mapping()["properties"]["embedding"]
    assert field == {
        "type": "dense_vector",
        "dims": DIM,
        "index": True,
        "similarity": "cosine",
        "index_options": {"type": "hnsw", "m": 16, "ef_construction": 100},
    }
    default.upsert([1], np.ones((1, DIM)), [{"category": "a", "rank": 3}])
    concrete = default.concrete_index
    got = default.client.indices.get(index=concrete)[concrete]
    assert got["mappings"]["properties"]["embedding"]["index_options"]["m"] == 16
    index_settings = got["settings"]["index"]
    assert str(index_settings["number_of_shards"]) == "1" and str(index_settings["number_of_replicas"]) == "1"
    assert index_settings["refresh_interval"] == "1s"

    tuned = make(
        index_options={"type": "int8_hnsw", "m": 32, "ef_construction": 200},
        shards=2,
        replicas=0,
        refresh_interval="30s",
        settings={"index.max_result_window": 20000},
    )
    tuned.count()
    got = tuned.client.indices.get(index=tuned.concrete_index)[tuned.concrete_index]
    assert got["mappings"]["properties"]["embedding"]["index_options"] == {"type": "int8_hnsw", "m": 32, "ef_construction": 200}
    index_settings = got["settings"]["index"]
    assert (str(index_settings["number_of_shards"]), str(index_settings["number_of_replicas"])) == ("2", "0")
    assert index_settings["refresh_interval"] == "30s" and str(index_settings["max_result_window"]) == "20000"


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"index_options": {"type": "ivf"}}, "type 'ivf' is not known"),
        ({"index_options": {"type": "flat", "m": 16}}, "applies to HNSW types"),
        ({"index_options": {"type": "hnsw", "m": 1}}, "m=1 is not a whole number of at least 2"),
        ({"index_options": "hnsw"}, "is not a dict"),
        ({"shards": 0}, "shards=0"),
        ({"replicas": -1}, "replicas=-1"),
        ({"refresh_interval": ""}, "is not a time value"),
        ({"settings": ["x"]}, "is not a dict of index settings"),
        ({"chunk_bytes": 0}, "chunk_bytes=0"),
    ],
)
def test_bad_index_configuration_is_refused(es_url: str, kw: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidMirrorError, match=message):
        ElasticsearchMirror(Doc.embedding, url=es_url, **kw)


def test_reads_and_writes_go_through_an_alias_and_rebuild_swaps_generations(make: Callable[..., Any], es_url: str) -> None:
    mirror = make(metadata_columns=["category"])
    alias = mirror.index
    mirror.upsert([1, 2, 3], np.eye(3, DIM) + 0.1, [{"category": "a"}] * 3, versions=[10, 11, 12])
    mirror.delete([3], versions=[13])
    client = mirror.client
    assert sorted(client.indices.get_alias(name=alias).body) == [f"{alias}_g1"]
    generation = mirror.begin_generation()
    assert generation is not None and generation.index == f"{alias}_g2"
    built = client.indices.get(index=f"{alias}_g2")[f"{alias}_g2"]["settings"]["index"]
    assert str(built["number_of_replicas"]) == "0" and built["refresh_interval"] == "-1"  # bulk-load settings
    generation.write_generation(([1, 2], np.eye(2, DIM) + 0.2, [{"category": "b"}] * 2, [10, None]), ([3], [13]))
    mirror.upsert([2], np.ones((1, DIM)), [{"category": "c"}], versions=[20])  # a live write during the build
    assert mirror.written_since() == [2]
    assert mirror.search(np.eye(1, DIM)[0], k=1)[0][0] == 1  # the live generation still answers
    assert mirror.end_generation(generation, swap=True)
    assert sorted(client.indices.get_alias(name=alias).body) == [f"{alias}_g2"]
    assert not client.indices.exists(index=f"{alias}_g1")  # deleted in the same _aliases request
    final = client.indices.get(index=f"{alias}_g2")[f"{alias}_g2"]["settings"]["index"]
    assert str(final["number_of_replicas"]) == "1" and final["refresh_interval"] == "1s"
    assert mirror.ids() == {1, 2}
    assert mirror.recorded_versions([1, 3]) == {1: 10, 3: 13}  # versions and tombstones carried over
    assert mirror.upsert([3], np.ones((1, DIM)), versions=[12]) == 0  # the tombstone still refuses older writes
    np.testing.assert_allclose(mirror.get([1])[1], (np.eye(2, DIM) + 0.2)[0], rtol=1e-6)


def test_a_plain_index_from_before_aliases_is_replaced_by_an_alias(make: Callable[..., Any], es_url: str) -> None:
    legacy = make()
    legacy._use_alias = False  # how an index was laid out before aliases
    legacy.upsert([1, 2], np.eye(2, DIM) + 0.1)
    name = legacy.index
    assert legacy.client.indices.exists(index=name) and not legacy.client.indices.exists_alias(name=name)
    legacy.close()
    mirror = make(index=name)
    assert mirror.count() == 2 and mirror.concrete_index == name  # used as it is
    generation = mirror.begin_generation()
    generation.write_generation(([1, 2], np.eye(2, DIM) + 0.3, [None, None], [None, None]), ([], []))
    mirror.end_generation(generation, swap=True)
    assert sorted(mirror.client.indices.get_alias(name=name).body) == [f"{name}_g1"]
    assert mirror.count() == 2


def test_bulk_requests_are_chunked_by_count_and_size(make: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    by_count = make(chunk_size=7)
    by_size = make(chunk_bytes=2000)  # about 5 documents of 16 floats each
    for mirror in (by_count, by_size):
        mirror.count()
        sizes: list[int] = []
        bulk = mirror.client.bulk

        def counting(*, operations: list[dict[str, Any]], **kw: Any) -> Any:
            sizes.append(sum(1 for op in operations if "index" in op or "delete" in op))
            return bulk(operations=operations, **kw)

        monkeypatch.setattr(mirror.client, "bulk", counting)
        n = 40
        assert mirror.upsert(list(range(1, n + 1)), np.random.default_rng(1).random((n, DIM)) + 0.1, versions=list(range(1, n + 1))) == n
        assert sum(sizes) == n and len(sizes) > 1
        if mirror is by_count:
            assert max(sizes) == 7
        else:
            assert max(sizes) <= 6
        assert mirror.count() == n


def test_a_409_is_taken_as_already_applied(make: Callable[..., Any]) -> None:
    mirror = make()
    assert mirror.upsert([1, 2], np.eye(2, DIM) + 0.1, versions=[5, 5]) == 2
    # id 1 is stale (409 inside the bulk response), id 2 and 3 are new: no error, two applied
    assert mirror.upsert([1, 2, 3], np.ones((3, DIM)), versions=[4, 6, 1]) == 2
    assert mirror.delete([1], versions=[5]) == 0  # same version: already there
    assert mirror.ids() == {1, 2, 3}
    np.testing.assert_allclose(mirror.get([1])[1], (np.eye(2, DIM) + 0.1)[0], rtol=1e-6)


TITLES = {
    1: "connection pool size and timeouts",
    2: "pool party pictures",
    3: "database connection strings",
    4: "garden tools and soil",
    5: "timeouts in a connection pool explained",
    6: "the pool of connections",
}


def _articles(make: Callable[..., Any]) -> tuple[Any, dict[int, np.ndarray]]:
    mirror = make(Article.embedding, metadata_columns=["lang"], text_columns=["title"])
    rng = np.random.default_rng(3)
    vectors = {pk: rng.standard_normal(DIM).astype(np.float32) for pk in TITLES}
    ids = sorted(TITLES)
    mirror.upsert(ids, [vectors[i] for i in ids], [{"title": TITLES[i], "lang": "en" if i != 6 else "de"} for i in ids])
    return mirror, vectors


def _rrf(rankings: list[list[int]], k: int, c: int = 60) -> list[tuple[int, float]]:
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, pk in enumerate(ranking, start=1):
            scores[pk] = scores.get(pk, 0.0) + 1.0 / (c + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])[:k]


def test_hybrid_search_fuses_bm25_and_knn_by_reciprocal_rank(make: Callable[..., Any]) -> None:
    mirror, vectors = _articles(make)
    assert mirror.mapping()["properties"]["title"]["type"] == "text"
    query = vectors[4] + 0.05  # the vector side prefers the garden article
    knn = [pk for pk, _ in mirror.search(query, k=6)]
    raw = mirror.client.search(
        index=mirror.index, query={"multi_match": {"query": "connection pool", "fields": ["title"]}}, size=6, source=False
    )
    bm25 = [int(hit["_id"]) for hit in raw["hits"]["hits"]]
    assert set(bm25) == {1, 2, 3, 5, 6} and set(bm25[:2]) == {1, 5}  # both words beat one word
    got = mirror.hybrid_search("connection pool", query, k=4)
    want = _rrf([knn, bm25], 4)
    assert [pk for pk, _ in got] == [pk for pk, _ in want]
    np.testing.assert_allclose([s for _, s in got], [s for _, s in want], rtol=1e-12)
    assert got[0][0] in (1, 5)  # both lists like it

    filtered = mirror.hybrid_search("connection pool", query, k=6, where={"lang": "de"})
    assert [pk for pk, _ in filtered] == [6]
    assert mirror.search(query, k=3, where={"title": TITLES[2]})[0][0] == 2  # equality on the keyword sub-field


def test_hybrid_search_arguments(make: Callable[..., Any]) -> None:
    mirror, vectors = _articles(make)
    plain = make()
    with pytest.raises(InvalidMirrorError, match="has no text_columns"):
        plain.hybrid_search("pool", np.ones(DIM))
    with pytest.raises(InvalidMirrorError, match="text field 'lang' is not one of its text_columns"):
        mirror.hybrid_search("pool", vectors[1], text_fields=["lang"])
    with pytest.raises(InvalidMirrorError, match="is not a non-empty string"):
        mirror.hybrid_search("  ", vectors[1])
    with pytest.raises(InvalidMirrorError, match="window=0"):
        mirror.hybrid_search("pool", vectors[1], window=0)
    assert mirror.hybrid_search("pool", vectors[1], where={"lang": []}) == []
    assert len(mirror.hybrid_search("pool", vectors[1], k=2, window=3, rank_constant=1)) == 2


def test_text_columns_need_a_text_mapping(make: Callable[..., Any]) -> None:
    old = make(Article.embedding, metadata_columns=["title"])
    old.upsert([1], np.ones((1, DIM)), [{"title": "x"}])
    newer = make(Article.embedding, index=old.index, text_columns=["title"])
    with pytest.raises(InvalidMirrorError, match="does not map text column 'title' as text"):
        newer.count()
    generation = newer.begin_generation()  # a rebuild creates the index with the text field
    newer.end_generation(generation, swap=True)
    assert newer.count() == 0


def test_unreachable_server_fails_at_first_use() -> None:
    mirror = ElasticsearchMirror(Doc.embedding, url="http://127.0.0.1:9", client_options={"request_timeout": 0.5, "max_retries": 0})
    with pytest.raises(MirrorError, match="could not reach"):
        mirror.count()
    mirror.close()
