"""``vectorknobs backfill``: embed the stale rows of a model's embedded_column, or of a table by reflection."""

from __future__ import annotations

import argparse
import signal
from typing import Any

from ._common import add_embedded_target_args, check_batch_size, embedded_target, open_engine

__all__ = ["register"]


def register(sub: Any) -> None:
    bf = sub.add_parser(
        "backfill",
        help="embed stale rows (missing vector, other model, changed text) of a model or a table",
        description=(
            "Embed every stale row (missing vector, other model, changed text) in committed keyset batches. "
            "Name the rows with --model module:Class, or without models with --table, --text-fields, "
            "--vector-field and --embedder (add the vector column and its companions with --add-column --dim N)."
        ),
        epilog=(
            "examples:\n"
            "  vectorknobs backfill -d sqlite:///app.db --model app.models:Doc --batch-size 256\n"
            "  vectorknobs backfill -d sqlite:///docs.db --table docs --text-fields title,content \\\n"
            "      --vector-field embedding --embedder minilm --batch-size 100 --add-column --dim 384"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_embedded_target_args(bf)
    bf.add_argument("--batch-size", type=int, default=None, help="rows per batch (default: the column's batch_size, 256)")
    bf.add_argument("--follow", action="store_true", help="keep running: embed new stale rows as they appear")
    bf.add_argument("--poll-interval", type=float, default=1.0, help="seconds between passes with --follow")
    bf.add_argument("--no-progress", action="store_true", help="no progress bar")
    bf.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from sqlalchemy.orm import Session, sessionmaker

    import sqlalchemy_vectorknobs as vk

    check_batch_size(args.batch_size)
    engine = open_engine(args.database)
    target = embedded_target(args, engine)
    what = args.model or args.table
    if not args.follow:
        with Session(engine) as session:
            report = vk.backfill(session, target, batch_size=args.batch_size, progress=not args.no_progress)
        print(f"embedded {report.embedded} row(s) in {report.batches} batch(es); {len(report.failures)} batch(es) failed")
        for f in report.failures:
            print(f"  failed: {f.column} keys {f.first_key!r}..{f.last_key!r} ({f.rows} rows): {f.error}")
        return 0 if report.ok else 1
    worker = vk.Vectorizer(sessionmaker(engine), target, batch_size=args.batch_size, poll_interval=args.poll_interval)
    signal.signal(signal.SIGTERM, lambda *a: worker.stop(timeout=0))
    print(f"following {what}: embedding stale rows every {args.poll_interval:g}s (Ctrl-C to stop)", flush=True)
    try:
        worker.run()
    except KeyboardInterrupt:
        pass
    print(f"stopped after embedding {worker.embedded} row(s); {len(worker.errors)} row(s) gave up")
    return 0
