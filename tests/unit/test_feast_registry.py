"""crispops writes Feast's file registry whole or not at all (crispops.feast_registry)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from feast.infra.registry.file import FileRegistryStore
from feast.protos.feast.core.Registry_pb2 import Registry as RegistryProto
from feast.repo_config import RegistryConfig

from crispops.feast_registry import atomic_registry_writes


def _store(path: Path) -> FileRegistryStore:
    return FileRegistryStore(RegistryConfig(path=str(path)), path.parent)


def _registry(project: str) -> RegistryProto:
    proto = RegistryProto()
    proto.project_metadata.add().project = project
    return proto


class _Dies:
    """A registry whose serialization fails, as a process killed mid-write would."""

    def __init__(self, proto: RegistryProto) -> None:
        self.proto = proto

    def __getattr__(self, name: str) -> Any:
        return getattr(self.proto, name)

    def SerializeToString(self) -> bytes:  # protobuf's name
        raise KeyboardInterrupt("killed while writing the registry")


def test_a_write_that_dies_leaves_the_previous_registry(tmp_path: Path) -> None:
    atomic_registry_writes()
    atomic_registry_writes()  # idempotent
    path = tmp_path / "registry.db"
    store = _store(path)
    store.update_registry_proto(_registry("before"))
    with pytest.raises(KeyboardInterrupt):
        store.update_registry_proto(_Dies(_registry("after")))  # type: ignore[arg-type]
    # Feast's own write had emptied the file first: an empty, valid registry
    assert path.stat().st_size > 0
    assert [m.project for m in store.get_registry_proto().project_metadata] == ["before"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["registry.db"]  # no temp file left
    store.update_registry_proto(_registry("after"))
    assert [m.project for m in store.get_registry_proto().project_metadata] == ["after"]
