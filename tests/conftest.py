"""Shared fixtures: a small copy of the demo project, and real-service guards."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.projects import copy_project, fast_settings, make_demo_project
from support.servers import connect_error

REQUIRE_SERVICES = os.environ.get("CRISPOPS_REQUIRE_SERVICES") == "1"


def service_available(host: str, port: int, name: str) -> None:
    """Skip (or, in CI, fail) when a server the test needs does not answer."""
    exc = connect_error(host, port)
    if exc is None:
        return
    message = f"{name} is not answering on {host}:{port} ({exc})"
    if REQUIRE_SERVICES:
        pytest.fail(message + " and CRISPOPS_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def demo_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A small demo project with data generated, features applied and materialized."""
    yield make_demo_project(tmp_path_factory.mktemp("demo"))


@pytest.fixture()
def fresh_project(tmp_path: Path, demo_project: Path) -> Path:
    """A private copy of the session demo project (its own registry, stores and state)."""
    return copy_project(demo_project, tmp_path / "project", keep_state=False)


@pytest.fixture(scope="session")
def trained_project(tmp_path_factory: pytest.TempPathFactory, demo_project: Path) -> Path:
    """A demo project whose pipeline has run once: a champion, its model and its Bento."""
    from crispops.orchestration.local import run_training

    dest = tmp_path_factory.mktemp("trained") / "project"
    copy_project(demo_project, dest, keep_state=False)
    result = run_training(fast_settings(dest))
    assert result.ok, result.error
    return dest
