"""``python -m sqlalchemy_vectorknobs ...`` runs the ``vectorknobs`` command line."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
