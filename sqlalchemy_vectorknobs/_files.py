"""Durable file replacement: the one way the package rewrites a file a crash must not tear
(a Faiss mirror's snapshot, ``vk.migrate``'s state file)."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import BinaryIO

__all__ = ["fsync_directory", "replace_file"]


def fsync_directory(directory: Path) -> None:
    """Make a rename durable (POSIX); platforms that cannot open directories skip it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def replace_file(path: Path, write: Callable[[BinaryIO], None]) -> int:
    """Replace ``path`` with what ``write`` writes, atomically and durably; return the size in bytes.

    The content goes to a temporary file in the same directory, is fsynced and moved over ``path``
    with ``os.replace`` (keeping ``path``'s permissions), then the directory is fsynced: a crash
    leaves the old file or the new one, never a mix. Raises ``OSError`` (the temporary file
    removed, ``path`` unchanged) when any step fails.
    """
    directory = path.resolve().parent
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
            size = f.tell()
        with suppress(FileNotFoundError):
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_directory(directory)
    return size
