"""Distance methods on vector columns and expressions; the SQL is asked of the dialect module.

Every vector column (and any expression of a vector type) gets the same methods on both
dialects::

    stmt = select(Doc).order_by(Doc.embedding.cosine_distance([0.1, 0.2, 0.3])).limit(10)
    stmt = select(Doc.id, Doc.embedding.distance(q, "l2").label("d"))

``max_inner_product`` is the *negative* dot product (pgvector's ``<#>``), so ascending order puts
the largest dot product first; ``inner_product`` is the positive dot product. ``distance(q,
"inner_product")`` means ``max_inner_product`` so that ``distance`` always sorts nearest-first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import literal
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import sqltypes
from sqlalchemy.sql.elements import ClauseElement, ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import UserDefinedType

from . import dialects
from .distance import Distance
from .exc import IncompatibleOperatorError

if TYPE_CHECKING:
    from .types import VectorType

__all__ = ["OPERATORS", "CosineDirection", "VectorBind", "VectorComparator", "VectorDistance", "VectorOutput"]

#: operator name -> the metric it measures
OPERATORS: dict[str, Distance] = {
    "l2": Distance.L2,
    "cosine": Distance.COSINE,
    "max_inner_product": Distance.INNER_PRODUCT,
    "inner_product": Distance.INNER_PRODUCT,
    "l1": Distance.L1,
    "hamming": Distance.HAMMING,
    "jaccard": Distance.JACCARD,
}
_BY_METRIC = {
    Distance.L2: "l2",
    Distance.COSINE: "cosine",
    Distance.INNER_PRODUCT: "max_inner_product",
    Distance.L1: "l1",
    Distance.HAMMING: "hamming",
    Distance.JACCARD: "jaccard",
}


class VectorDistance(ColumnElement[float]):
    """``left <op> right`` for one of :data:`OPERATORS`; rendered by the dialect module."""

    __visit_name__ = "vk_vector_distance"
    inherit_cache = True
    _traverse_internals = [
        ("left", InternalTraversal.dp_clauseelement),
        ("right", InternalTraversal.dp_clauseelement),
        ("operator", InternalTraversal.dp_string),
    ]

    def __init__(self, left: ColumnElement[Any], right: ColumnElement[Any], operator: str) -> None:
        self.left = left
        self.right = right
        self.operator = operator
        self.type = sqltypes.Float()
        # As a BinaryExpression does: an ORM attribute's marker makes select(Doc.v.l2_distance(q))
        # an ORM statement (autoflush before it runs; SQLAlchemy 2.0 needs it, 2.1 too for Query).
        self._propagate_attrs = left._propagate_attrs or right._propagate_attrs

    @property
    def metric(self) -> Distance:
        return OPERATORS[self.operator]

    @property
    def vector_type(self) -> VectorType:
        return self.left.type  # type: ignore[return-value]

    @property
    def _from_objects(self) -> Any:
        # Like a BinaryExpression: ``select(Doc.embedding.l2_distance(q))`` needs Doc's FROM.
        return [*self.left._from_objects, *self.right._from_objects]


class CosineDirection(ColumnElement[bool]):
    """True when ``column`` holds a vector with a cosine direction (``codec.cosine_searchable``):
    not NULL, and a float32 squared norm that is positive and finite. Rendered by the dialect
    module: a vector's cosine distance to itself is 0, and NaN (PostgreSQL) or NULL (sqlite-vec)
    exactly when it has no direction."""

    __visit_name__ = "vk_cosine_direction"
    inherit_cache = True
    _traverse_internals = [("column", InternalTraversal.dp_clauseelement)]

    def __init__(self, column: ColumnElement[Any]) -> None:
        self.column = column
        self.type = sqltypes.Boolean()

    @property
    def _from_objects(self) -> Any:
        return self.column._from_objects


class VectorOutput(ColumnElement[Any]):
    """A vector column as selected: the dialect picks the fastest form to send it back in."""

    __visit_name__ = "vk_vector_output"
    inherit_cache = True
    _traverse_internals = [("element", InternalTraversal.dp_clauseelement)]

    def __init__(self, element: ColumnElement[Any], type_: VectorType) -> None:
        self.element = element
        self.type = type_

    @property
    def vector_type(self) -> VectorType:
        return self.type  # type: ignore[return-value]

    @property
    def _from_objects(self) -> Any:
        return self.element._from_objects


class VectorBind(VectorOutput):
    """A vector parameter as sent: the dialect adds a cast where the driver leaves it untyped."""

    __visit_name__ = "vk_vector_bind"
    inherit_cache = True


@compiles(VectorDistance)
def _compile_distance(element: VectorDistance, compiler: Any, **kw: Any) -> str:
    return dialects.for_dialect(compiler.dialect).render_distance(compiler, element, **kw)


@compiles(CosineDirection)
def _compile_direction(element: CosineDirection, compiler: Any, **kw: Any) -> str:
    return dialects.for_dialect(compiler.dialect).render_cosine_direction(compiler, element, **kw)


@compiles(VectorOutput)
def _compile_output(element: VectorOutput, compiler: Any, **kw: Any) -> str:
    return dialects.for_dialect(compiler.dialect).render_output(compiler, element, **kw)


@compiles(VectorBind)
def _compile_bind(element: VectorBind, compiler: Any, **kw: Any) -> str:
    return dialects.for_dialect(compiler.dialect).render_bind(compiler, element, **kw)


class VectorComparator(UserDefinedType.Comparator[Any]):
    """The distance methods every vector column and expression carries."""

    def l2_distance(self, other: Any) -> VectorDistance:
        """Euclidean distance (pgvector ``<->``)."""
        return self._op("l2", other)

    def cosine_distance(self, other: Any) -> VectorDistance:
        """Cosine distance, ``1 - cos(a, b)`` (pgvector ``<=>``)."""
        return self._op("cosine", other)

    def max_inner_product(self, other: Any) -> VectorDistance:
        """Negative dot product (pgvector ``<#>``): ascending order = largest dot product first."""
        return self._op("max_inner_product", other)

    def inner_product(self, other: Any) -> VectorDistance:
        """Dot product (positive); order descending for most similar first."""
        return self._op("inner_product", other)

    def l1_distance(self, other: Any) -> VectorDistance:
        """Manhattan distance (pgvector ``<+>``)."""
        return self._op("l1", other)

    def hamming_distance(self, other: Any) -> VectorDistance:
        """Number of differing bits, for bit vectors (pgvector ``<~>``)."""
        return self._op("hamming", other)

    def jaccard_distance(self, other: Any) -> VectorDistance:
        """``1 - |a & b| / |a | b|``, for bit vectors (pgvector ``<%>``)."""
        return self._op("jaccard", other)

    def distance(self, other: Any, metric: Distance | str) -> VectorDistance:
        """The distance for ``metric`` (a :class:`Distance` or alias), always nearest-first ascending."""
        return self._op(_BY_METRIC[Distance.parse(metric)], other)

    def _op(self, operator: str, other: Any) -> VectorDistance:
        type_: VectorType = self.type  # type: ignore[assignment]
        metric = OPERATORS[operator]
        if metric not in type_.metrics:
            allowed = ", ".join(sorted(m.value for m in type_.metrics))
            raise IncompatibleOperatorError(
                f"{type_.subject} is a {type(type_).__name__}, which has no {metric.value} distance; "
                f"its distances are {allowed}."
            )
        if hasattr(other, "__clause_element__"):  # ORM attributes, aliased columns
            other = other.__clause_element__()
        right = other if isinstance(other, ClauseElement) else literal(other, type_)
        return VectorDistance(self.expr, right, operator)  # type: ignore[arg-type]
