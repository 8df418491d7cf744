"""``mirror_from_config``: a mirror built from a dict or a URL-like string, for settings files and environment variables.

::

    import sqlalchemy_vectorknobs as vk

    vk.mirror_from_config({"backend": "faiss", "column": "myapp.models:Doc.embedding",
                           "path": "/var/lib/myapp/doc.vkfaiss", "kind": "hnsw", "m": 32})
    vk.mirror_from_config("faiss:////var/lib/myapp/doc.vkfaiss?kind=hnsw&m=32", column=Doc.embedding)
    vk.mirror_from_config("chroma:///chroma-data?collection=docs", column=Doc.embedding)
    vk.mirror_from_config("elasticsearch+https://user:secret@es.internal:9200/docs", column=Doc.embedding)
    vk.mirror_from_config("memory://", column=Doc.embedding)

A dict names its ``backend`` and the column (``"module:Class.attr"``, a mapped attribute or a
``Column``); every other key is a constructor argument of that backend. A string is a URL:

=====================================================  ==============================================
``memory://``                                          ``MemoryMirror``
``faiss://`` (in memory) / ``faiss:///relative/path``  ``FaissMirror(path=...)``; ``faiss:////abs/path``
                                                       for an absolute path (SQLAlchemy's ``sqlite://``
                                                       convention)
``chroma:///path``                                     ``ChromaMirror`` on an embedded PersistentClient
``chroma+http://host:8000`` (``+https``)               ``ChromaMirror`` on ``chromadb.HttpClient``
``elasticsearch+http://[user:pw@]host:9200/<index>``   ``ElasticsearchMirror(url=..., index=...)``;
(``+https``)                                           user and password become ``basic_auth``
=====================================================  ==============================================

Query parameters are constructor arguments, converted after the constructor's signature: whole
numbers, numbers, ``true``/``false``, comma-separated lists (``metadata_columns=category,lang``),
and JSON for dicts (``index_options={"type":"hnsw","m":32}``); ``column=module:Class.attr`` may
be given there too. Keyword arguments of :func:`mirror_from_config` (``column=``, ``client=``, ...)
are passed as they are and win over the configuration.

Third-party mirrors register under the entry point group ``sqlalchemy_vectorknobs.mirrors``: the
entry point's name is the backend name (and URL scheme), and it loads a class or factory called
as ``factory(column, **options)``; for a URL, ``options`` holds the query parameters and
``url=`` the URL itself. In the package's ``pyproject.toml``::

    [project.entry-points."sqlalchemy_vectorknobs.mirrors"]
    qdrant = "vk_qdrant:QdrantMirror"

The built-in names (memory, faiss, chroma, elasticsearch) cannot be taken over. Every mistake is
an :class:`~sqlalchemy_vectorknobs.exc.InvalidMirrorError` (a ``ValueError``) in one sentence.
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Callable, Mapping
from typing import Any, cast
from urllib.parse import parse_qsl, unquote, urlsplit

from .base import InvalidMirrorError

__all__ = ["ENTRY_POINT_GROUP", "available_backends", "mirror_from_config"]

#: The entry point group third-party mirrors register under.
ENTRY_POINT_GROUP = "sqlalchemy_vectorknobs.mirrors"

_BUILTIN = {
    "memory": ("memory", "MemoryMirror"),
    "faiss": ("faiss", "FaissMirror"),
    "chroma": ("chroma", "ChromaMirror"),
    "elasticsearch": ("elasticsearch", "ElasticsearchMirror"),
}
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _entry_points() -> dict[str, Any]:
    """Installed third-party mirror entry points by name (a seam the tests replace)."""
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_backends() -> list[str]:
    """The backend names :func:`mirror_from_config` knows: the built-in ones, then installed entry points."""
    return list(_BUILTIN) + sorted(name for name in _entry_points() if name not in _BUILTIN)


def _factory(backend: Any) -> Callable[..., Any]:
    if not isinstance(backend, str) or not backend:
        raise InvalidMirrorError(
            f"Mirror configuration backend {backend!r} is not a name; use one of {available_backends()}."
        )
    if backend in _BUILTIN:
        module, name = _BUILTIN[backend]
        factory: Callable[..., Any] = getattr(importlib.import_module(f"{__package__}.{module}"), name)
        return factory
    found = _entry_points().get(backend)
    if found is None:
        raise InvalidMirrorError(
            f"Mirror backend {backend!r} is not known; use one of {available_backends()} or install the package "
            f"that registers it under the entry point group '{ENTRY_POINT_GROUP}'."
        )
    try:
        loaded = found.load()
    except Exception as err:
        raise InvalidMirrorError(f"Mirror backend {backend!r} could not be loaded from its entry point ({err}).") from err
    if not callable(loaded):
        raise InvalidMirrorError(f"Mirror backend {backend!r} loads {loaded!r}, which is not a class or factory.")
    return cast("Callable[..., Any]", loaded)


def resolve_column(spec: Any) -> Any:
    """A column given as ``"module:Class.attr"`` (or ``"module:table.c.col"``), a mapped attribute or a Column."""
    if not isinstance(spec, str):
        return spec
    module_name, sep, path = spec.partition(":")
    if not sep or not module_name or not path:
        raise InvalidMirrorError(
            f"Mirror column {spec!r} is not of the form 'module:Class.attribute'; for example 'myapp.models:Doc.embedding'."
        )
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise InvalidMirrorError(f"Mirror column {spec!r} names module {module_name!r}, which cannot be imported ({err}).") from err
    for part in path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise InvalidMirrorError(f"Mirror column {spec!r} cannot be found: {part!r} is missing along {path!r}.") from None
    return target


def _parameters(factory: Callable[..., Any]) -> dict[str, inspect.Parameter] | None:
    """The keyword arguments ``factory`` takes after the column (None: it takes any)."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return None
    params = list(sig.parameters.values())
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {p.name: p for p in params[1:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _convert(owner: str, key: str, text: str, param: inspect.Parameter | None) -> Any:
    """A URL query value as the type the constructor's signature asks for."""
    hint = "" if param is None else str(param.annotation)
    default = None if param is None else param.default
    try:
        if "Mapping" in hint or "dict" in hint:
            value = json.loads(text)
            if not isinstance(value, dict):
                raise ValueError("not a JSON object")
            return value
        if "Sequence" in hint or "list" in hint or "tuple" in hint:
            return [part for part in (p.strip() for p in text.split(",")) if part]
        if "bool" in hint or isinstance(default, bool):
            lowered = text.lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            if "str" in hint:
                return text
            raise ValueError("not true or false")
        if hint.startswith("int") or "Optional[int]" in hint or (isinstance(default, int) and not isinstance(default, bool)):
            return int(text)
        if hint.startswith("float") or "Optional[float]" in hint or isinstance(default, float):
            return float(text)
    except ValueError as err:
        raise InvalidMirrorError(f"{owner} option {key}={text!r} cannot be read ({err}); check its type.") from err
    return text


def _check_keys(owner: str, options: Mapping[str, Any], params: dict[str, inspect.Parameter] | None) -> None:
    if params is None:
        return
    unknown = [key for key in options if key not in params]
    if unknown:
        raise InvalidMirrorError(f"{owner} does not take option {unknown[0]!r}; it takes {sorted(params)}.")


def _split_url(url: str) -> tuple[str, str, str, dict[str, str]]:
    """(backend, transport, rest of the URL, query options) of ``backend[+transport]://rest?query``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, sep, rest = url.partition(":")
        if not sep or rest:
            raise InvalidMirrorError(f"Mirror URL {url!r} has no scheme; write it like 'faiss:///path?kind=hnsw'.")
    backend, _, transport = scheme.lower().partition("+")
    rest, _, query = rest.partition("?")
    options: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key in options:
            raise InvalidMirrorError(f"Mirror URL {url!r} gives option {key!r} twice; give it once.")
        options[key] = value
    return backend, transport, rest, options


def _local_path(url: str, rest: str) -> str | None:
    """The path of ``scheme:///relative`` or ``scheme:////absolute`` (None for ``scheme://``)."""
    if not rest:
        return None
    if not rest.startswith("/"):
        raise InvalidMirrorError(
            f"Mirror URL {url!r} has a host but this backend takes a local path; write 'scheme:///relative/path' "
            "or 'scheme:////absolute/path'."
        )
    return unquote(rest[1:]) or None


def _from_url(url: str, column: Any, overrides: dict[str, Any]) -> Any:
    backend, transport, rest, query = _split_url(url)
    factory = _factory(backend)
    owner = f"Mirror URL {url!r}"
    params = _parameters(factory)
    options: dict[str, Any] = {}
    col_spec = query.pop("column", None)
    for key, text in query.items():
        options[key] = _convert(owner, key, text, None if params is None else params.get(key))
    if backend not in _BUILTIN:
        options["url"] = url
    elif backend == "memory":
        if rest.strip("/"):
            raise InvalidMirrorError(f"{owner} has a path, but a memory mirror keeps nothing on disk; write 'memory://'.")
    elif backend == "faiss":
        if transport:
            raise InvalidMirrorError(f"{owner} names transport {transport!r}; Faiss mirrors are local: 'faiss:///path'.")
        options["path"] = _local_path(url, rest)
    elif backend == "chroma":
        if transport in ("http", "https"):
            if "client" not in overrides:
                options["client"] = _chroma_http_client(url, transport)
        elif transport:
            raise InvalidMirrorError(f"{owner} names transport {transport!r}; use chroma:///path, chroma+http:// or chroma+https://.")
        else:
            path = _local_path(url, rest)
            if path is None and "client" not in overrides:
                raise InvalidMirrorError(f"{owner} has no path; write 'chroma:///path/to/data' or pass client=.")
            if path is not None:
                options["path"] = path
    elif backend == "elasticsearch":
        parts = urlsplit(f"{transport or 'http'}://{rest}")
        if transport not in ("", "http", "https") or not parts.hostname:
            raise InvalidMirrorError(
                f"{owner} is not of the form 'elasticsearch+http://host:9200/index' (or +https)."
            )
        index = parts.path.strip("/")
        if "/" in index:
            raise InvalidMirrorError(f"{owner} has path {parts.path!r}; give one index name after the host.")
        if index:
            options["index"] = index
        host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
        if "client" not in overrides:
            options["url"] = f"{parts.scheme}://{host}"
            if parts.username is not None:
                auth = (unquote(parts.username), unquote(parts.password or ""))
                options["client_options"] = {**options.get("client_options", {}), "basic_auth": auth}
    options.update(overrides)
    return _build(factory, owner, col_spec if column is None else column, options, backend)


def _chroma_http_client(url: str, transport: str) -> Any:
    from .._optional import require

    chromadb = require("chromadb", extra="chroma", feature="ChromaMirror")
    parts = urlsplit(url.split("+", 1)[1].split("?", 1)[0])
    if not parts.hostname:
        raise InvalidMirrorError(f"Mirror URL {url!r} has no host; write 'chroma+http://host:8000'.")
    return chromadb.HttpClient(host=parts.hostname, port=parts.port or 8000, ssl=transport == "https")


def _build(factory: Callable[..., Any], owner: str, column: Any, options: dict[str, Any], backend: str) -> Any:
    if column is None:
        raise InvalidMirrorError(f"{owner} names no column; add 'column': 'module:Class.attribute' or pass column=.")
    _check_keys(owner, options, _parameters(factory))
    if backend == "elasticsearch" and "client" in options:
        options.pop("url", None)
    return factory(resolve_column(column), **options)


def mirror_from_config(config: Mapping[str, Any] | str, *, column: Any = None, **options: Any) -> Any:
    """A mirror built from ``config``: a dict with ``backend`` (and ``column``) or a URL string.

    See the module docstring for the URL forms and the entry point group. ``column`` and
    ``options`` are passed to the constructor as they are and win over the configuration::

        mirror = vk.mirror_from_config(os.environ["DOC_MIRROR"], column=Doc.embedding)
        mirror = vk.mirror_from_config({"backend": "chroma", "column": "app.models:Doc.embedding",
                                        "path": "chroma-data", "metadata_columns": ["category"]})
    """
    if isinstance(config, str):
        return _from_url(config, column, options)
    if not isinstance(config, Mapping):
        raise InvalidMirrorError(
            f"Mirror configuration of type {type(config).__name__} is not usable; pass a dict with 'backend' or a URL string."
        )
    settings = dict(config)
    if "backend" not in settings:
        raise InvalidMirrorError(f"Mirror configuration {sorted(settings)} has no 'backend'; use one of {available_backends()}.")
    backend = settings.pop("backend")
    factory = _factory(backend)
    col = settings.pop("column", None) if column is None else column
    settings.pop("column", None)
    settings.update(options)
    return _build(factory, f"Mirror backend {backend!r}", col, settings, str(backend))
