"""What the container tests share: the container engine, or a skip that names why."""

from __future__ import annotations

import pytest

from crispops.cluster.build import Engine, detect_engine
from crispops.errors import ContainerError
from support.containers import unavailable


@pytest.fixture(scope="session")
def engine() -> Engine:
    try:
        return detect_engine()
    except ContainerError as exc:
        unavailable(str(exc))
        raise
