"""Real containers: the components' image, the training pipeline with every step in it
(kfp.local.DockerRunner), and the champion's Bento image served read-only.

Skipped, with the reason, where no container engine works; failed instead when
CRISPOPS_REQUIRE_CONTAINERS=1 (CI sets it after scripts/prepare-containers.sh).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from crispops import __version__
from crispops.champion import read_champion
from crispops.cluster.build import (
    BENTO_UID,
    Engine,
    bento_run_args,
    build_bento_image,
    build_component_image,
)
from crispops.config import COMPONENT_IMAGE, Settings, load_settings
from crispops.contract import FeatureContract
from crispops.errors import ContainerError
from crispops.io import read_json
from crispops.orchestration.local import RunResult, run_training
from support.containers import unavailable
from support.projects import copy_demo_project, fast_settings
from support.servers import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def component_image(engine: Engine) -> str:
    try:
        import docker  # noqa: F401  (kfp.local.DockerRunner needs the SDK)
    except ImportError:
        unavailable("the docker Python package is not installed")
    return build_component_image(engine)


@pytest.fixture(scope="module")
def projects(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two copies of one small demo project: the same data and seed, each with its own
    Feast registry and stores (a registry is never copied)."""
    from crispops.project.demo_data import generate
    from crispops.steps.features import apply, materialize

    base = tmp_path_factory.mktemp("containers")
    local, boxed = copy_demo_project(base / "subprocess"), copy_demo_project(base / "docker")
    generate(local / "feature_repo" / "data", customers=150, days=120, seed=11)
    (boxed / "feature_repo" / "data").mkdir()
    for f in (local / "feature_repo" / "data").glob("*.parquet"):
        shutil.copy(f, boxed / "feature_repo" / "data" / f.name)
    for project in (local, boxed):
        apply(project / "feature_repo")
        materialize(project / "feature_repo")
    return local, boxed


@pytest.fixture(scope="module")
def runs(component_image: str, projects: tuple[Path, Path]) -> tuple[RunResult, RunResult]:
    local, boxed = projects
    return run_training(fast_settings(local)), run_training(fast_settings(boxed), runner="docker")


# the components' image ---------------------------------------------------------------
def test_component_image_holds_the_project(engine: Engine, component_image: str) -> None:
    assert component_image == COMPONENT_IMAGE  # what every component's base_image names
    code = "import kfp, feast, bentoml, sklearn, crispops; print(crispops.__version__)"
    out = engine.run("run", "--rm", "--network=host", component_image, "python", "-c", code)
    assert out.strip() == __version__


def test_component_image_user_is_not_root(engine: Engine, component_image: str) -> None:
    assert engine.image_user(component_image) == "10001:10001"
    out = engine.run("run", "--rm", "--network=host", component_image, "id", "-u")
    assert out.strip() == "10001"


# the pipeline in containers -------------------------------------------------------------
def test_pipeline_in_containers_matches_the_subprocess_runner(
    runs: tuple[RunResult, RunResult], projects: tuple[Path, Path]
) -> None:
    local, boxed = runs
    assert local.ok, local.error
    assert boxed.ok, boxed.error
    log = boxed.log.read_text()
    assert f"Found image '{COMPONENT_IMAGE}'" in log  # every step ran in the image
    assert {status for _, status, _ in boxed.steps} == {"SUCCESS"}
    assert sorted(boxed.completed()) == sorted(local.completed())

    a, b = local.decision, boxed.decision
    assert a is not None and b is not None
    assert b["challenger"] == a["challenger"]
    assert b["challenger_score"] == pytest.approx(a["challenger_score"], rel=1e-9)
    assert [r["candidate"] for r in b["leaderboard"]] == [r["candidate"] for r in a["leaderboard"]]
    for ra, rb in zip(a["leaderboard"], b["leaderboard"], strict=True):
        for key, value in ra.items():
            if isinstance(value, float):
                assert rb[key] == pytest.approx(value, rel=1e-9), key

    champions = [read_champion(fast_settings(p).champion_file) for p in projects]
    assert champions[0] is not None and champions[1] is not None
    assert champions[1].candidate == champions[0].candidate
    assert champions[1].metrics == pytest.approx(champions[0].metrics, rel=1e-9)
    # The package step built the Bento inside its container, into the mounted project.
    name, version = champions[1].bento_tag.split(":", 1)
    bento = fast_settings(projects[1]).bentoml_home / "bentos" / name / version
    assert (bento / "bento.yaml").is_file()


