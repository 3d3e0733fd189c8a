"""Container tests' availability rule: a skip that names why no container engine
works, or a failure instead when CRISPOPS_REQUIRE_CONTAINERS=1 (CI sets it after
scripts/prepare-containers.sh)."""

from __future__ import annotations

import os

import pytest

REQUIRE_CONTAINERS = os.environ.get("CRISPOPS_REQUIRE_CONTAINERS") == "1"


def unavailable(message: str) -> None:
    """Skip with ``message``, or fail when containers are required."""
    if REQUIRE_CONTAINERS:
        pytest.fail(f"{message} and CRISPOPS_REQUIRE_CONTAINERS=1", pytrace=False)
    pytest.skip(message)
