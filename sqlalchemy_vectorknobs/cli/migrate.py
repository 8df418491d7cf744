"""``vectorknobs migrate``: copy tables with vectors between databases or into a mirror, resumably,
then verify (``vk.migrate``)."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import FOUND_PROBLEMS, CommandError, check_batch_size, open_engine

__all__ = ["register"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "migrate",
        help="copy tables with vectors between databases or into a mirror (batched, resumable), then verify",
        description=(
            "Copy tables with vectors from --source to --target (SQLite <-> PostgreSQL). Missing target tables are "
            "created from the source. Each batch commits with its resume marker, so a rerun after an interruption "
            "continues where the last one stopped. Then row counts and a vector checksum are compared on both sides "
            "(exit status 3 when they differ).\n\n"
            "With --target-mirror the rows of one table go into a mirror (Faiss, Chroma, Elasticsearch, ...) "
            "through its upsert, batch by batch; the resume marker is a JSON state file written after each batch "
            "is durable in the mirror (default: beside the Faiss file / in the Chroma directory; --state FILE). "
            "Then vk.verify compares every vector (exit status 3 on drift)."
        ),
        epilog=(
            "examples:\n"
            "  vectorknobs migrate --source sqlite:///docs.db \\\n"
            "      --target postgresql+psycopg://app@localhost/app --table docs --batch-size 5000\n"
            "  vectorknobs migrate --source sqlite:///docs.db \\\n"
            "      --target-mirror 'faiss:///docs.vkfaiss?metadata_columns=category' --table docs --vector-field embedding\n"
            "  vectorknobs migrate --source postgresql+psycopg://app@localhost/app --target-mirror mirrors.toml"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--source", "-s", required=True, help="SQLAlchemy URL to copy from")
    to = p.add_mutually_exclusive_group(required=True)
    to.add_argument("--target", "-t", help="SQLAlchemy URL to copy to")
    to.add_argument(
        "--target-mirror", metavar="MIRROR",
        help="a mirror URL (faiss:///docs.vkfaiss, chroma:///dir?collection=docs, ...) or a mirror config file "
        "(.toml/.json, as for `vectorknobs mirror`) to copy into",
    )
    p.add_argument("--table", action="append", dest="tables", metavar="TABLE",
                   help="a table to copy (repeatable; default: every table with a vector column); with --target-mirror "
                   "the mirrored table, reflected from the source")
    g = p.add_argument_group("with --target-mirror")
    g.add_argument("--vector-field", help="the vector column of --table (default: its only vector column)")
    g.add_argument("--schema", help="schema of --table")
    g.add_argument("--column", help="the mirrored column as module:Class.attr (instead of --table)")
    g.add_argument("--state", metavar="FILE", help="the JSON file holding the resume marker (default: beside the mirror's files)")
    p.add_argument("--batch-size", type=int, default=5000, help="rows per committed batch (default 5000)")
    p.add_argument("--no-resume", action="store_true",
                   help="refuse to continue a table an earlier run started (into a mirror: copy every row again)")
    p.add_argument("--no-verify", action="store_true", help="skip the verification")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def _finish(report: Any) -> int:
    print(report, flush=True)
    if not report.ok:
        print("verification FAILED: the target does not hold the source's rows", flush=True)
        return FOUND_PROBLEMS
    return 0


def run(args: argparse.Namespace) -> int:
    import sqlalchemy_vectorknobs as vk

    check_batch_size(args.batch_size)
    if args.target_mirror is None:
        used = [opt for opt, value in (("--vector-field", args.vector_field), ("--schema", args.schema), ("--column", args.column),
                                       ("--state", args.state)) if value]
        if used:
            raise CommandError(f"{used[0]} goes with --target-mirror, not --target.")
    source = open_engine(args.source, role="source")
    if args.target_mirror is None:
        target = open_engine(args.target, role="target")
        return _finish(vk.migrate(
            source, target, args.tables, batch_size=args.batch_size, progress=not args.no_progress,
            resume=not args.no_resume, verify=not args.no_verify,
        ))
    mirrors = _target_mirrors(args, source)
    try:
        report = vk.MigrateReport()
        for mirror in mirrors:
            report.tables += vk.migrate(
                source, target_mirror=mirror, state=args.state, batch_size=args.batch_size,
                progress=not args.no_progress, resume=not args.no_resume, verify=not args.no_verify,
            ).tables
    finally:
        for mirror in mirrors:
            mirror.close()
    return _finish(report)


def _target_mirrors(args: argparse.Namespace, engine: Any) -> list[Any]:
    """The mirror(s) of --target-mirror, bound to --column or the reflected --table's vector column."""
    from .mirror import load_mirrors

    if args.tables and len(args.tables) > 1:
        raise CommandError("--target-mirror copies one table; give --table once.")
    table = args.tables[0] if args.tables else None
    if table is not None and args.column:
        raise CommandError("give either --column or --table, not both.")
    if args.vector_field and table is None:
        raise CommandError("--vector-field goes with --table.")
    vector_field = args.vector_field
    if table is not None and vector_field is None:
        vector_field = _only_vector_column(engine, table, args.schema)
    spec = args.target_mirror
    is_url = "://" in spec
    options = argparse.Namespace(
        config=None if is_url else spec, mirror=[spec] if is_url else [], name=[], column=args.column,
        table=table, vector_field=vector_field, schema=args.schema,
    )
    return load_mirrors(options, engine)


def _only_vector_column(engine: Any, table: str, schema: str | None) -> str:
    from ..reflected import reflect_table
    from ..types import VectorType

    names = [c.name for c in reflect_table(engine, table, schema=schema).columns if isinstance(c.type, VectorType)]
    if len(names) != 1:
        found = f"vector columns {', '.join(names)}" if names else "no vector column"
        raise CommandError(f"table {table!r} has {found}; name the one to copy with --vector-field.")
    return names[0]
