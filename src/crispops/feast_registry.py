"""Feast's file registry, written whole or not at all.

Feast 0.67's ``FileRegistryStore`` rewrites ``registry.db`` in place: it opens the file
for writing (which empties it), then writes the new registry. A process killed in
between (a materialization job stopped by its scheduler, a pod evicted) leaves an empty
file, and an empty file is a valid, empty registry protobuf: the next ``feast`` or
``crispops`` call sees no feature views, materializes nothing and reports no error.
Seen here: ``tests/integration/test_reliability.py`` kills materialization at moments
inside its run, and one kill landed in that window. crispops writes the registry the
way every atomic file write is done instead: into a file beside it, flushed to disk,
then renamed over it, so a reader sees the old registry or the new one.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

_PATCHED = "_crispops_atomic"


def atomic_registry_writes() -> None:
    """Make this process's Feast file registry writes atomic (idempotent)."""
    from feast.infra.registry.file import FileRegistryStore

    if getattr(FileRegistryStore._write_registry, _PATCHED, False):
        return
    FileRegistryStore._write_registry = _write_registry  # type: ignore[method-assign]


def _write_registry(self: Any, registry_proto: Any) -> None:
    """FileRegistryStore._write_registry, through crispops' atomic write (a temporary
    file beside it, flushed, then renamed over it)."""
    from feast.utils import _utc_now

    from crispops.io import atomic_write

    registry_proto.version_id = str(uuid.uuid4())
    registry_proto.last_updated.FromDatetime(_utc_now())
    data = registry_proto.SerializeToString()  # before the file is touched at all

    def write(tmp: Path) -> None:
        tmp.write_bytes(data)

    atomic_write(self._filepath, write)


setattr(_write_registry, _PATCHED, True)
