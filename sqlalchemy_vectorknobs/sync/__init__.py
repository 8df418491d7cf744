"""Session sync for mirrors: attach/detach, change collection, after-commit apply, outbox and drain, verify/rebuild.

::

    import sqlalchemy_vectorknobs as vk

    mirror = vk.FaissMirror(Doc.embedding, path="doc.faiss", metadata_columns=["category"])
    vk.attach(Session, mirrors=[mirror], outbox=True)     # collect → commit → apply
    ...
    vk.drain(engine, [mirror])                            # on start-up / from a worker
    vk.verify(session, mirror)                            # DriftReport(missing, extra, mismatched)

Importing this package attaches nothing; :func:`attach` installs listeners on the factory it is
given, and :meth:`Attachment.detach` removes them.
"""

from __future__ import annotations

from .attach import Attachment, MirrorSyncError, attach
from .outbox import DeadLetter, DrainReport, adrain, create_outbox, drain, outbox_metadata, outbox_table
from .rebuild import rebuild
from .verify import DriftReport, verify

__all__ = [
    "Attachment",
    "DeadLetter",
    "DrainReport",
    "DriftReport",
    "MirrorSyncError",
    "adrain",
    "attach",
    "create_outbox",
    "drain",
    "outbox_metadata",
    "outbox_table",
    "rebuild",
    "verify",
]
