"""The interface every dialect module implements (``postgresql.py``, ``sqlite.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Protocol

from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.engine.interfaces import Dialect

if TYPE_CHECKING:
    from ..comparator import VectorBind, VectorDistance, VectorOutput
    from ..inspection import VectorInventory
    from ..types import VectorType


class DialectSupport(Protocol):
    """What the rest of the package may ask of a dialect."""

    name: str

    def col_spec(self, type_: VectorType) -> str:
        """DDL type for a vector column (raise UnsupportedDialectError if it cannot be stored)."""

    def bind_processor(self, type_: VectorType, dialect: Dialect) -> Callable[[Any], Any] | None:
        """Validate and encode Python values for the driver."""

    def result_processor(self, type_: VectorType, dialect: Dialect) -> Callable[[Any], Any] | None:
        """Decode driver values into numpy arrays."""

    def literal_processor(self, type_: VectorType, dialect: Dialect) -> Callable[[Any], str] | None:
        """Render a value as an inline SQL literal (offline SQL, literal_binds)."""

    def render_output(self, compiler: Any, element: VectorOutput, **kw: Any) -> str:
        """SQL for a selected vector column."""

    def render_bind(self, compiler: Any, element: VectorBind, **kw: Any) -> str:
        """SQL for a vector parameter (a cast where the driver would leave it untyped)."""

    def render_distance(self, compiler: Any, element: VectorDistance, **kw: Any) -> str:
        """SQL for a distance operator (raise UnsupportedDialectError if not evaluable)."""

    def prepare_engine_kwargs(self, url: URL, kwargs: dict[str, Any]) -> None:
        """Adjust create_engine keyword arguments before the engine exists."""

    def setup_engine(self, engine: Engine) -> None:
        """Attach per-connection setup (extensions, codecs) and reflection to an engine."""

    def before_create_table(self, table: Any, connection: Connection) -> None:
        """Run before CREATE TABLE of a table with vector columns."""

    def inspect(self, connection: Connection) -> VectorInventory:
        """Report extension version, vector columns and vector indexes."""
