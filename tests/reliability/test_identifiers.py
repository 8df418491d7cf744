"""Identifier and option safety: hostile names and knob values cannot inject SQL or break out.

Every hostile string is used as a table name, a vector column's index name, a metric, a
``vector_search`` knob value, a full-text configuration, an Elasticsearch index name and a Chroma
collection name. Each use must either raise a clear error (``VectorKnobsError`` with a one-line
message) before anything reaches the database or server, or work with the name quoted exactly
(the object exists under precisely that name). Afterwards a canary table still holds its row and
the database has no object the test did not expect (no half-created index, no stray trigger).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import sqlalchemy_vectorknobs as vk

from ..conftest import Backend, unique
from .conftest import examples

HOSTILE = [
    "canary'; DROP TABLE vk_canary; --",
    'x"; DROP TABLE vk_canary; --',
    "a]b`c\"d'e",
    "semi;colon",
    "with space",
    "ünïcødé_名前_🚀",
    "nul\x00byte",
    "newline\nDROP TABLE vk_canary",
    "trailing_newline\n",
    "$$; DROP TABLE vk_canary; $$",
    "x" * 300,
    "Robert'); DROP TABLE vk_canary;--",
    "-- comment",
    "",
]
IDS = [f"h{i}" for i in range(len(HOSTILE))]


@pytest.fixture
def canary(backend: Backend) -> Iterator[Backend]:
    md = sa.MetaData()
    t = sa.Table("vk_canary", md, sa.Column("id", sa.Integer, primary_key=True))
    backend.run(lambda c: md.create_all(c))
    backend.run(lambda c: (c.execute(t.delete()), c.execute(t.insert(), [{"id": 42}])))
    yield backend
    assert backend.run(lambda c: c.execute(sa.select(t.c.id)).scalars().all()) == [42], "the canary table was touched"


def _objects(backend: Backend) -> set[str]:
    if backend.dialect == "sqlite":
        sql = "SELECT type || ':' || name FROM sqlite_master WHERE name NOT LIKE 'sqlite!_%' ESCAPE '!'"
    else:
        sql = (
            "SELECT c.relkind::text || ':' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' UNION SELECT 'trigger:' || tgname FROM pg_trigger WHERE NOT tgisinternal"
        )
    return set(backend.run(lambda c: c.exec_driver_sql(sql).scalars().all()))


@pytest.mark.parametrize("name", HOSTILE, ids=IDS)
def test_hostile_table_and_index_names_are_quoted_or_refused(canary: Backend, name: str, figures: Any) -> None:
    backend = canary
    before = _objects(backend)
    # Some test always needs a distinct table name; keep the hostile part intact at the start.
    table_name = name + uuid.uuid4().hex[:6] if name else name
    outcomes: list[str] = []
    for role in ("table", "index"):
        md = sa.MetaData()
        tname = table_name if role == "table" else unique("ident")
        iname = name if role == "index" else unique("ix")
        try:
            t = sa.Table(tname, md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("v", vk.Vector(3)))
            vk.VectorIndex(iname, t.c.v, distance="l2")
            backend.create(md)
        except (vk.VectorKnobsError, sa.exc.SQLAlchemyError, ValueError) as err:
            outcomes.append(f"{role}: refused ({type(err).__name__})")
            assert _objects(backend) == before, f"a refused {role} name left objects behind"
            figures("inputs_tried")
            continue
        try:
            backend.run(lambda c: c.execute(t.insert(), [{"id": 1, "v": [1, 0, 0]}, {"id": 2, "v": [0, 1, 0]}]))
            got = backend.run(lambda c: c.execute(sa.select(t.c.id).order_by(t.c.v.l2_distance([0, 1, 0])).limit(1)).scalar())
            assert got == 2
            # The object exists under exactly the name given (quoted, not mangled into other SQL).
            assert backend.run(lambda c: sa.inspect(c).has_table(tname))
            outcomes.append(f"{role}: quoted")
        finally:
            backend.drop(md)
        assert _objects(backend) == before, f"dropping the {role} left objects behind"
        figures("inputs_tried")
    assert len(outcomes) == 2


@pytest.mark.parametrize("name", HOSTILE, ids=IDS)
def test_hostile_metric_names_are_refused_before_sql(name: str, figures: Any) -> None:
    md = sa.MetaData()
    t = sa.Table(unique("m"), md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("v", vk.Vector(3)))
    for build in (
        lambda: vk.nearest(t.c.v, [1, 0, 0], distance=name),
        lambda: t.c.v.distance([1, 0, 0], name),
        lambda: vk.VectorIndex("ix_" + uuid.uuid4().hex[:6], t.c.v, distance=name),
        lambda: vk.VectorIndex("ix_" + uuid.uuid4().hex[:6], t.c.v, method=name),
        lambda: vk.VectorIndex("ix_" + uuid.uuid4().hex[:6], t.c.v, precision=name),
        lambda: vk.MemoryMirror(t.c.v, distance=name),
    ):
        with pytest.raises(vk.VectorKnobsError) as info:
            build()
        assert "\n" not in str(info.value).replace(repr(name), "")
        figures("inputs_tried")


KNOBS = ["ef_search", "probes", "max_probes", "iterative_scan", "max_scan_tuples", "scan_mem_multiplier"]
knob_values = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(max_size=20),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=3),
    st.sampled_from(["100", "100; RESET ALL", "relaxed_order", "strict_order", "off", "OFF", " off"]),
)


@pytest.fixture
def pg_knobs(request: pytest.FixtureRequest) -> Backend:
    from ..conftest import _get_backend

    return _get_backend(request, "pg-psycopg")


@examples(80)
@given(name=st.one_of(st.sampled_from(KNOBS), st.sampled_from(HOSTILE)), value=knob_values)
def test_search_knob_values_are_validated_and_bound(pg_knobs: Backend, name: str, value: Any, figures: Any) -> None:
    """Through ``search_settings`` and the ``vector_search`` execution option: the value is either
    refused with ``InvalidSearchSettingError`` or arrives in PostgreSQL exactly as given (bound
    with ``set_config``, never spliced into SQL), and only for that transaction."""
    from sqlalchemy_vectorknobs.dialects.postgresql_search import _gucs
    from sqlalchemy_vectorknobs.query import validate_search_settings

    try:
        checked = validate_search_settings({name: value})
    except vk.InvalidSearchSettingError:
        checked = None
    figures("inputs_tried")

    def go(conn: sa.Connection) -> None:
        with Session(bind=conn) as session:
            if checked is None:
                with pytest.raises(vk.InvalidSearchSettingError), vk.search_settings(session, **{name: value}):
                    pass
                with pytest.raises(vk.InvalidSearchSettingError):
                    session.execute(sa.select(sa.literal(1)).execution_options(vector_search={name: value}))
                return
            with vk.search_settings(session, **{name: value}):
                for guc, sent in _gucs(checked):  # IVFFlat maps strict_order to relaxed_order
                    got = session.execute(sa.text("SELECT current_setting(:g)"), {"g": guc}).scalar_one()
                    assert got.lower() == str(sent).lower() or float(got) == float(sent)

    pg_knobs.run(go)
    assert pg_knobs.run(lambda c: c.exec_driver_sql("SELECT to_regclass('vk_canary_knobs') IS NULL").scalar())


@pytest.mark.parametrize("name", HOSTILE, ids=IDS)
def test_hostile_fulltext_configs_are_refused(backend: Backend, name: str, figures: Any) -> None:
    class Base(DeclarativeBase):
        pass

    class Doc(Base):
        __tablename__ = unique("fts")
        id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[str] = mapped_column(sa.Text)

    plain = name.isascii() and name.replace("_", "a").isalnum() and not name[0].isdigit()
    if not plain:  # anything but a plain name is refused when declared
        with pytest.raises(vk.VectorKnobsError):
            vk.FullTextIndex("fts_" + uuid.uuid4().hex[:6], Doc.title, config=name)
        figures("inputs_tried")
    if "'" in name or not name.strip():
        with pytest.raises(vk.VectorKnobsError):
            vk.FullTextIndex("fts_" + uuid.uuid4().hex[:6], Doc.title, tokenize=name)
        figures("inputs_tried")
    # At query time too: refused before any SQL, unless it is a plain name (then it is bound inside a
    # quoted regconfig literal and PostgreSQL answers that no such configuration exists).
    backend.statements.clear()
    try:
        backend.session(lambda s: s.execute(vk.text_search(Doc, "hello", text_columns=[Doc.title], config=name)))
    except vk.VectorKnobsError:
        assert not backend.statements
    except sa.exc.DBAPIError as err:
        assert plain and "does not exist" in str(err.orig), err
    else:
        raise AssertionError(f"text_search accepted config={name!r}")
    figures("inputs_tried")


def test_hostile_fulltext_index_names_leave_nothing_half_created(canary: Backend, figures: Any) -> None:
    backend = canary
    before = _objects(backend)
    for name in HOSTILE:
        class Base(DeclarativeBase):
            pass

        class Doc(Base):
            __tablename__ = unique("ftsn")
            id: Mapped[int] = mapped_column(primary_key=True)
            title: Mapped[str] = mapped_column(sa.Text)

        try:
            vk.FullTextIndex(name, Doc.title)
            backend.create(Base.metadata)
        except (vk.VectorKnobsError, sa.exc.SQLAlchemyError, ValueError):
            pass
        else:
            backend.session(lambda s: s.add(Doc(id=1, title="hello world")))
            got = backend.session(lambda s: s.execute(vk.text_search(Doc, "hello", text_columns=[Doc.title])).all())
            assert [d.id for d, _ in got] == [1]
        finally:
            backend.drop(Base.metadata)
        assert _objects(backend) == before, f"FullTextIndex {name!r} left objects behind"
        figures("inputs_tried")


# ---------------------------------------------------------------------------- mirrors


class _Mirrored(DeclarativeBase):
    pass


class MDoc(_Mirrored):
    __tablename__ = "vk_ident_mdoc"
    id: Mapped[int] = mapped_column(primary_key=True)
    embedding = mapped_column(vk.Vector(3))


@pytest.fixture(scope="module")
def standin() -> Iterator[tuple[str, list[str]]]:
    from ..mirrors.es_standin import StandinServer

    requests: list[str] = []
    with StandinServer() as server:
        handler = server._server.RequestHandlerClass
        route = handler._route  # type: ignore[attr-defined]

        def counted(self: Any, method: str, parts: list[str], params: dict[str, str], raw: bytes) -> Any:
            requests.append(f"{method} /{'/'.join(parts)}")
            return route(self, method, parts, params, raw)

        handler._route = counted  # type: ignore[attr-defined]
        yield server.url, requests


@pytest.mark.parametrize("name", [*HOSTILE, "_leading", ".", "..", "UPPER", "a" * 256, "ok-name.v1_x"], ids=lambda n: repr(n)[:20])
def test_elasticsearch_index_names_are_refused_before_any_request(standin: tuple[str, list[str]], name: str, figures: Any) -> None:
    url, requests = standin
    requests.clear()
    figures("inputs_tried")
    try:
        mirror = vk.ElasticsearchMirror(MDoc.embedding, url=url, index=name)
    except vk.InvalidMirrorError as err:
        assert requests == [], f"requests were sent for a refused name: {requests}"
        assert "\n" not in str(err).replace(repr(name), "")
        return
    # Accepted: the index exists under exactly this name and round-trips a write and a search.
    try:
        mirror.upsert([1], [np.array([1, 0, 0], dtype=np.float32)])
        assert [pk for pk, _ in mirror.search(np.array([1, 0, 0], dtype=np.float32), 1)] == [1]
        assert all(name in r or "_bulk" in r or "_aliases" in r or r.startswith("HEAD") or "_search" in r or "_refresh" in r
                   for r in requests)
    except vk.MirrorError as err:  # a name the server refuses (e.g. over 255 bytes) is a clear MirrorError
        assert len(name.encode()) > 255, err
    finally:
        mirror.close()


@pytest.mark.parametrize("name", [*HOSTILE, "ab", "a" * 600, "ok_name-1.x"], ids=lambda n: repr(n)[:20])
def test_chroma_collection_names_are_refused_or_exact(tmp_path: Path, name: str, figures: Any) -> None:
    import chromadb
    from chromadb.config import Settings

    client = chromadb.PersistentClient(path=str(tmp_path), settings=Settings(anonymized_telemetry=False))
    figures("inputs_tried")
    try:
        mirror = vk.ChromaMirror(MDoc.embedding, client=client, collection=name)
    except (vk.InvalidMirrorError, vk.MirrorError) as err:
        assert [c.name if hasattr(c, "name") else c for c in client.list_collections()] == []
        assert "\n" not in str(err).replace(repr(name), "")
        return
    mirror.upsert([7], [np.array([0, 1, 0], dtype=np.float32)])
    assert [pk for pk, _ in mirror.search(np.array([0, 1, 0], dtype=np.float32), 1)] == [7]
    names = {c.name if hasattr(c, "name") else c for c in client.list_collections()}
    assert name in names
    mirror.close()
