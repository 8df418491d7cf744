"""Embedded columns survive every way SQLAlchemy and Alembic copy a table: ``Table.to_metadata`` /
``tometadata``, Alembic's create/drop-table ops, Alembic's batch copy of a model table, and
reflection + compare. The model/hash columns exist once, nothing of the declaration is in
``Table.info`` (which Alembic writes into migration files), the copy's embedded column is bound
to the copy's columns, and its vector and full-text indexes are ``VectorIndex`` /
``FullTextIndex`` copies (not plain ``Index`` objects)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import sqlalchemy_vectorknobs as vk
from sqlalchemy_vectorknobs.embedding.column import specs_of

pytest.importorskip("alembic", reason="needs the alembic extra")

from alembic.autogenerate import produce_migrations, render_python_code  # noqa: E402
from alembic.migration import MigrationContext  # noqa: E402
from alembic.operations import Operations  # noqa: E402
from alembic.operations import ops as alembic_ops  # noqa: E402

import alembic_ext  # noqa: E402

from .test_scenario import assert_shadows_in_step  # noqa: E402

COLUMNS = ["id", "title", "body", "category", "embedding", "embedding_model", "embedding_hash"]


def make_model() -> type:
    class Base(DeclarativeBase):
        pass

    class Ticket(Base):
        __tablename__ = "ticket"
        id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[str] = mapped_column(sa.String(200))
        body: Mapped[str] = mapped_column(sa.Text)
        category: Mapped[str] = mapped_column(sa.String(20))
        embedding = vk.embedded_column(vk.Vector(8), source=("title", "body"), embedder=vk.HashingEmbedder(8))
        __table_args__ = (
            vk.VectorIndex("ticket_vec", "embedding", m=12, metadata_columns=["category"]),
            vk.FullTextIndex("ticket_fts", "title", "body", config="simple"),
        )

    return Ticket


def runnable(code: str) -> str:
    """``render_python_code`` output (a function body, indented by four) as a module."""
    return "\n".join(line[4:] if line.startswith("    ") else line for line in code.splitlines())


def assert_one_embedded_column(table: sa.Table) -> None:
    assert [c.name for c in table.columns] == COLUMNS
    assert "vectorknobs.embedded_columns" not in table.info and repr(table.info) == "{}"
    (spec,) = specs_of(table)
    assert spec.column is table.c.embedding and spec.model_column is table.c.embedding_model
    assert [c.name for c in spec.source_columns] == ["title", "body"] and spec.source_columns[0] is table.c.title
    indexes = {ix.name: ix for ix in table.indexes}
    assert sorted(indexes) == ["ticket_fts", "ticket_vec"], indexes
    vector, text = indexes["ticket_vec"], indexes["ticket_fts"]
    assert isinstance(vector, vk.VectorIndex) and vector.vector_column is table.c.embedding
    assert vector.vector_options.metadata_columns == ("category",) and vector.vector_options.m == 12
    assert isinstance(text, vk.FullTextIndex) and text.text_columns == [table.c.title, table.c.body]
    assert text.fulltext_options.config == "simple"


@pytest.mark.parametrize("how", ["to_metadata", "tometadata", "to_metadata_schema", "twice"])
def test_table_copies_keep_one_embedded_column(how: str) -> None:
    table = make_model().__table__
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # tometadata is to_metadata's old name
        warnings.simplefilter("ignore", sa.exc.SADeprecationWarning)
        if how == "to_metadata":
            copy = table.to_metadata(sa.MetaData())
        elif how == "tometadata":
            copy = table.tometadata(sa.MetaData())
        elif how == "to_metadata_schema":
            copy = table.to_metadata(sa.MetaData(), schema="archive")
        else:
            copy = table.to_metadata(sa.MetaData()).to_metadata(sa.MetaData())
    assert_one_embedded_column(copy)
    assert_one_embedded_column(table)  # the original is untouched
    assert specs_of(table)[0] is not specs_of(copy)[0]


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_a_copied_table_creates_working_indexes(dialect: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """create_all of a to_metadata copy (here into another schema / database) builds the real
    indexes: vec0 and FTS5 with their triggers on SQLite, HNSW with its operator class and a
    partial WHERE on the copy's columns on PostgreSQL."""
    table = make_model().__table__
    sa.Index("ticket_title", table.c.title)  # an ordinary index is copied by SQLAlchemy as before
    if dialect == "sqlite":
        url = f"sqlite:///{tmp_path}/copy.db"
    else:  # vec0 indexes every row: the partial index is PostgreSQL's
        vk.VectorIndex("ticket_partial", table.c.embedding, distance="l2", where=table.c.category == "hw")
        url = request.getfixturevalue("fresh_pg_url").render_as_string(hide_password=False)
    copy = table.to_metadata(sa.MetaData())
    engine = vk.create_engine(url)
    try:
        copy.metadata.create_all(engine)
        with Session(engine) as session, session.begin():
            session.execute(copy.insert(), [{"id": 1, "title": "printer", "body": "paper jam", "category": "hw",
                                             "embedding": [1, 0, 0, 0, 0, 0, 0, 1]}])
        live = {i.name: i for i in vk.inspect_vectors(engine).indexes}
        assert "ticket_vec" in live and "ticket_title" not in live
        if dialect == "postgresql":
            assert live["ticket_vec"].opclass == "vector_cosine_ops" and live["ticket_vec"].options["m"] == "12"
            assert "category" in (live["ticket_partial"].where or "")
        else:
            assert_shadows_in_step(url)
    finally:
        engine.dispose()


