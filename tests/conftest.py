"""Shared fixtures: a small copy of the demo project, and real-service guards."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REQUIRE_SERVICES = os.environ.get("CRISPOPS_REQUIRE_SERVICES") == "1"


def service_available(host: str, port: int, name: str) -> None:
    """Skip (or, in CI, fail) when a server the test needs does not answer."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return
    except OSError as exc:
        message = f"{name} is not answering on {host}:{port} ({exc})"
        if REQUIRE_SERVICES:
            pytest.fail(message + " and CRISPOPS_REQUIRE_SERVICES=1", pytrace=False)
        pytest.skip(message)


def copy_demo_project(dest: Path) -> Path:
    """The bundled demo's settings and feature definitions, without data or state."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "crispops.toml", dest / "crispops.toml")
    repo = dest / "feature_repo"
    repo.mkdir(exist_ok=True)
    for name in ("credit.py", "feature_store.yaml", "feature_store.cluster.yaml", ".feastignore"):
        shutil.copy(ROOT / "feature_repo" / name, repo / name)
    return dest


@pytest.fixture(scope="session")
def demo_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A small demo project with data generated, features applied and materialized."""
    from crispops.project.demo_data import generate
    from crispops.steps.features import apply, materialize

    project = copy_demo_project(tmp_path_factory.mktemp("demo"))
    generate(project / "feature_repo" / "data", customers=200, days=150, seed=11)
    apply(project / "feature_repo")
    materialize(project / "feature_repo")
    yield project


@pytest.fixture()
def fresh_project(tmp_path: Path, demo_project: Path) -> Path:
    """A private copy of the session demo project (its own registry, stores and state)."""
    from crispops.steps.features import apply, materialize

    dest = tmp_path / "project"
    # Never copy a registry: it records its online tables' absolute paths, and applying
    # the copy would drop the original's tables. Apply and materialize afresh instead.
    shutil.copytree(demo_project, dest, ignore=shutil.ignore_patterns(".crispops", "*.db"))
    apply(dest / "feature_repo")
    materialize(dest / "feature_repo")
    return dest


FAST_CANDIDATES = [
    {"name": "linear", "estimator": "logistic_regression", "search": {"C": [0.5]}},
    {
        "name": "trees",
        "estimator": "hist_gradient_boosting",
        "search": {"max_iter": [60], "max_leaf_nodes": [15]},
    },
]


@pytest.fixture(scope="session")
def trained_project(tmp_path_factory: pytest.TempPathFactory, demo_project: Path) -> Path:
    """A demo project whose pipeline has run once: a champion, its model and its Bento."""
    from crispops.config import load_settings
    from crispops.orchestration.local import run_training
    from crispops.steps.features import apply, materialize

    dest = tmp_path_factory.mktemp("trained") / "project"
    shutil.copytree(demo_project, dest, ignore=shutil.ignore_patterns(".crispops", "*.db"))
    apply(dest / "feature_repo")
    materialize(dest / "feature_repo")
    base = load_settings(dest)
    training = {**base.training.model_dump(), "candidates": FAST_CANDIDATES}
    result = run_training(load_settings(dest, training=training))
    assert result.ok, result.error
    return dest
