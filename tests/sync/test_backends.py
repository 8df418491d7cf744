"""The key sync scenarios against real Faiss and Chroma mirrors (files under tmp_path) and Elasticsearch.

Elasticsearch is the test-only stand-in server of ``tests/mirrors/es_standin.py`` (spoken to by the
official client over HTTP), or a real cluster when ``VECTORKNOBS_ES_URL`` is set.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

import sqlalchemy_vectorknobs as vk
from sqlalchemy_vectorknobs import sync as vks

from ..mirrors.es_standin import StandinServer
from .conftest import Recording, SyncEnv, assert_matches, vec

KINDS = ["faiss-flat", "faiss-hnsw", "chroma", "elasticsearch"]


@pytest.fixture(scope="module")
def es_url() -> Iterator[str]:
    env = os.environ.get("VECTORKNOBS_ES_URL")
    if env:
        yield env
        return
    with StandinServer() as server:
        yield server.url


@pytest.fixture(params=KINDS)
def mirror(request: pytest.FixtureRequest, env: SyncEnv, tmp_path: Path) -> Iterator[Any]:
    column = env.Doc.embedding
    if request.param == "chroma":
        m: Any = vk.ChromaMirror(column, path=tmp_path / "chroma", metadata_columns=["category"])
    elif request.param == "elasticsearch":
        m = vk.ElasticsearchMirror(column, url=request.getfixturevalue("es_url"), metadata_columns=["category"])
    else:
        m = vk.FaissMirror(column, path=tmp_path / "doc.vkfaiss", kind=request.param.split("-")[1], metadata_columns=["category"])
    yield m
    if not m.closed:
        if m.backend == "elasticsearch":
            m.clear()  # keep a real cluster tidy
        m.close()


def _write_everything(env: SyncEnv) -> None:
    Doc = env.Doc

    def go(s: Session) -> None:
        s.add_all([Doc(id=i, category="ab"[i % 2], embedding=vec(i)) for i in range(1, 31)])
        s.commit()
        s.get(Doc, 1).embedding = vec(1, 1)
        s.get(Doc, 2).category = "c"
        s.delete(s.get(Doc, 3))
        s.execute(sa.update(Doc).where(Doc.id.between(10, 12)).values(embedding=vec(0, 2)))
        s.execute(sa.delete(Doc).where(Doc.id > 28))
        s.commit()

    env.orm(go)


def test_session_sync_into_a_real_mirror(env: SyncEnv, mirror: Any) -> None:
    env.attach([mirror])
    _write_everything(env)
    assert_matches(env, mirror)
    report = env.orm(lambda s: vks.verify(s, mirror))
    assert report.ok, report
    assert report.metadata_checked == isinstance(mirror, vk.FaissMirror)
    # nearest(via=) agrees with the mirror's own ranking
    q = vec(7, 5)
    expected = [pk for pk, _ in mirror.search(q, k=5, where={"category": "a"})]
    got = env.orm(
        lambda s: [d.id for d, _ in s.execute(vk.nearest(env.Doc.embedding, q, k=5, via=mirror, where={"category": "a"}))]
    )
    assert got == expected and len(got) == 5


def test_outbox_retry_and_repair_with_a_real_mirror(env: SyncEnv, mirror: Any) -> None:
    flaky = Recording(mirror, failing=True)
    env.attach([flaky], outbox=True, on_error="log")
    _write_everything(env)
    assert mirror.count() == 0 and len(env.outbox_rows(mirror)) > 0
    flaky.failing = False
    report = env.drain([flaky], now=10**10)
    assert report.ok and report.remaining == 0
    assert_matches(env, mirror)

    env.run(lambda c: c.execute(env.table.update().where(env.table.c.id == 5).values(embedding=vec(5, 9))))
    report = env.orm(lambda s: vks.verify(s, mirror))
    assert report.mismatched == [5]
    assert env.orm(lambda s: vks.verify(s, mirror, repair=True)).repaired
    assert env.orm(lambda s: vks.verify(s, mirror)).ok


def test_faiss_file_survives_a_reopen(sqlite_env: SyncEnv, tmp_path: Path) -> None:
    env = sqlite_env
    path = tmp_path / "doc.vkfaiss"
    with vk.FaissMirror(env.Doc.embedding, path=path, metadata_columns=["category"]) as mirror:
        env.attach([mirror], outbox=True)
        _write_everything(env)
        env.attachments.pop().detach()
    with vk.FaissMirror(env.Doc.embedding, path=path, metadata_columns=["category"]) as reopened:
        assert_matches(env, reopened)
        assert env.orm(lambda s: vks.verify(s, reopened)).ok
