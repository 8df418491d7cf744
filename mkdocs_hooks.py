"""mkdocs hook: the docstrings use Sphinx cross-reference roles (:class:`Name`, :func:`name`, ...),
which mkdocstrings renders literally; keep the code span and drop the role prefix."""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:class|func|meth|attr|mod|exc|data|obj):(?=<code>)")


def on_page_content(html: str, **kwargs: Any) -> str:
    return _ROLE.sub("", html)
