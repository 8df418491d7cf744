"""Search over Python's own documentation: full text, vectors, both fused, and diverse results.

Runs on SQLite (FTS5 + sqlite-vec) with no server; pass a PostgreSQL URL to use tsvector + GIN and
pgvector instead::

    python examples/hybrid_search.py
    python examples/hybrid_search.py postgresql+psycopg://postgres@/postgres?host=/tmp/pg
    python examples/hybrid_search.py --minilm      # the real offline all-MiniLM-L6-v2 model

The corpus is the public class, function and method docstrings of ~170 standard-library modules
(real English, offline, ~2,800 documents; the first 800 with ``--minilm``). Vectors come from
``vk.HashingEmbedder`` (fast, but it only sees shared words, stop words included, so its
neighbours are often poor) or with ``--minilm`` from a real sentence-embedding model.

What it shows, printing each step:
1. a table with a ``FullTextIndex`` and a ``VectorIndex``, filled through the ORM (the vectors
   are made on flush by ``embedded_column``);
2. for a few questions, the best full-text matches (``text_search``), the nearest vectors
   (``near_text``) and both fused by reciprocal rank (``hybrid_search``), in one SQL statement
   that uses both indexes;
3. weighted fusion with a filter and a score threshold;
4. maximal marginal relevance (``mmr``): the same question answered from more modules.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import sys
import tempfile
import time
import warnings
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import sqlalchemy_vectorknobs as vk

MODULES = ["abc", "argparse", "array", "ast", "asyncio", "base64", "binascii", "bisect", "bz2", "calendar", "cmd", "code", "codecs", "codeop", "collections", "collections.abc", "colorsys", "compileall", "concurrent.futures", "configparser", "contextlib", "contextvars", "copy", "copyreg", "csv", "ctypes", "dataclasses", "datetime", "dbm", "decimal", "difflib", "dis", "doctest", "email", "email.message", "email.mime.text", "email.utils", "enum", "errno", "faulthandler", "filecmp", "fileinput", "fnmatch", "fractions", "ftplib", "functools", "gc", "getopt", "getpass", "gettext", "glob", "graphlib", "gzip", "hashlib", "heapq", "hmac", "html", "html.parser", "http.client", "http.cookies", "http.server", "imaplib", "importlib", "importlib.metadata", "inspect", "io", "ipaddress", "itertools", "json", "keyword", "linecache", "locale", "logging", "logging.handlers", "lzma", "mailbox", "math", "mimetypes", "modulefinder", "multiprocessing", "netrc", "numbers", "operator", "optparse", "os", "os.path", "pathlib", "pdb", "pickle", "pickletools", "pkgutil", "platform", "plistlib", "poplib", "pprint", "profile", "pstats", "py_compile", "pyclbr", "pydoc", "queue", "quopri", "random", "re", "reprlib", "rlcompleter", "runpy", "sched", "secrets", "selectors", "shelve", "shlex", "shutil", "signal", "site", "smtplib", "socket", "socketserver", "sqlite3", "ssl", "stat", "statistics", "string", "stringprep", "struct", "subprocess", "symtable", "sys", "sysconfig", "tabnanny", "tarfile", "tempfile", "textwrap", "threading", "timeit", "token", "tokenize", "trace", "traceback", "types", "typing", "unicodedata", "unittest", "unittest.mock", "urllib.parse", "urllib.request", "uuid", "venv", "warnings", "wave", "weakref", "webbrowser", "wsgiref.simple_server", "wsgiref.util", "xml.dom.minidom", "xml.etree.ElementTree", "xml.sax", "xmlrpc.client", "xmlrpc.server", "zipapp", "zipfile", "zipimport", "zlib", "zoneinfo"]

QUESTIONS = ["copy a file with its permissions", "parse a JSON string", "wait for a thread lock"]


def stdlib_corpus(limit: int = 3000) -> list[tuple[str, str, str, str]]:
    """``(module, kind, title, docstring)`` of distinct stdlib docstrings, in a fixed order."""
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
    return docs


def make_model(embedder: Any) -> Any:
    class Base(DeclarativeBase):
        pass

    class Doc(Base):
        __tablename__ = "example_search_docs"
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        module: Mapped[str] = mapped_column(sa.String(40))
        kind: Mapped[str] = mapped_column(sa.String(10))
        title: Mapped[str] = mapped_column(sa.String(200))
        body: Mapped[str | None] = mapped_column(sa.Text)
        embedding = vk.embedded_column(vk.Vector(embedder.dim), source=("title", "body"), embedder=embedder)
        __table_args__ = (
            vk.FullTextIndex("example_search_docs_fts", "title", "body", config="english"),
            vk.VectorIndex("example_search_docs_vec", "embedding", distance="cosine", metadata_columns=["kind"]),
        )

    return Doc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url", nargs="?", help="database URL (default: a temporary SQLite file)")
    ap.add_argument("--minilm", action="store_true", help="use the offline all-MiniLM-L6-v2 model")
    ap.add_argument("--limit", type=int, help="at most this many docstrings (default 3000; 800 with --minilm)")
    args = ap.parse_args(argv)
    limit = args.limit or (800 if args.minilm else 3000)  # MiniLM embeds ~25 docstrings/s on 2 cores

    embedder: Any = vk.SentenceTransformerEmbedder("minilm") if args.minilm else vk.HashingEmbedder(1024)
    Doc = make_model(embedder)
    url = args.url or f"sqlite:///{tempfile.mkdtemp(prefix='vk-search-')}/docs.db"
    engine = vk.create_engine(url)
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda conn, cur, sql, *a: statements.append(sql))
    Doc.metadata.drop_all(engine)
    Doc.metadata.create_all(engine)

    docs = stdlib_corpus(limit)
    started = time.perf_counter()
    with Session(engine) as session:
        session.add_all(Doc(id=i, module=m, kind=k, title=t, body=b) for i, (m, k, t, b) in enumerate(docs, 1))
        session.commit()
    modules = len({m for m, _, _, _ in docs})
    print(f"1. loaded {len(docs)} docstrings from {modules} modules in {time.perf_counter() - started:.1f} s "
          f"on {engine.dialect.name} (embedder {embedder.name})")

    failures = 0
    with Session(engine) as session:
        for number, question in enumerate(QUESTIONS, 2):
            print(f"\n{number}. {question!r}")
            words = [d.title for d, _ in session.execute(vk.text_search(Doc, question, k=3))]
            print(f"   full text : {', '.join(words)}")
            near = [d.title for d, _ in session.execute(vk.near_text(Doc.embedding, question, k=3))]
            print(f"   vectors   : {', '.join(near)}")
            stmt = vk.hybrid_search(Doc, text=question, k=5, details=True)  # rows with distance and rank too
            statements.clear()
            hits = vk.search_results(session, stmt)
            sent = len(statements)
            print(f"   hybrid (RRF, {sent} SQL statement{'s' if sent != 1 else ''}):")
            for hit in hits:
                print(f"     {hit.rank}. {hit.score:.4f}  d={hit.distance:.3f}  {hit.entity.title}")
            failures += sent != 1 or len(hits) != 5

        plan = vk.explain(session, vk.hybrid_search(Doc, text=QUESTIONS[0], k=5))
        fts_used = "example_search_docs_fts" in plan.plan
        print(f"\n   indexes in the hybrid plan: vector {plan.vector_indexes_used}, full text "
              f"{'example_search_docs_fts' if fts_used else 'none (a table this small may be scanned)'}")
        if engine.dialect.name == "sqlite":  # PostgreSQL may rightly prefer a scan of a small table
            failures += plan.vector_indexes_used != ["example_search_docs_vec"] or not fts_used

        question = "read lines from a text file"
        print(f"\n5. weighted fusion (0.7 text, 0.3 vector), functions only, score >= 0.5: {question!r}")
        stmt = vk.hybrid_search(Doc, text=question, k=5, fusion="weighted", weights=(0.7, 0.3), match="any",
                             where=Doc.kind == "function", min_score=0.5)
        hits = vk.search_results(session, stmt)
        for hit in hits:
            print(f"     {hit.rank}. {hit.score:.3f}  {hit.entity.kind:<8} {hit.entity.title}")
        failures += not hits or any(h.entity.kind != "function" or h.score < 0.5 for h in hits)

        question = "compress data"
        q = embedder.embed([question])[0]
        plain = [d for d, _ in session.execute(vk.nearest(Doc.embedding, q, k=6))]
        diverse = [d for d, _ in vk.mmr(session, Doc.embedding, q, k=6, lambda_=0.3)]
        print(f"\n6. {question!r}: nearest 6 come from {len({d.module for d in plain})} module(s), "
              f"vk.mmr(lambda_=0.3) from {len({d.module for d in diverse})}")
        print(f"   nearest: {', '.join(d.title for d in plain)}")
        print(f"   mmr    : {', '.join(d.title for d in diverse)}")
        same = [d.id for d, _ in vk.mmr(session, Doc.embedding, q, k=6, lambda_=1.0)] == [d.id for d in plain]
        print(f"   vk.mmr(lambda_=1) equals nearest: {'yes' if same else 'no'}")
        failures += not same
    engine.dispose()
    print("\nOK" if not failures else "\nCHECKS FAILED")
    return 1 if failures else 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main(sys.argv[1:]))
