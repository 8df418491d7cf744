"""Importing the package has no side effects: no heavy backends, no listeners."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ["faiss", "chromadb", "elasticsearch", "torch", "alembic", "sentence_transformers"]
DRIVERS = ["psycopg", "psycopg2", "asyncpg", "sqlite_vec", "pysqlite3", "pgvector"]

PROBE = """
import json, sys
from sqlalchemy.event import registry
before = len(registry._key_to_collection)
import sqlalchemy_vectorknobs as vk
after = len(registry._key_to_collection)
print(json.dumps({"modules": sorted(sys.modules), "listeners_added": after - before, "version": vk.__version__}))
"""


def test_import_leaves_backends_and_listeners_alone() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], check=True, capture_output=True, text=True).stdout
    report = json.loads(out)
    loaded = set(report["modules"])
    assert not [m for m in HEAVY + DRIVERS if m in loaded], "import pulled in optional backends"
    assert report["listeners_added"] == 0
    assert report["version"]


def test_public_names() -> None:
    import sqlalchemy_vectorknobs as vk

    for name in vk.__all__:
        assert getattr(vk, name) is not None
    for err in (
        vk.DimensionMismatchError,
        vk.InvalidVectorError,
        vk.VectorTypeError,
        vk.IncompatibleOperatorError,
        vk.InvalidDistanceError,
        vk.UnsupportedDialectError,
        vk.MissingDependencyError,
        vk.ExtensionError,
    ):
        assert issubclass(err, vk.VectorKnobsError)
    assert issubclass(vk.DimensionMismatchError, ValueError)
    assert issubclass(vk.UnsupportedDialectError, NotImplementedError)
    assert issubclass(vk.MissingDependencyError, ImportError)
    assert issubclass(vk.VectorTypeError, TypeError)


def test_alter_vector_column_reverses_both_ways() -> None:
    import sqlalchemy_vectorknobs as vk
    from alembic_ext.ops import AlterVectorColumnOp

    op = AlterVectorColumnOp("doc", "embedding", dim=768, existing_type=vk.Vector(384))
    back = op.reverse()
    assert repr(back.type_) == "Vector(384)" and repr(back.existing_type) == "Vector(768)"
    again = back.reverse()
    assert repr(again.type_) == "Vector(768)" and repr(again.existing_type) == "Vector(384)"
