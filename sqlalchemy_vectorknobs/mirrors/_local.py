"""In-process bookkeeping shared by the mirrors that keep their state locally (memory, Faiss).

:class:`VersionMap` records the last applied version per id (tombstones included) and decides
whether a versioned write is stale; :class:`MetadataIndex` holds each id's metadata with an
inverted index, so a ``where`` filter becomes a set of ids without scanning every record.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

__all__ = ["MetadataIndex", "VersionMap"]


class VersionMap:
    """Last applied version per id; ids without one have never seen a versioned write."""

    def __init__(self) -> None:
        self._versions: dict[Any, int] = {}

    def __len__(self) -> int:
        return len(self._versions)

    def recorded(self, pk: Any) -> int | None:
        """The version last applied to ``pk`` (None if none)."""
        return self._versions.get(pk)

    def accepted_rows(self, ids: Sequence[Any], versions: Sequence[int] | None, gte: bool = False) -> list[int]:
        """The positions in ``ids`` (distinct) whose write, with the version at the same position,
        should be applied: all of them for an unversioned write (``versions`` None), else those
        whose version is newer than the one recorded for their id (``gte``: or equal to it, a
        rebuild's copy), or whose id has none. One loop for a whole batch, not a call per row."""
        if versions is None:
            return list(range(len(ids)))
        got = self._versions.get
        out = []
        for i, pk in enumerate(ids):
            current = got(pk)
            if current is None or versions[i] > current or (gte and versions[i] == current):
                out.append(i)
        return out

    def record(self, pk: Any, version: int | None) -> None:
        """Remember ``version`` for ``pk``; an unversioned write keeps what was recorded."""
        if version is not None:
            self._versions[pk] = version

    def update(self, pairs: Iterable[tuple[Any, int]]) -> None:
        """Record many (pk, version) pairs at once (versions already accepted)."""
        self._versions.update(pairs)

    def clear(self) -> None:
        self._versions.clear()

    def items(self) -> Iterator[tuple[Any, int]]:
        return iter(self._versions.items())

    def load(self, pairs: Iterable[tuple[Any, int]]) -> None:
        self._versions = {pk: int(v) for pk, v in pairs}

    def pick(self, ids: Iterable[Any]) -> dict[Any, int]:
        """The recorded version of each of ``ids`` that has one."""
        got = self._versions
        return {pk: got[pk] for pk in ids if pk in got}


def _key(value: Any) -> Any:
    # True == 1 in Python; a filter on a boolean column must not match the integer 1.
    return ("bool", value) if isinstance(value, bool) else value


class MetadataIndex:
    """Metadata dicts per id with postings ``{column: {value: {ids}}}`` for equality/IN filters."""

    def __init__(self, columns: tuple[str, ...]) -> None:
        self._columns = columns
        self._rows: dict[Any, dict[str, Any]] = {}
        self._postings: dict[str, dict[Any, set[Any]]] = {c: {} for c in columns}

    def get(self, pk: Any) -> dict[str, Any]:
        return self._rows.get(pk, {})

    def put(self, pk: Any, metadata: dict[str, Any]) -> None:
        """Replace ``pk``'s metadata (an empty dict stores nothing)."""
        self.put_many(((pk, metadata),))

    def put_many(self, pairs: Iterable[tuple[Any, dict[str, Any]]]) -> None:
        """:meth:`put` for many (pk, metadata) pairs: one loop without a call per row (a batch of
        a thousand rows is where a mirror's commit spends its bookkeeping)."""
        rows, postings = self._rows, self._postings
        for pk, metadata in pairs:
            if pk in rows:
                self.remove(pk)
            if not metadata:
                continue
            rows[pk] = dict(metadata)
            for col, value in metadata.items():
                key = _key(value)
                bucket = postings[col].get(key)
                if bucket is None:
                    postings[col][key] = {pk}
                else:
                    bucket.add(pk)

    def remove(self, pk: Any) -> None:
        old = self._rows.pop(pk, None)
        if not old:
            return
        for col, value in old.items():
            bucket = self._postings[col].get(_key(value))
            if bucket is not None:
                bucket.discard(pk)
                if not bucket:
                    del self._postings[col][_key(value)]

    def match(self, where: dict[str, tuple[Any, ...]]) -> set[Any]:
        """Ids whose metadata satisfies every ``column IN values`` condition (``where`` non-empty)."""
        result: set[Any] | None = None
        for col, values in sorted(where.items(), key=lambda kv: len(kv[1])):
            postings = self._postings[col]
            found: set[Any] = set()
            for v in values:
                found |= postings.get(_key(v), set())
            result = found if result is None else result & found
            if not result:
                return set()
        return result if result is not None else set()

    def clear(self) -> None:
        self._rows.clear()
        self._postings = {c: {} for c in self._columns}

    def items(self) -> Iterator[tuple[Any, dict[str, Any]]]:
        return iter(self._rows.items())
