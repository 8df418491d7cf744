"""VectorIndex declarations: pgvector's limits refused at declaration, DDL each dialect renders."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.schema import CreateIndex, DropIndex

import sqlalchemy_vectorknobs as vk

PG, LITE = postgresql.psycopg.dialect(), sqlite.dialect()


def table(type_: vk.VectorType, *extra: sa.Column[Any], **index_kw: Any) -> tuple[sa.Table, vk.VectorIndex]:
    t = sa.Table(
        "doc",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("embedding", type_),
        *extra,
    )
    index = vk.VectorIndex("doc_idx", t.c.embedding, **index_kw)
    return t, index


@pytest.mark.parametrize(
    "type_,kw,message",
    [
        (vk.Vector(3000), {}, r"has 3000 dimensions, over the 2,000 pgvector allows in HNSW indexes on vector; index precision='halfvec'"),
        (vk.Vector(3), {"m": 200}, r"m=200 is out of range; pgvector accepts whole numbers 2 to 100\."),
        (vk.Vector(3), {"m": 1}, r"m=1 is out of range"),
        (vk.Vector(3), {"ef_construction": 2000}, r"ef_construction=2000 is out of range; pgvector accepts whole numbers 4 to 1000"),
        (vk.Vector(3), {"m": 32, "ef_construction": 40}, r"ef_construction=40 is below 2 \* m = 64"),
        (vk.Vector(3), {"method": "ivfflat", "lists": 40000}, r"lists=40000 is out of range; pgvector accepts whole numbers 1 to 32768"),
        (vk.Vector(3), {"method": "ivfflat", "m": 16}, r"m and ef_construction apply to HNSW"),
        (vk.Vector(3), {"lists": 10}, r"lists applies to IVFFlat"),
        (vk.Vector(3), {"method": "ivfflat", "distance": "l1"}, r"pgvector's IVFFlat indexes on vector support cosine, inner_product, l2"),
        (vk.Vector(3), {"method": "diskann"}, r"method 'diskann' is not known"),
        (vk.Vector(3), {"precision": "int8"}, r"precision 'int8' is not known"),
        (vk.Vector(3), {"distance": "hamming"}, r"cannot use hamming distance on Vector\(3\)"),
        (vk.Vector(), {}, r"needs a column with a declared dimension"),
        (vk.HalfVector(5000), {}, r"over the 4,000 pgvector allows in HNSW indexes on halfvec"),
        (vk.Vector(5000), {"precision": "halfvec"}, r"over the 4,000 pgvector allows in HNSW indexes on halfvec"),
        (vk.BitVector(64), {"distance": "jaccard", "method": "ivfflat"}, r"IVFFlat indexes on bit support hamming"),
        (vk.BitVector(64), {"distance": "hamming", "precision": "binary"}, r"precision='binary' on BitVector\(64\)"),
        (vk.SparseVector(100), {"method": "ivfflat"}, r"pgvector has no IVFFlat index for sparsevec columns"),
    ],
)
def test_invalid_declarations_fail_at_declaration(type_: vk.VectorType, kw: dict[str, Any], message: str) -> None:
    with pytest.raises(vk.InvalidIndexError, match=message) as info:
        table(type_, **kw)
    assert str(info.value).endswith(".") and "\n" not in str(info.value)


def test_valid_at_pgvector_limits() -> None:
    table(vk.Vector(2000), m=100, ef_construction=1000)
    table(vk.Vector(4000), precision="halfvec")
    table(vk.Vector(16000), precision="binary")
    table(vk.BitVector(64000), distance="hamming")


def test_metadata_columns_must_exist_and_be_not_null() -> None:
    with pytest.raises(vk.InvalidIndexError, match="names metadata column 'cat', which the table does not have"):
        table(vk.Vector(3), metadata_columns=["cat"])
    with pytest.raises(vk.InvalidIndexError, match="'cat', which is nullable; sqlite-vec metadata columns must be NOT NULL"):
        table(vk.Vector(3), sa.Column("cat", sa.String, nullable=True), metadata_columns=["cat"])


def test_declared_in_table_args_by_name() -> None:
    class Base(DeclarativeBase):
        pass

    class Doc(Base):
        __tablename__ = "doc"
        id: Mapped[int] = mapped_column(primary_key=True)
        embedding = mapped_column(vk.Vector(3000))
        __table_args__ = (vk.VectorIndex("doc_idx", "embedding", precision="halfvec"),)

    (index,) = Doc.__table__.indexes
    assert isinstance(index, sa.Index) and index.vector_column is Doc.__table__.c.embedding
    with pytest.raises(vk.InvalidIndexError, match="3000 dimensions"):

        class Bad(Base):
            __tablename__ = "bad"
            id: Mapped[int] = mapped_column(primary_key=True)
            embedding = mapped_column(vk.Vector(3000))
            __table_args__ = (vk.VectorIndex("bad_idx", "embedding"),)


def ddl(index: vk.VectorIndex, dialect: Any) -> str:
    return str(CreateIndex(index).compile(dialect=dialect))


@pytest.mark.parametrize(
    "type_,kw,expected",
    [
        (vk.Vector(3), {}, "CREATE INDEX doc_idx ON doc USING hnsw (embedding vector_cosine_ops) WITH (ef_construction = 128)"),
        (vk.Vector(3), {"m": 100}, "USING hnsw (embedding vector_cosine_ops) WITH (m = 100, ef_construction = 200)"),
        (vk.Vector(3), {"distance": "l2", "m": 8, "ef_construction": 32}, "USING hnsw (embedding vector_l2_ops) WITH (m = 8, ef_construction = 32)"),
        (vk.Vector(3), {"distance": "ip", "method": "ivfflat", "lists": 7}, "USING ivfflat (embedding vector_ip_ops) WITH (lists = 7)"),
        (vk.Vector(3), {"precision": "halfvec"}, "USING hnsw ((embedding::halfvec(3)) halfvec_cosine_ops)"),
        (vk.Vector(3), {"precision": "binary"}, "USING hnsw ((binary_quantize(embedding)::bit(3)) bit_hamming_ops)"),
        (vk.HalfVector(3), {"distance": "l1"}, "USING hnsw (embedding halfvec_l1_ops)"),
        (vk.BitVector(8), {"distance": "jaccard"}, "USING hnsw (embedding bit_jaccard_ops)"),
        (vk.SparseVector(30), {"distance": "ip"}, "USING hnsw (embedding sparsevec_ip_ops)"),
        (vk.Vector(3), {"concurrently": True}, "CREATE INDEX CONCURRENTLY doc_idx ON doc"),
    ],
)
def test_postgresql_ddl(type_: vk.VectorType, kw: dict[str, Any], expected: str) -> None:
    _, index = table(type_, **kw)
    assert expected in ddl(index, PG)


def test_partial_index_ddl() -> None:
    t, index = table(vk.Vector(3), sa.Column("cat", sa.String, nullable=False))
    t2, partial = table(vk.Vector(3), sa.Column("cat", sa.String, nullable=False), where=sa.text("cat = 'a'"))
    assert ddl(partial, PG).endswith("WHERE cat = 'a'")
    t3 = sa.Table("d3", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True), sa.Column("e", vk.Vector(3)), sa.Column("n", sa.Integer))
    expr = vk.VectorIndex("d3_idx", t3.c.e, where=t3.c.n > 5)
    assert ddl(expr, PG).endswith("WHERE n > 5")


def test_sqlite_ddl_is_a_vec0_table() -> None:
    _, index = table(vk.Vector(3), sa.Column("cat", sa.String, nullable=False), distance="l2", metadata_columns=["cat"])
    assert ddl(index, LITE) == (
        'CREATE VIRTUAL TABLE "doc_idx" USING vec0(id integer primary key, embedding float[3] distance_metric=l2, cat text)'
    )
    assert str(DropIndex(index).compile(dialect=LITE)) == 'DROP TABLE IF EXISTS "doc_idx"'
    _, binary = table(vk.Vector(16), precision="binary")
    assert "embedding bit[16]" in ddl(binary, LITE)


@pytest.mark.parametrize(
    "kw,message",
    [
        ({"distance": "ip"}, "vec0 supports l2, cosine and l1"),
        ({"where": "id > 3"}, "cannot be partial"),
        ({"precision": "binary"}, "cannot quantize 3 dimensions to bits: .* needs a multiple of 8"),
    ],
)
def test_sqlite_refuses_what_vec0_cannot_do(kw: dict[str, Any], message: str) -> None:
    _, index = table(vk.Vector(3), **kw)
    with pytest.raises(vk.UnsupportedDialectError, match=message):
        ddl(index, LITE)


def test_plain_indexes_are_untouched() -> None:
    t = sa.Table("x", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True), sa.Column("n", sa.Integer))
    index = sa.Index("x_n", t.c.n, postgresql_using="brin")
    assert str(CreateIndex(index).compile(dialect=PG)) == "CREATE INDEX x_n ON x USING brin (n)"
    assert str(CreateIndex(index).compile(dialect=LITE)) == "CREATE INDEX x_n ON x (n)"


@pytest.mark.parametrize("order", [("l2", "cosine", "ip"), ("cosine", "ip", "l2"), ("ip", "l2", "cosine")])
def test_a_search_naming_no_distance_uses_the_first_declared_index(order: tuple[str, ...]) -> None:
    """A column with several indexes: searches without distance= use the first declared
    full-precision one, on the table and on its copies (a table's indexes are a set: this was
    whichever the set yielded first, so the same query searched by l2 in one process and by
    cosine in another)."""
    from sqlalchemy_vectorknobs.query import find_index

    md = sa.MetaData()
    t = sa.Table(
        "several",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("e", vk.Vector(3)),
        vk.VectorIndex("several_bin", "e", distance="l1", precision="binary"),
        *[vk.VectorIndex(f"several_{d}", "e", distance=d) for d in order],
    )
    want = vk.Distance.parse(order[0])
    assert find_index(t.c.e, None).vector_options.distance is want
    assert find_index(t.to_metadata(sa.MetaData()).c.e, None).vector_options.distance is want
    assert find_index(t.c.e, vk.Distance.parse(order[1])).name == f"several_{order[1]}"
