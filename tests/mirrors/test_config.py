"""``vk.mirror_from_config``: dicts, URL strings, value conversion, one-sentence errors and entry points."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import sqlalchemy_vectorknobs as vk
from sqlalchemy_vectorknobs.exc import VectorKnobsError
from sqlalchemy_vectorknobs.mirrors import (
    ChromaMirror,
    ElasticsearchMirror,
    FaissMirror,
    InvalidMirrorError,
    MemoryMirror,
    available_backends,
    config,
    mirror_from_config,
)

from .test_contract import Doc

COLUMN = "tests.mirrors.test_contract:Doc.embedding"


@pytest.fixture
def built() -> Iterator[list[Any]]:
    made: list[Any] = []
    yield made
    for mirror in made:
        if isinstance(mirror, ElasticsearchMirror) and not mirror.closed:
            mirror.clear()
        if hasattr(mirror, "close"):
            mirror.close()


def test_dict_config_with_a_column_path(tmp_path: Path, built: list[Any]) -> None:
    mirror = mirror_from_config(
        {"backend": "faiss", "column": COLUMN, "path": str(tmp_path / "d.vkfaiss"), "kind": "hnsw", "m": 24,
         "metadata_columns": ["category"]}
    )
    built.append(mirror)
    assert isinstance(mirror, FaissMirror)
    assert mirror.column is Doc.__table__.c.embedding
    assert (mirror.kind, mirror._m, mirror.metadata_columns, mirror.path) == ("hnsw", 24, ("category",), tmp_path / "d.vkfaiss")
    # a column object and keyword arguments work too, and keyword arguments win
    other = mirror_from_config({"backend": "memory", "column": COLUMN, "name": "a"}, column=Doc.embedding, name="b")
    assert isinstance(other, MemoryMirror) and other.name == "b"


def test_faiss_urls_follow_sqlalchemys_path_convention(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, built: list[Any]) -> None:
    monkeypatch.chdir(tmp_path)
    relative = mirror_from_config("faiss:///data/doc.vkfaiss", column=Doc.embedding)
    absolute = mirror_from_config(f"faiss:///{tmp_path}/abs.vkfaiss", column=Doc.embedding)
    in_memory = mirror_from_config("faiss://", column=Doc.embedding)
    built.extend([relative, absolute, in_memory])
    assert relative.path == Path("data/doc.vkfaiss")
    assert absolute.path == tmp_path / "abs.vkfaiss" and absolute.path.is_absolute()
    assert in_memory.path is None


def test_url_query_values_are_converted_after_the_signature(tmp_path: Path, built: list[Any]) -> None:
    url = (
        f"faiss:///{tmp_path}/q.vkfaiss?kind=hnsw&m=16&ef_search=80&autosave=false&tombstone_ratio=0.5"
        f"&metadata_columns=category,rank&distance=l2&column={COLUMN}&name=docs"
    )
    mirror = mirror_from_config(url)
    built.append(mirror)
    assert (mirror.kind, mirror._m, mirror._ef_search, mirror.autosave, mirror._tombstone_ratio) == ("hnsw", 16, 80, False, 0.5)
    assert mirror.metadata_columns == ("category", "rank")
    assert mirror.distance is vk.Distance.L2 and mirror.name == "docs"
    memory = mirror_from_config("memory://?metadata_columns=category", column=Doc.embedding)
    assert isinstance(memory, MemoryMirror) and memory.metadata_columns == ("category",)


def test_chroma_url(tmp_path: Path, built: list[Any]) -> None:
    mirror = mirror_from_config(f"chroma:///{tmp_path}/chroma?collection=docs&metadata_columns=category", column=COLUMN)
    built.append(mirror)
    assert isinstance(mirror, ChromaMirror) and mirror.collection.name == "docs"
    mirror.upsert([1], [[1.0] * 16], [{"category": "a"}])
    assert mirror.search([1.0] * 16, k=1, where={"category": "a"})[0][0] == 1


def test_elasticsearch_url(es_url: str, built: list[Any]) -> None:
    host = es_url.split("://", 1)[1]
    url = (
        f"elasticsearch+http://elastic:s%3Acret@{host}/vk-config-test?num_candidates=50&shards=2&replicas=0"
        '&refresh_interval=5s&index_options={"type":"hnsw","m":24,"ef_construction":64}&chunk_size=7&refresh=wait_for'
    )
    mirror = mirror_from_config(url, column=Doc.embedding)
    built.append(mirror)
    assert isinstance(mirror, ElasticsearchMirror) and mirror.index == "vk-config-test"
    assert mirror._num_candidates == 50 and mirror._chunk == 7 and mirror._refresh == "wait_for"
    assert mirror.settings == {"number_of_shards": 2, "number_of_replicas": 0, "refresh_interval": "5s"}
    assert mirror.mapping()["properties"]["embedding"]["index_options"] == {"type": "hnsw", "m": 24, "ef_construction": 64}
    # user and password became basic_auth (the %3A decoded)
    assert mirror.client._headers["authorization"] == "Basic " + base64.b64encode(b"elastic:s:cret").decode()
    mirror.upsert([1], [[1.0] * 16])
    assert mirror.count() == 1


@pytest.mark.parametrize(
    "cfg, kw, message",
    [
        ({"column": COLUMN}, {}, "has no 'backend'"),
        ({"backend": "pinecone", "column": COLUMN}, {}, "is not known"),
        ({"backend": 3, "column": COLUMN}, {}, "is not a name"),
        ({"backend": "memory"}, {}, "names no column"),
        ({"backend": "memory", "column": "tests.mirrors.test_contract.Doc.embedding"}, {}, "is not of the form"),
        ({"backend": "memory", "column": "no_such_module_vk:Doc.embedding"}, {}, "cannot be imported"),
        ({"backend": "memory", "column": "tests.mirrors.test_contract:Doc.nothing"}, {}, "'nothing' is missing"),
        ({"backend": "faiss", "column": COLUMN, "kinds": "hnsw"}, {}, "does not take option 'kinds'"),
        ("faiss:///x.vkfaiss?m=lots", {"column": COLUMN}, "option m='lots' cannot be read"),
        ("faiss:///x.vkfaiss?m=2&m=3", {"column": COLUMN}, "gives option 'm' twice"),
        ("faiss://host/x.vkfaiss", {"column": COLUMN}, "has a host"),
        ("memory:///somewhere", {"column": COLUMN}, "keeps nothing on disk"),
        ("chroma://", {"column": COLUMN}, "has no path"),
        ("elasticsearch+ftp://h:1/i", {"column": COLUMN}, "is not of the form"),
        ("elasticsearch+http://h:1/a/b", {"column": COLUMN}, "give one index name"),
        ("faiss///x", {"column": COLUMN}, "has no scheme"),
        ("faiss:///x?index_options=[1]", {"column": COLUMN}, "does not take option 'index_options'"),
        ("elasticsearch+http://h:1/i?index_options=[1]", {"column": COLUMN}, "cannot be read"),
        (42, {}, "of type int is not usable"),
    ],
)
def test_configuration_errors_are_one_sentence(cfg: Any, kw: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidMirrorError, match=message) as info:
        mirror_from_config(cfg, **kw)
    text = str(info.value)
    assert isinstance(info.value, (VectorKnobsError, ValueError))
    assert text.endswith(".") and text.count(". ") == 0, text  # one sentence


# --------------------------------------------------------------------------- entry points


class FakeEntryPoint:
    def __init__(self, name: str, target: Any) -> None:
        self.name, self.target = name, target

    def load(self) -> Any:
        if isinstance(self.target, Exception):
            raise self.target
        return self.target


class RemoteMirror:
    """What a third-party package would register: a class taking the column first."""

    def __init__(self, column: Any, *, url: str | None = None, collection: str = "default", shards: int = 1) -> None:
        self.column, self.url, self.collection, self.shards = column, url, collection, shards


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    eps = {
        "remote": FakeEntryPoint("remote", RemoteMirror),
        "broken": FakeEntryPoint("broken", ImportError("No module named 'vk_broken'")),
        "faiss": FakeEntryPoint("faiss", RemoteMirror),  # cannot take over a built-in name
    }
    monkeypatch.setattr(config, "_entry_points", lambda: eps)


@pytest.mark.usefixtures("plugins")
def test_third_party_mirrors_through_entry_points() -> None:
    assert available_backends() == ["memory", "faiss", "chroma", "elasticsearch", "broken", "remote"]
    mirror = mirror_from_config({"backend": "remote", "column": COLUMN, "collection": "docs", "shards": 3})
    assert isinstance(mirror, RemoteMirror) and (mirror.collection, mirror.shards) == ("docs", 3)
    assert mirror.column is Doc.embedding
    from_url = mirror_from_config(f"remote://cluster.internal/x?shards=4&column={COLUMN}")
    assert from_url.url == f"remote://cluster.internal/x?shards=4&column={COLUMN}" and from_url.shards == 4
    with pytest.raises(InvalidMirrorError, match="does not take option 'replicas'"):
        mirror_from_config("remote://x?replicas=2", column=COLUMN)
    with pytest.raises(InvalidMirrorError, match="could not be loaded from its entry point"):
        mirror_from_config({"backend": "broken", "column": COLUMN})
    assert isinstance(mirror_from_config("faiss://", column=COLUMN), FaissMirror)


def test_the_real_entry_point_lookup_runs() -> None:
    found = config._entry_points()
    assert isinstance(found, dict)
    assert config.ENTRY_POINT_GROUP == "sqlalchemy_vectorknobs.mirrors"