def test_a_failed_step_fails_the_containerised_run(
    runs: tuple[RunResult, RunResult], projects: tuple[Path, Path]
) -> None:
    """The step's exit status reaches kfp (DockerRunner's containers are removed before it
    asks for it; crispops keeps them until it has)."""
    base = fast_settings(projects[1])
    strict = load_settings(
        projects[1],
        training=base.training.model_dump(),
        data={**base.data.model_dump(), "min_rows": 100_000},
    )
    result = run_training(strict, runner="docker")
    assert not result.ok
    assert result.failed_step == "validate"
    assert "train" not in result.completed()


# the Bento image --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def served(
    engine: Engine, runs: tuple[RunResult, RunResult], projects: tuple[Path, Path]
) -> Iterator[tuple[str, str, Settings]]:
    """The docker project's champion, as its Bento image, running as the manifests run it."""
    assert runs[1].ok, runs[1].error
    s = fast_settings(projects[1])
    image = build_bento_image(s, engine)
    port = free_port()
    name = f"crispops-test-bento-{port}"
    engine.run(*bento_run_args(s, image, port=port, name=name))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            state = subprocess.run(
                [engine.path, "inspect", "--format", "{{.State.Running}}", name],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
            if state != "true" or time.monotonic() > deadline:
                logs = subprocess.run(
                    [engine.path, "logs", name], capture_output=True, text=True, check=False
                )
                pytest.fail(f"the Bento container is not ready:\n{logs.stdout}{logs.stderr}")
            time.sleep(1)
        yield url, name, s
    finally:
        for argv in (["stop", "-t", "5", name], ["rm", "-f", name]):
            subprocess.run([engine.path, *argv], capture_output=True, check=False)
        # Each run makes a new champion: keep no image of it that would pin old layers.
        subprocess.run([engine.path, "rmi", image], capture_output=True, check=False)


def test_bento_image_runs_non_root_on_a_read_only_root(
    engine: Engine, served: tuple[str, str, Settings]
) -> None:
    _, name, _ = served
    assert engine.run("exec", name, "id", "-u").strip() == str(BENTO_UID)
    with pytest.raises(ContainerError, match="Read-only file system"):
        engine.run("exec", name, "touch", "/home/bentoml/bento/written")
    engine.run("exec", name, "touch", "/tmp/written")  # the writable tmp volume


def test_bento_container_answers_both_prediction_endpoints(
    served: tuple[str, str, Settings], runs: tuple[RunResult, RunResult]
) -> None:
    import pandas as pd

    url, _, s = served
    champion = read_champion(s.champion_file)
    assert champion is not None
    contract_file, dataset_file = (runs[1].artifact("ingest", n) for n in ("contract", "dataset"))
    assert contract_file is not None and dataset_file is not None
    contract = FeatureContract.from_dict(read_json(contract_file))
    row = pd.read_parquet(dataset_file).dropna().iloc[-1]
    record: dict[str, Any] = {n: (v.item() if hasattr(v, "item") else v) for n, v in row.items()}

    resp = httpx.post(
        f"{url}/predict",
        json={"records": [{n: record[n] for n in contract.input_names}]},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    [answer] = resp.json()
    assert answer["model_tag"] == champion.model_tag
    assert answer["prediction"] in (0, 1)
    assert answer["error"] is None

    entity = {s.data.join_keys[0]: record[s.data.join_keys[0]]}
    entity.update({n: record[n] for n in contract.request_names})
    resp = httpx.post(f"{url}/predict_entity", json={"records": [entity]}, timeout=30)
    assert resp.status_code == 200, resp.text
    [answer] = resp.json()
    assert answer["model_tag"] == champion.model_tag
    assert answer["prediction"] in (0, 1)
    assert answer["error"] is None
