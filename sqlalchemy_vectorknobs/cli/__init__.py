"""The ``vectorknobs`` command line: thin argument parsing around the public Python API.

argparse (standard library) keeps ``vectorknobs --help`` working with no optional extra
installed. Every failure exits with status 1 and one line on stderr saying why.

Commands so far:

* ``vectorknobs backfill --database URL --model module:Class [--batch-size N] [--follow]`` —
  :func:`sqlalchemy_vectorknobs.backfill` once, or with ``--follow`` a
  :class:`sqlalchemy_vectorknobs.Vectorizer` that keeps embedding stale rows as they appear
  (the worker for ``mode="deferred"``), until interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from typing import Any, Optional, Sequence

__all__ = ["main", "build_parser"]


class CommandError(Exception):
    """A reason to stop, printed as one line."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vectorknobs",
        description="Operate sqlalchemy-vectorknobs from the shell.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

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
    bf.set_defaults(run=_backfill)
    return parser


def _load_model(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise CommandError(f"--model {spec!r} is not of the form module:Class.")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise CommandError(f"cannot import module {module_name!r}: {err}") from err
    target = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise CommandError(f"module {module_name!r} has no attribute {attr!r}.")
        target = getattr(target, part)
    return target


def _engine(url: str) -> Any:
    import sqlalchemy as sa

    import sqlalchemy_vectorknobs as vk

    try:
        engine = vk.create_engine(url)
        with engine.connect():
            pass
    except sa.exc.ArgumentError as err:
        raise CommandError(f"bad database URL {url!r}: {err}") from err
    except sa.exc.DBAPIError as err:
        raise CommandError(f"cannot connect to {url!r}: {str(err.orig).strip().splitlines()[0]}") from err
    return engine


def _backfill(args: argparse.Namespace) -> int:
    from sqlalchemy.orm import Session, sessionmaker

    import sqlalchemy_vectorknobs as vk

    model = _load_model(args.model)
    engine = _engine(args.database)
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


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``vectorknobs`` console script and ``python -m sqlalchemy_vectorknobs``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="vectorknobs: %(message)s")
    try:
        return int(args.run(args))
    except CommandError as err:
        print(f"vectorknobs: error: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # noqa: BLE001 - the CLI promises one line, not a traceback
        from ..exc import VectorKnobsError

        if isinstance(err, VectorKnobsError) or isinstance(err, ImportError):
            print(f"vectorknobs: error: {err}", file=sys.stderr)
            return 1
        raise