def test_mixin_tables_each_get_their_companions() -> None:
    class Base(DeclarativeBase):
        pass

    class Embedded:
        title: Mapped[str] = mapped_column(sa.String(50))
        embedding = vk.embedded_column(vk.Vector(4), source="title", embedder=vk.HashingEmbedder(4))

    class A(Embedded, Base):
        __tablename__ = "a"
        id: Mapped[int] = mapped_column(primary_key=True)

    class B(Embedded, Base):
        __tablename__ = "b"
        id: Mapped[int] = mapped_column(primary_key=True)

    for model in (A, B):
        names = [c.name for c in model.__table__.columns]
        assert sorted(names) == ["embedding", "embedding_hash", "embedding_model", "id", "title"], names
        assert specs_of(model.__table__)[0].column is model.__table__.c.embedding


def test_autogenerate_renders_companions_as_plain_columns_and_runs(tmp_path: Path) -> None:
    """The create-table op and its reverse (Alembic copies the table for the reverse) render the
    companions once, as ordinary columns, with no info= and nothing that is not Python."""
    model = make_model()
    engine = vk.create_engine(f"sqlite:///{tmp_path}/app.db")
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={**alembic_ext.autogenerate_options(), "render_as_batch": True})
            script = produce_migrations(ctx, model.metadata)
            upgrade = render_python_code(script.upgrade_ops)
            downgrade = render_python_code(script.downgrade_ops)
        for name in ("embedding_model", "embedding_hash"):
            assert upgrade.count(f"sa.Column('{name}'") == 1, upgrade
        assert "info=" not in upgrade + downgrade and "<" not in upgrade + downgrade, upgrade + downgrade
        assert "op.drop_table('ticket')" in downgrade
        with engine.begin() as conn:  # ... and the rendered code runs
            namespace = {"op": Operations(MigrationContext.configure(conn)), "sa": sa, "sqlalchemy_vectorknobs": vk}
            exec(runnable(upgrade), namespace)  # noqa: S102
        with Session(engine) as session:
            session.add(model(id=1, title="printer", body="paper jam", category="hw"))
            session.commit()
        assert_shadows_in_step(str(engine.url))
    finally:
        engine.dispose()


def test_create_table_op_of_a_model_table_reverses() -> None:
    table = make_model().__table__
    op = alembic_ops.CreateTableOp.from_table(table)
    dropped = op.reverse().to_table()
    assert [c.name for c in dropped.columns] == COLUMNS


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/app.db"
    else:
        yield request.getfixturevalue("fresh_pg_url").render_as_string(hide_password=False)


def test_reflection_and_compare_find_nothing_to_do(url: str) -> None:
    """A database made by create_all from the model compares equal to the model."""
    model = make_model()
    engine = vk.create_engine(url)
    try:
        model.metadata.create_all(engine)
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts=alembic_ext.autogenerate_options())
            from alembic.autogenerate import compare_metadata

            assert compare_metadata(ctx, model.metadata) == []
    finally:
        engine.dispose()


def test_batch_copy_from_the_model_table(tmp_path: Path) -> None:
    """``batch_alter_table(copy_from=Model.__table__)`` copies a model table with an embedded
    column (its companions once), and the vec0 / FTS5 indexes follow the copy."""
    model = make_model()
    engine = vk.create_engine(f"sqlite:///{tmp_path}/app.db")
    try:
        model.metadata.create_all(engine)
        with Session(engine) as session:
            session.add_all([model(id=i, title=f"t{i}", body="paper jam", category="hw") for i in range(1, 4)])
            session.commit()
        with engine.begin() as conn:
            operations = Operations(MigrationContext.configure(conn))
            with operations.batch_alter_table("ticket", copy_from=model.__table__, recreate="always") as batch:
                batch.alter_column("title", type_=sa.String(300), existing_type=sa.String(200))
        with engine.connect() as conn:
            left = conn.exec_driver_sql("SELECT type, name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL").all()
        assert left == [], left  # no plain copies of the vector or full-text index
        assert [i.name for i in vk.inspect_vectors(engine).indexes] == ["ticket_vec"]
        assert_shadows_in_step(str(engine.url))
        with Session(engine) as session:
            session.add(model(id=9, title="scanner", body="glass cracked", category="hw"))
            session.commit()
            found = session.execute(vk.text_search(model, "cracked")).all()
            assert [t.id for t, _ in found] == [9]
        assert_shadows_in_step(str(engine.url))
    finally:
        engine.dispose()


def test_indexes_declared_with_column_objects_are_copied_too() -> None:
    """``VectorIndex("x", embedding)`` / ``FullTextIndex("f", title)`` with the class body's
    ``mapped_column()`` objects (not names): SQLAlchemy attaches such an index from inside the
    column's own attach event, where the copy-following listener could not be added then
    ("deque mutated during iteration"); it is added when the index is made."""

    class Base(DeclarativeBase):
        pass

    class Item(Base):
        __tablename__ = "item_objects"
        id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[str] = mapped_column(sa.String(200))
        embedding = mapped_column(vk.Vector(8), nullable=True)
        __table_args__ = (vk.VectorIndex("item_objects_vec", embedding, m=8), vk.FullTextIndex("item_objects_fts", title))

    copy = Item.__table__.to_metadata(sa.MetaData())
    kinds = {type(ix).__name__: ix for ix in copy.indexes}
    assert set(kinds) == {"VectorIndex", "FullTextIndex"}
    assert kinds["VectorIndex"].vector_column is copy.c.embedding and kinds["VectorIndex"].vector_options.m == 8
    assert list(kinds["FullTextIndex"].text_columns) == [copy.c.title]
