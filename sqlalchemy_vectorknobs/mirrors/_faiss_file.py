"""How a ``FaissMirror`` lives on disk: an atomic snapshot file plus an append-only journal beside it.

The snapshot (``<path>``) holds everything: a magic string, a JSON header (live ids, norms,
versions and tombstones, metadata, HNSW dead nodes, and ``seq``, the last journal record it
includes) and the index in Faiss's own format. It is written to a temporary file in the same
directory, fsynced, and moved over ``path`` with ``os.replace`` (then the directory is fsynced), so
a crash leaves the old snapshot or the new one, never a mix.

The journal (``<path>.journal``) makes each acknowledged write durable without rewriting the
snapshot: every applied ``upsert``/``delete`` is appended as one record and fsynced before the call
returns. A record is ``magic, payload length, seq, crc32`` followed by the payload (a JSON header
and the raw float32 vectors). Loading reads the snapshot and replays the records whose ``seq`` is
above the snapshot's; a record cut short by a crash (or failing its checksum) ends the journal and
is cut off. Once the journal outgrows the snapshot (at least :data:`MIN_JOURNAL_BYTES`), the next
write takes a new snapshot and empties the journal; a crash between the two leaves records the
snapshot already holds, which their ``seq`` skips.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .._files import replace_file
from .base import MirrorError

__all__ = ["MAGIC", "MIN_JOURNAL_BYTES", "Journal", "Record", "read_snapshot", "write_snapshot"]

MAGIC = b"VKFAISS\x01"
_HEADER_LEN = struct.Struct("<Q")
_RECORD = struct.Struct("<4sIQI")  # magic, payload length, seq, crc32 of the payload
_RECORD_MAGIC = b"VKJ1"
_JSON_LEN = struct.Struct("<I")
#: The journal is folded into a new snapshot once it is larger than the snapshot and than this.
MIN_JOURNAL_BYTES = 16 * 1024 * 1024


def write_snapshot(path: Path, header: dict[str, Any], index: Any, faiss: Any, owner: str) -> int:
    """Write the snapshot atomically; return its size in bytes."""
    body = json.dumps(header, separators=(",", ":")).encode("utf-8")

    def write(f: BinaryIO) -> None:
        f.write(MAGIC)
        f.write(_HEADER_LEN.pack(len(body)))
        f.write(body)
        faiss.write_index(index, faiss.PyCallbackIOWriter(f.write))

    try:
        return replace_file(path, write)
    except Exception as err:
        raise MirrorError(f"{owner} could not save to '{path}' ({err}); the previous file is unchanged.") from err


def read_snapshot(path: Path, faiss: Any, owner: str) -> tuple[dict[str, Any], Any]:
    """(header, index) of a snapshot file."""
    try:
        with open(path, "rb") as f:
            if f.read(len(MAGIC)) != MAGIC:
                raise MirrorError(f"File '{path}' is not a FaissMirror file; pass another path or delete it.")
            (size,) = _HEADER_LEN.unpack(f.read(_HEADER_LEN.size))
            header = json.loads(f.read(size).decode("utf-8"))
            index = faiss.read_index(faiss.PyCallbackIOReader(f.read))
    except MirrorError:
        raise
    except (OSError, ValueError, struct.error, RuntimeError) as err:
        raise MirrorError(f"{owner} could not read '{path}': {err}.") from err
    return header, index


@dataclass(frozen=True)
class Record:
    """One applied write: ``op`` is "upsert" or "delete"; vectors (float32) only for upserts."""

    seq: int
    op: str
    ids: list[Any]
    versions: list[int] | None
    gte: bool
    metadata: list[dict[str, Any]] | None
    vectors: np.ndarray | None


class Journal:
    """The append-only journal of one snapshot file (see the module docstring)."""

    def __init__(self, snapshot: Path, owner: str) -> None:
        self.path = snapshot.with_name(snapshot.name + ".journal")
        self._owner = owner
        self._file: BinaryIO | None = None

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def append(
        self,
        seq: int,
        op: str,
        ids: list[Any],
        versions: list[int] | None,
        gte: bool,
        metadata: list[dict[str, Any]] | None,
        vectors: np.ndarray | None,
        *,
        dim: int,
    ) -> None:
        """Append one record and fsync it (the write is durable when this returns)."""
        head = {"op": op, "ids": ids, "versions": versions, "gte": gte, "metadata": metadata, "dim": dim}
        body = json.dumps(head, separators=(",", ":")).encode("utf-8")
        payload = _JSON_LEN.pack(len(body)) + body
        if vectors is not None:
            payload += np.ascontiguousarray(vectors, dtype="<f4").tobytes()
        record = _RECORD.pack(_RECORD_MAGIC, len(payload), seq, zlib.crc32(payload)) + payload
        try:
            if self._file is None:
                self._file = open(self.path, "ab")
            self._file.write(record)
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as err:
            self.close()
            raise MirrorError(f"{self._owner} could not append to its journal '{self.path}': {err}.") from err

    def records(self) -> Iterator[Record]:
        """The complete records, in order; a torn or corrupt tail is cut off the file."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as err:
            raise MirrorError(f"{self._owner} could not read its journal '{self.path}': {err}.") from err
        offset = 0
        while offset + _RECORD.size <= len(data):
            magic, length, seq, crc = _RECORD.unpack_from(data, offset)
            start = offset + _RECORD.size
            payload = data[start : start + length]
            if magic != _RECORD_MAGIC or len(payload) != length or zlib.crc32(payload) != crc:
                break
            (json_len,) = _JSON_LEN.unpack_from(payload, 0)
            head = json.loads(payload[_JSON_LEN.size : _JSON_LEN.size + json_len].decode("utf-8"))
            raw = payload[_JSON_LEN.size + json_len :]
            vectors = np.frombuffer(raw, dtype="<f4").reshape(len(head["ids"]), head["dim"]) if raw else None
            yield Record(seq, head["op"], head["ids"], head["versions"], head["gte"], head["metadata"], vectors)
            offset = start + length
        if offset < len(data):
            self._cut(offset)

    def _cut(self, offset: int) -> None:
        try:
            with open(self.path, "r+b") as f:
                f.truncate(offset)
                f.flush()
                os.fsync(f.fileno())
        except OSError as err:
            raise MirrorError(f"{self._owner} could not cut the torn end off its journal '{self.path}': {err}.") from err

    def reset(self) -> None:
        """Empty the journal (after a snapshot that holds all of it)."""
        self.close()
        if self.path.exists():
            self._cut(0)

    def close(self) -> None:
        if self._file is not None:
            with suppress(OSError):
                self._file.close()
            self._file = None
