"""A real-English corpus for search tests: Python standard library docstrings, loaded once per
database (SQLite + FTS5 + vec0, PostgreSQL + GIN + HNSW) and shared by the tests of this package.
"""

from __future__ import annotations

import importlib
import inspect
import warnings
from collections.abc import Iterator
from functools import cache
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import sqlalchemy_vectorknobs as vk
from sqlalchemy_vectorknobs.fulltext import FullTextIndex

from ..conftest import Backend, _get_backend

#: stdlib modules whose docstrings make the corpus (importing them has no side effects)
MODULES = ["abc", "argparse", "array", "ast", "asyncio", "base64", "binascii", "bisect", "bz2", "calendar", "cmd", "code", "codecs", "codeop", "collections", "collections.abc", "colorsys", "compileall", "concurrent.futures", "configparser", "contextlib", "contextvars", "copy", "copyreg", "csv", "ctypes", "dataclasses", "datetime", "dbm", "decimal", "difflib", "dis", "doctest", "email", "email.message", "email.mime.text", "email.utils", "enum", "errno", "faulthandler", "filecmp", "fileinput", "fnmatch", "fractions", "ftplib", "functools", "gc", "getopt", "getpass", "gettext", "glob", "graphlib", "gzip", "hashlib", "heapq", "hmac", "html", "html.parser", "http.client", "http.cookies", "http.server", "imaplib", "importlib", "importlib.metadata", "inspect", "io", "ipaddress", "itertools", "json", "keyword", "linecache", "locale", "logging", "logging.handlers", "lzma", "mailbox", "math", "mimetypes", "modulefinder", "multiprocessing", "netrc", "numbers", "operator", "optparse", "os", "os.path", "pathlib", "pdb", "pickle", "pickletools", "pkgutil", "platform", "plistlib", "poplib", "pprint", "profile", "pstats", "py_compile", "pyclbr", "pydoc", "queue", "quopri", "random", "re", "reprlib", "rlcompleter", "runpy", "sched", "secrets", "selectors", "shelve", "shlex", "shutil", "signal", "site", "smtplib", "socket", "socketserver", "sqlite3", "ssl", "stat", "statistics", "string", "stringprep", "struct", "subprocess", "symtable", "sys", "sysconfig", "tabnanny", "tarfile", "tempfile", "textwrap", "threading", "timeit", "token", "tokenize", "trace", "traceback", "types", "typing", "unicodedata", "unittest", "unittest.mock", "urllib.parse", "urllib.request", "uuid", "venv", "warnings", "wave", "weakref", "webbrowser", "wsgiref.simple_server", "wsgiref.util", "xml.dom.minidom", "xml.etree.ElementTree", "xml.sax", "xmlrpc.client", "xmlrpc.server", "zipapp", "zipfile", "zipimport", "zlib", "zoneinfo"]

DIM = 128
_HASHING = vk.HashingEmbedder(1024, seed=7)
_PROJECTION = np.random.default_rng(7).standard_normal((1024, DIM)).astype(np.float32)


def _dense(texts: list[str]) -> np.ndarray:
    # Word hashing (1024 sparse buckets) through a fixed random projection: similar texts stay
    # close, and unlike sparse hashed vectors no two distances tie exactly, so the candidate
    # lists the reference computes are the only possible ones.
    x = _HASHING.embed(texts) @ _PROJECTION
    return x / np.linalg.norm(x, axis=1, keepdims=True)


EMBEDDER = vk.CallableEmbedder(_dense, dim=DIM, name="dense-hashing")


@cache
def stdlib_corpus(limit: int = 3000) -> tuple[tuple[str, str, str, str], ...]:
    """``(module, kind, title, docstring)`` for up to ``limit`` distinct stdlib docstrings (>= 40 characters),
    in a fixed order: modules as listed, their public classes and functions by name, class members by name."""
    seen: set[str] = set()
    docs: list[tuple[str, str, str, str]] = []

    def add(module: str, kind: str, title: str, obj: Any) -> None:
        doc = inspect.getdoc(obj)
        if doc and len(doc) >= 40 and doc not in seen and len(docs) < limit:
            seen.add(doc)
            docs.append((module, kind, title, doc))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in MODULES:
            try:
                mod = importlib.import_module(name)
            except ImportError:
                continue
            add(name, "module", name, mod)
            for attr, obj in sorted(vars(mod).items()):
                if attr.startswith("_") or getattr(obj, "__module__", None) != mod.__name__:
                    continue
                if inspect.isclass(obj):
                    add(name, "class", f"{name}.{attr}", obj)
                    for member, value in sorted(vars(obj).items()):
                        if not member.startswith("_") and (inspect.isroutine(value) or isinstance(value, property)):
                            add(name, "method", f"{name}.{attr}.{member}", value)
                elif inspect.isroutine(obj):
                    add(name, "function", f"{name}.{attr}", obj)
    return tuple(docs)


class Base(DeclarativeBase):
    pass


class SearchDoc(Base):
    """One docstring: title = qualified name, body = the docstring, embedded from both."""

    __tablename__ = "search_doc"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    module: Mapped[str] = mapped_column(sa.String(40))
    kind: Mapped[str] = mapped_column(sa.String(10), nullable=False)
    title: Mapped[str] = mapped_column(sa.String(200))
    body: Mapped[str | None] = mapped_column(sa.Text)
    embedding = vk.embedded_column(vk.Vector(DIM), source=("title", "body"), embedder=EMBEDDER)
    __table_args__ = (
        FullTextIndex("search_doc_fts", "title", "body", config="english"),
        vk.VectorIndex("search_doc_vec", "embedding", distance="cosine", metadata_columns=["kind"]),
    )


def load_corpus(backend: Backend, model: Any = SearchDoc, limit: int = 3000) -> int:
    """Create ``model``'s table on ``backend`` and fill it with the corpus through the ORM (the
    embeddings are made on flush); returns the row count."""
    docs = stdlib_corpus(limit)
    backend.run(model.metadata.create_all)

    def fill(session: Any) -> int:
        session.add_all(
            model(id=i, module=module, kind=kind, title=title, body=body) for i, (module, kind, title, body) in enumerate(docs, 1)
        )
        session.commit()
        return len(docs)

    return backend.orm(fill)


@pytest.fixture(scope="module", params=["sqlite", "pg-psycopg"])
def corpus(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """The stdlib corpus in ``search_doc`` on SQLite and on PostgreSQL (dropped afterwards)."""
    backend = _get_backend(request, request.param)
    backend.run(Base.metadata.drop_all)
    count = load_corpus(backend)
    assert count >= 2000, count
    yield backend
    backend.run(Base.metadata.drop_all)
