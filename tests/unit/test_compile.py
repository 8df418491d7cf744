"""SQL each dialect renders for types and operators (no database needed)."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.schema import CreateTable

import sqlalchemy_vectorknobs as vk

md = sa.MetaData()
doc = sa.Table(
    "doc",
    md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("v", vk.Vector(3)),
    sa.Column("h", vk.HalfVector(3)),
    sa.Column("b", vk.BitVector(8)),
)
sp = sa.Table("sp", md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("s", vk.SparseVector(30)))
PG, LITE = postgresql.psycopg.dialect(), sqlite.dialect()


def sql(stmt: sa.ClauseElement, dialect: object) -> str:
    return " ".join(str(stmt.compile(dialect=dialect)).split())


def test_ddl() -> None:
    assert "v vector(3), h halfvec(3), b bit(8)" in sql(CreateTable(doc), PG)
    assert "v VECTOR(3), h HALFVEC(3), b BITVECTOR(8)" in sql(CreateTable(doc), LITE)
    assert "s sparsevec(30)" in sql(CreateTable(sp), PG)
    with pytest.raises(vk.UnsupportedDialectError, match="^Column 'sp.s' uses SparseVector"):
        sql(CreateTable(sp), LITE)


@pytest.mark.parametrize(
    "method,pg,lite",
    [
        ("l2_distance", "(doc.v <-> ", "vec_distance_l2(doc.v, "),
        ("cosine_distance", "(doc.v <=> ", "vec_distance_cosine(doc.v, "),
        ("max_inner_product", "(doc.v <#> ", "(-vk_inner_product(doc.v, "),
        ("inner_product", "((doc.v <#> ", "vk_inner_product(doc.v, "),
        ("l1_distance", "(doc.v <+> ", "vec_distance_l1(doc.v, "),
    ],
)
def test_float_operators(method: str, pg: str, lite: str) -> None:
    stmt = sa.select(doc.c.id).order_by(getattr(doc.c.v, method)([1, 2, 3]))
    assert pg in sql(stmt, PG)
    assert lite in sql(stmt, LITE)


def test_bit_operators_and_percent_escaping() -> None:
    stmt = sa.select(doc.c.b.jaccard_distance("10101010"), doc.c.b.hamming_distance("10101010"))
    pg = sql(stmt, PG)
    assert "<%%>" in pg and "<~>" in pg  # pyformat drivers need the % doubled
    assert "vec_distance_hamming(vec_bit(doc.b), vec_bit(?))" in sql(stmt, LITE)


def test_selected_vectors_travel_in_binary_on_postgresql() -> None:
    stmt = sa.select(doc.c.v, doc.c.h, doc.c.b)
    assert sql(stmt, PG).startswith("SELECT vector_send(doc.v) AS v, halfvec_send(doc.h) AS h, varbit_send(doc.b) AS b")
    assert sql(stmt, LITE).startswith("SELECT doc.v AS v, doc.h AS h, doc.b AS b")


def test_bind_casts_only_where_the_driver_leaves_parameters_untyped() -> None:
    stmt = sa.select(doc.c.id).order_by(doc.c.v.l2_distance([1, 2, 3]))
    assert "<-> $1::vector(3))" in sql(stmt, postgresql.asyncpg.dialect())
    assert "<-> %(param_1)s::vector(3))" in sql(stmt, postgresql.psycopg2.dialect())
    assert "<-> %(param_1)s)" in sql(stmt, PG)  # psycopg 3: the binary dumper sends the type OID
    assert "vec_distance_l2(doc.v, ?)" in sql(stmt, LITE)


def test_literal_binds() -> None:
    stmt = sa.select(doc.c.v.l2_distance([1, 2, 3]))
    assert "'[1.0,2.0,3.0]'::vector(3)" in str(stmt.compile(dialect=PG, compile_kwargs={"literal_binds": True}))
    lit = str(stmt.compile(dialect=LITE, compile_kwargs={"literal_binds": True}))
    assert "X'0000803f0000004000004040'" in lit


def test_unsupported_dialect_at_compile_time() -> None:
    with pytest.raises(vk.UnsupportedDialectError, match="^Dialect 'mysql' is not supported"):
        sql(sa.select(doc.c.v.l2_distance([1, 2, 3])), mysql.dialect())
    with pytest.raises(vk.UnsupportedDialectError, match="SparseVector"):
        sql(sa.select(sp.c.s.l2_distance({1: 1.0})), LITE)


def test_str_of_a_statement_renders_as_on_postgresql() -> None:
    # print(stmt) / str(stmt) compile with SQLAlchemy's string dialect, which no database runs;
    # they raised UnsupportedDialectError before.
    assert " ".join(str(sa.select(doc.c.id).order_by(doc.c.v.cosine_distance([1, 2, 3])).limit(2)).split()) == (
        "SELECT doc.id FROM doc ORDER BY (doc.v <=> :param_1::vector(3)) LIMIT :param_2"
    )
    assert "v vector(3), h halfvec(3), b bit(8)" in " ".join(str(CreateTable(doc)).split())
    # (the parameter's name depends on the SQLAlchemy version and on the statements built before)
    nearest = re.sub(r":\w+::vector", ":q::vector", " ".join(str(vk.nearest(doc.c.v, [1, 2, 3], k=2)).split()))
    # (no index: exact search of the rows that have a vector with a cosine direction)
    assert "(doc.v <=> :q::vector(3)) AS distance" in nearest, nearest
    assert "WHERE doc.v IS NOT NULL" in nearest, nearest
    assert "ORDER BY vk_exact.distance LIMIT 2) AS anon_1 ON doc.id = anon_1.id ORDER BY anon_1.distance" in nearest, nearest
    assert str(sa.select(doc.c.v)) == "SELECT vector_send(doc.v) AS v \nFROM doc"


def test_statement_caching_reuses_compiled_sql() -> None:
    a = sa.select(doc.c.id).order_by(doc.c.v.l2_distance([1, 2, 3]))
    b = sa.select(doc.c.id).order_by(doc.c.v.l2_distance([4, 5, 6]))
    c = sa.select(doc.c.id).order_by(doc.c.v.cosine_distance([4, 5, 6]))
    assert a._generate_cache_key() == b._generate_cache_key()
    assert a._generate_cache_key() != c._generate_cache_key()


@pytest.mark.parametrize(
    ("precision", "k", "candidates", "ef_search"),
    [(None, 10, None, None), ("halfvec", 10, 100, 100), ("binary", 10, 400, 400), ("binary", 30, 1200, 1000)],
)
def test_quantized_indexes_widen_the_scan_for_their_candidates(
    precision: object, k: int, candidates: object, ef_search: object
) -> None:
    """A binary index proposes 40 * k (at least 400) candidates and HNSW is asked for as many."""
    t = sa.Table(
        f"q_{precision}", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True), sa.Column("v", vk.Vector(64))
    )
    vk.VectorIndex(f"q_{precision}_ix", t.c.v, distance="cosine", precision=precision)
    stmt = vk.nearest(t.c.v, [0.5] * 64, k=k)
    rendered = sql(stmt, PG)
    defaults = stmt.get_execution_options().get("vector_search_defaults", {})
    assert defaults.get("ef_search") == ef_search
    if candidates is not None:
        assert f"LIMIT {candidates})" in rendered and f"LIMIT {k})" in rendered
