"""``vectorknobs demo``: semantic search over the Python standard library's docstrings.

Builds a SQLite database of the stdlib's docstrings (read from source, no download), embeds them
with all-MiniLM-L6-v2 through an embedded column (word hashing if the ``models`` extra is
missing), keeps a vec0 index, an FTS5 index and a Faiss mirror, and prints the answers to a few
questions. A second run reuses the database; ``--rebuild`` starts over. See docs/demo.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._common import CommandError

__all__ = ["register", "run"]

DEFAULT_DATABASE = "vectorknobs-demo.db"
DESCRIPTION = """\
Semantic search over the docstrings of Python's standard library.

Reads ~5,900 docstrings from the stdlib's source files (nothing is downloaded), stores them in a
SQLite file with a vec0 vector index and an FTS5 full-text index, embeds them with the offline
all-MiniLM-L6-v2 model (word hashing, with a notice, if the models extra is missing), keeps a
Faiss mirror next to the file, and prints the nearest documents for a few questions, then full
text against vectors against hybrid search. The first run embeds everything (minutes on a small
machine); later runs reuse the file and embed nothing. --rebuild starts over."""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="semantic search over Python's stdlib docstrings (SQLite + sqlite-vec, MiniLM, Faiss)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--database", metavar="PATH", default=DEFAULT_DATABASE,
                   help=f"SQLite file to build or reuse (default: ./{DEFAULT_DATABASE})")
    p.add_argument("--limit", metavar="N", type=int, default=None,
                   help="at most N docstrings, spread over every module (default: all, about 5,900)")
    p.add_argument("--embedder", choices=("minilm", "hashing"), default="minilm",
                   help="minilm: the offline all-MiniLM-L6-v2 (default); hashing: vk.HashingEmbedder (lexical)")
    p.add_argument("--query", metavar="TEXT", action="append", default=None,
                   help="a question to ask (repeatable; default: six built-in questions)")
    p.add_argument("-k", metavar="K", type=int, default=3, help="hits shown per question (default 3)")
    p.add_argument("--rebuild", action="store_true", help="drop the demo's tables and build them again")
    p.set_defaults(run=run)


def _database(value: str) -> Path:
    if value.startswith("sqlite:///"):
        value = value[len("sqlite:///"):]
    elif "://" in value:
        raise CommandError(f"--database takes the path of a SQLite file, not the URL {value!r}.")
    path = Path(value).expanduser().absolute()
    if path.is_dir():
        raise CommandError(f"--database {value!r} is a directory; pass the path of a SQLite file.")
    if not path.parent.resolve().is_dir():
        raise CommandError(f"--database {value!r}: the directory {str(path.parent)!r} does not exist.")
    return path


def run(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        raise CommandError(f"--limit {args.limit} is not a positive number of documents.")
    if args.k < 1 or args.k > 20:
        raise CommandError(f"-k {args.k} is not between 1 and 20.")
    queries = [q.strip() for q in args.query] if args.query else None
    if queries is not None and not all(queries):
        raise CommandError("--query needs some text to search for.")
    database = _database(args.database)
    from ..demo.app import DEFAULT_QUERIES, run_demo

    try:
        return run_demo(
            database,
            limit=args.limit,
            embedder_name=args.embedder,
            queries=queries or DEFAULT_QUERIES,
            rebuild=args.rebuild,
            k=args.k,
        )
    except KeyboardInterrupt:
        # vk.backfill commits each batch: what was embedded stays, and the next run embeds the rest.
        raise CommandError("interrupted; the batches embedded so far are kept and the next run resumes from there.") from None
