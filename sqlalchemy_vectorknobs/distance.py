"""The ``Distance`` enum: the metric names shared by operators, indexes and mirrors."""

from __future__ import annotations

import enum

from .exc import InvalidDistanceError

__all__ = ["Distance"]


class Distance(str, enum.Enum):
    """A vector distance metric.

    ``Distance.parse`` accepts the enum itself, its value or an alias:

    >>> Distance.parse("euclidean") is Distance.L2
    True
    >>> Distance.parse("dot") is Distance.INNER_PRODUCT
    True
    """

    L2 = "l2"
    COSINE = "cosine"
    INNER_PRODUCT = "inner_product"
    L1 = "l1"
    HAMMING = "hamming"
    JACCARD = "jaccard"

    @classmethod
    def parse(cls, value: Distance | str) -> Distance:
        """Return the ``Distance`` named by ``value`` (case-insensitive, aliases allowed)."""
        if isinstance(value, Distance):
            return value
        if isinstance(value, str):
            found = _ALIASES.get(value.strip().lower())
            if found is not None:
                return found
        accepted = ", ".join(repr(a) for a in _ALIASES)
        raise InvalidDistanceError(f"Distance {value!r} is not known; accepted names are {accepted}.")

    @property
    def for_bits(self) -> bool:
        """True for the metrics defined on bit vectors (Hamming, Jaccard)."""
        return self in (Distance.HAMMING, Distance.JACCARD)


_ALIASES: dict[str, Distance] = {
    "l2": Distance.L2,
    "euclidean": Distance.L2,
    "cosine": Distance.COSINE,
    "inner_product": Distance.INNER_PRODUCT,
    "ip": Distance.INNER_PRODUCT,
    "dot": Distance.INNER_PRODUCT,
    "l1": Distance.L1,
    "manhattan": Distance.L1,
    "hamming": Distance.HAMMING,
    "jaccard": Distance.JACCARD,
}
