"""``vectorknobs bench``: run the benchmark suite (``benchmarks/run.py`` of a source checkout).

The suite is not part of the wheel: it lives next to the package in the repository. The command
looks for ``benchmarks/run.py`` beside the installed package (an editable install) and then in
the current directory, and runs it with this interpreter::

    vectorknobs bench --quick                         # smoke run on small data (CI)
    vectorknobs bench --json results.json --report docs/benchmarks.md
    vectorknobs bench --only hnsw filtered
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

from ._common import CommandError

__all__ = ["find_suite", "register", "run"]

def register(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="run the benchmark suite (plugin vs raw baselines; needs a source checkout)",
        description="Run benchmarks/run.py from the source checkout: every measurement side by side with its "
        "raw baseline, printed as ratios with the targets met or missed.",
    )
    p.add_argument("--quick", action="store_true", help="small data and 2 repeats: a smoke run")
    # The section names are benchmarks/run.py's to check (it lists them in its usage error).
    p.add_argument("--only", nargs="+", metavar="SECTION", help="run these sections (codec, hnsw, mirrors, ...)")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON")
    p.add_argument("--report", metavar="PATH", help="write the Markdown report (e.g. docs/benchmarks.md)")
    p.add_argument("--scale-1m", action="store_true", help="add the 1,000,000-row point to the scale section")
    p.add_argument("--note", help="a line about the machine for the report")
    p.set_defaults(run=run)


def find_suite() -> Path | None:
    """``benchmarks/run.py`` beside the package's source tree, else in the current directory."""
    from .. import __file__ as package_init

    for root in (Path(package_init).resolve().parent.parent, Path.cwd()):
        candidate = root / "benchmarks" / "run.py"
        if candidate.is_file():
            return candidate
    return None


def run(args: argparse.Namespace) -> int:
    suite = find_suite()
    if suite is None:
        raise CommandError(
            "benchmarks/run.py was not found next to the installed package or in the current directory; "
            "the benchmark suite comes with a source checkout of sqlalchemy-vectorknobs, not with the wheel."
        )
    argv = [sys.executable, str(suite)]
    if args.quick:
        argv.append("--quick")
    if args.only:
        argv += ["--only", *args.only]
    for option, value in (("--json", args.json), ("--report", args.report), ("--note", args.note)):
        if value:
            argv += [option, value]
    if args.scale_1m:
        argv.append("--scale-1m")
    return subprocess.call(argv)
