"""The compiled IR: one task per step, a ParallelFor over candidates, wired as designed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from crispops.config import COMPONENT_IMAGE, load_settings
from crispops.orchestration.compile import compile_all

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ir(tmp_path_factory: pytest.TempPathFactory) -> dict:
    project = tmp_path_factory.mktemp("p")
    shutil.copy(ROOT / "crispops.toml", project / "crispops.toml")
    paths = compile_all(load_settings(project), project / "out")
    return dict(yaml.safe_load(paths["training"].read_text()))


def test_materialization_pipeline_compiles(tmp_path_factory: pytest.TempPathFactory) -> None:
    project = tmp_path_factory.mktemp("m")
    shutil.copy(ROOT / "crispops.toml", project / "crispops.toml")
    path = compile_all(load_settings(project), project / "out")["materialization"]
    doc = yaml.safe_load(path.read_text())
    assert set(doc["root"]["dag"]["tasks"]) == {"materialize"}
    params = doc["root"]["inputDefinitions"]["parameters"]
    assert params["config_file"]["defaultValue"] == "feature_store.cluster.yaml"


def test_monitoring_pipeline_compiles(tmp_path_factory: pytest.TempPathFactory) -> None:
    """One monitor task: the window and act are parameters (a schedule acts by default),
    the HTML report and the figures are artifacts the KFP UI shows."""
    project = tmp_path_factory.mktemp("mon")
    shutil.copy(ROOT / "crispops.toml", project / "crispops.toml")
    settings = load_settings(project, monitoring={"window": "6h"})
    path = compile_all(settings, project / "out")["monitoring"]
    doc = yaml.safe_load(path.read_text())
    assert doc["pipelineInfo"]["name"] == "crispops-monitoring"
    assert set(doc["root"]["dag"]["tasks"]) == {"monitor"}
    params = doc["root"]["inputDefinitions"]["parameters"]
    assert params["window"]["defaultValue"] == "6h"  # [monitoring] window
    assert params["act"]["defaultValue"] is True
    assert params["end"]["defaultValue"] == ""  # now: a schedule judges the latest window
    assert '"monitoring"' in params["config"]["defaultValue"]
    comp = doc["components"]["comp-monitor"]
    artifacts = comp["outputDefinitions"]["artifacts"]
    assert artifacts["report"]["artifactType"]["schemaTitle"] == "system.HTML"
    assert artifacts["figures"]["artifactType"]["schemaTitle"] == "system.Metrics"
    inputs = doc["root"]["dag"]["tasks"]["monitor"]["inputs"]["parameters"]
    assert inputs["act"]["componentInputParameter"] == "act"
    assert inputs["window"]["componentInputParameter"] == "window"
    (executor,) = doc["deploymentSpec"]["executors"].values()
    assert executor["container"]["image"] == COMPONENT_IMAGE
    assert "crispops.monitoring.task" in "\n".join(executor["container"]["command"])


def test_one_task_per_step(ir: dict) -> None:
    root = ir["root"]["dag"]["tasks"]
    assert set(root) == {
        "ingest",
        "validate",
        "explore",
        "split",
        "select-features",
        "for-loop-1",
        "select-champion",
        "condition-2",
    }
    loop = ir["components"]["comp-for-loop-1"]["dag"]["tasks"]
    assert set(loop) == {"train", "evaluate"}
    cond = ir["components"]["comp-condition-2"]["dag"]["tasks"]
    assert set(cond) == {"package"}


def test_wiring(ir: dict) -> None:
    root = ir["root"]["dag"]["tasks"]
    assert root["validate"]["dependentTasks"] == ["ingest"]
    assert set(root["split"]["dependentTasks"]) == {"ingest", "validate"}
    assert set(root["explore"]["dependentTasks"]) == {"ingest", "validate"}
    assert "split" in root["select-features"]["dependentTasks"]
    assert root["for-loop-1"]["parameterIterator"]["items"]["inputParameter"].endswith("candidates")
    assert root["for-loop-1"]["iteratorPolicy"]["parallelismLimit"] == 2
    assert "for-loop-1" in root["select-champion"]["dependentTasks"]
    # The gate fits its trivial baseline on the training split, scores it on the holdout.
    artifacts = root["select-champion"]["inputs"]["artifacts"]
    for name in ("train", "test"):
        assert artifacts[name]["taskOutputArtifact"] == {
            "outputArtifactKey": name,
            "producerTask": "split",
        }
    assert {"models", "evaluations"} <= set(artifacts)
    trigger = root["condition-2"]["triggerPolicy"]["condition"]
    assert "select-champion" in trigger and "== true" in trigger
    loop = ir["components"]["comp-for-loop-1"]["dag"]["tasks"]
    assert loop["evaluate"]["dependentTasks"] == ["train"]


def test_candidates_and_config_are_parameters(ir: dict) -> None:
    params = ir["root"]["inputDefinitions"]["parameters"]
    assert {"config", "candidates", "run_id"} <= set(params)
    names = [c["name"] for c in params["candidates"]["defaultValue"]]
    assert names == ["logreg", "forest", "hgb"]


def test_every_executor_uses_the_pinned_component_image(ir: dict) -> None:
    executors = ir["deploymentSpec"]["executors"]
    assert len(executors) == 9
    for spec in executors.values():
        container = spec["container"]
        assert container["image"] == COMPONENT_IMAGE
        assert not COMPONENT_IMAGE.endswith(":latest")
        script = " ".join(container.get("command", []) + container.get("args", []))
        assert "pip install" not in script
