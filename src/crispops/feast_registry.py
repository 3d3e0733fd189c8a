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

import os
import uuid
from typing import Any

_PATCHED = "_crispops_atomic"


def atomic_registry_writes() -> None:
    """Make this process's Feast file registry writes atomic (idempotent)."""
    from feast.infra.registry.file import FileRegistryStore

    if getattr(FileRegistryStore._write_registry, _PATCHED, False):
        return
    FileRegistryStore._write_registry = _write_registry  # type: ignore[method-assign]


def _write_registry(self: Any, registry_proto: Any) -> None:
    """FileRegistryStore._write_registry, through a temporary file and a rename."""
    from feast.utils import _utc_now

    registry_proto.version_id = str(uuid.uuid4())
    registry_proto.last_updated.FromDatetime(_utc_now())
    path = self._filepath
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, mode="wb", buffering=0) as f:
            f.write(registry_proto.SerializeToString())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a crash of the machine
    finally:
        os.close(dir_fd)


setattr(_write_registry, _PATCHED, True)
