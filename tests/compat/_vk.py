"""What sqlalchemy-vectorknobs returns where pgvector-python returns lists and strings.

pgvector-python's types return ``list[float]`` (vector, halfvec), ``str`` (bit) and ``SparseVector``;
vk returns a 1-D ``numpy.ndarray`` on every dialect and driver: float32 (Vector, and SparseVector
densified), float16 (HalfVector), bool (BitVector). These helpers assert that documented type and
give the value in pgvector-python's form, so the ported assertions compare the same numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def as_list(value: Any, dtype: Any = np.float32) -> list[float]:
    """A vk vector (1-D ndarray of ``dtype``) as the list pgvector-python returns."""
    assert isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype == dtype, (type(value), getattr(value, "dtype", None))
    return [float(x) for x in value.tolist()]


def as_bits(value: Any) -> str:
    """A vk bit vector (1-D bool ndarray) as the '0'/'1' string pgvector-python returns."""
    assert isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype == np.bool_, (type(value), getattr(value, "dtype", None))
    return "".join("1" if bit else "0" for bit in value.tolist())


def as_lists(values: Any, dtype: Any = np.float32) -> list[list[float]]:
    """An ``ARRAY(vk.Vector)`` value (a list of vk vectors) as pgvector-python's list of lists."""
    assert isinstance(values, list), type(values)
    return [as_list(v, dtype) for v in values]
