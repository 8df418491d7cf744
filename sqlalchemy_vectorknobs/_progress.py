"""The one progress bar of long operations (backfill, migrate, verify, rebuild)."""

from __future__ import annotations

from typing import Any

__all__ = ["progress_bar"]


def progress_bar(total: int, enabled: bool, desc: str) -> Any:
    """A tqdm bar over ``total`` rows; when not ``enabled``, tqdm's silent stand-in (same methods)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="row", disable=not enabled)
