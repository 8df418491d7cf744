"""``vectorknobs bench``: being written this session (issue 8/9); registered so the command list is stable."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import CommandError

__all__ = ["register"]


def register(sub: Any) -> None:
    p = sub.add_parser("bench", help="(not available yet)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    raise CommandError("'vectorknobs bench' is not available in this build yet.")
