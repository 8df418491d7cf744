"""``vectorknobs migrate``: copy tables with vectors between databases, resumably, then verify (``vk.migrate``)."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import FOUND_PROBLEMS, check_batch_size, open_engine

__all__ = ["register"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "migrate",
        help="copy tables with vectors between databases (batched, resumable), then verify counts and checksums",
        description=(
            "Copy tables with vectors from --source to --target (SQLite <-> PostgreSQL). Missing target tables are "
            "created from the source. Each batch commits with its resume marker, so a rerun after an interruption "
            "continues where the last one stopped. Then row counts and a vector checksum are compared on both sides "
            "(exit status 3 when they differ)."
        ),
        epilog=(
            "example:\n"
            "  vectorknobs migrate --source sqlite:///docs.db \\\n"
            "      --target postgresql+psycopg://app@localhost/app --table docs --batch-size 5000"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--source", "-s", required=True, help="SQLAlchemy URL to copy from")
    p.add_argument("--target", "-t", required=True, help="SQLAlchemy URL to copy to")
    p.add_argument("--table", action="append", dest="tables", metavar="TABLE",
                   help="a table to copy (repeatable; default: every table with a vector column)")
    p.add_argument("--batch-size", type=int, default=5000, help="rows per committed batch (default 5000)")
    p.add_argument("--no-resume", action="store_true", help="refuse to continue a table an earlier run started")
    p.add_argument("--no-verify", action="store_true", help="skip the count and checksum comparison")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import sqlalchemy_vectorknobs as vk

    check_batch_size(args.batch_size)
    source = open_engine(args.source, role="source")
    target = open_engine(args.target, role="target")
    report = vk.migrate(
        source, target, args.tables, batch_size=args.batch_size, progress=not args.no_progress,
        resume=not args.no_resume, verify=not args.no_verify,
    )
    print(report, flush=True)
    if not report.ok:
        print("verification FAILED: the target does not hold the source's rows", flush=True)
        return FOUND_PROBLEMS
    return 0
