"""``vectorknobs backfill``: embed the stale rows of a model with an ``embedded_column``."""

from __future__ import annotations

import argparse
import signal
from typing import Any

from ._common import CommandError, load_model, open_engine

__all__ = ["register"]


def register(sub: Any) -> None:
    bf = sub.add_parser(
        "backfill",
        help="embed the stale rows of a model with an embedded_column",
        description="Embed every stale row (missing vector, other model, changed text) in committed keyset batches.",
    )
    bf.add_argument("--database", "-d", required=True, help="SQLAlchemy URL, e.g. sqlite:///docs.db")
    bf.add_argument("--model", "-m", required=True, help="the mapped class as module:Class (module importable from here)")
    bf.add_argument("--batch-size", type=int, default=None, help="rows per batch (default: the column's batch_size)")
    bf.add_argument("--follow", action="store_true", help="keep running: embed new stale rows as they appear")
    bf.add_argument("--poll-interval", type=float, default=1.0, help="seconds between passes with --follow")
    bf.add_argument("--no-progress", action="store_true", help="no progress bar")
    bf.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from sqlalchemy.orm import Session, sessionmaker

    import sqlalchemy_vectorknobs as vk

    model = load_model(args.model)
    engine = open_engine(args.database)
    if args.batch_size is not None and args.batch_size < 1:
        raise CommandError(f"--batch-size {args.batch_size} is not a positive whole number.")
    if not args.follow:
        with Session(engine) as session:
            report = vk.backfill(session, model, batch_size=args.batch_size, progress=not args.no_progress)
        print(f"embedded {report.embedded} row(s) in {report.batches} batch(es); {len(report.failures)} batch(es) failed")
        for f in report.failures:
            print(f"  failed: {f.column} keys {f.first_key!r}..{f.last_key!r} ({f.rows} rows): {f.error}")
        return 0 if report.ok else 1
    worker = vk.Vectorizer(sessionmaker(engine), model, batch_size=args.batch_size, poll_interval=args.poll_interval)
    signal.signal(signal.SIGTERM, lambda *a: worker.stop(timeout=0))
    print(f"following {args.model}: embedding stale rows every {args.poll_interval:g}s (Ctrl-C to stop)", flush=True)
    try:
        worker.run()
    except KeyboardInterrupt:
        pass
    print(f"stopped after embedding {worker.embedded} row(s); {len(worker.errors)} row(s) gave up")
    return 0
