"""The compiled IR: one task per step, a ParallelFor over candidates, wired as designed.

The golden file tests/unit/golden/pipeline_inputs.json records each component's inputs
and outputs (names and types) and the settings each step's slice carries. When a
change to them is meant, regenerate it and review the diff:

    PYTHONPATH=src:. .venv/bin/python tests/unit/test_pipeline_ir.py --update
"""

from __future__ import annotations

import json
import shutil
import sys
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
    root = doc["root"]["dag"]["tasks"]
    assert set(root) == {"plan-chunks", "for-loop-1", "write-chunks"}
    params = doc["root"]["inputDefinitions"]["parameters"]
    assert params["config_file"]["defaultValue"] == "feature_store.cluster.yaml"
    assert params["end"]["defaultValue"] == ""  # now: a schedule materializes up to now
    # the chunks: a ParallelFor over plan-chunks' list, two at a time
    loop = root["for-loop-1"]
    assert loop["parameterIterator"]["items"]["inputParameter"].endswith("plan-chunks-Output")
    assert loop["iteratorPolicy"]["parallelismLimit"] == 2
    assert set(doc["components"]["comp-for-loop-1"]["dag"]["tasks"]) == {"read-chunk"}
    # one writer, after every chunk, taking them all: the online writes keep their order
    assert root["write-chunks"]["dependentTasks"] == ["for-loop-1"]
    collected = root["write-chunks"]["inputs"]["artifacts"]["chunks"]
    assert collected["taskOutputArtifact"]["producerTask"] == "for-loop-1"
    # none of them may come from KFP's cache: each reads the registry or the offline store
    for dag in (root, doc["components"]["comp-for-loop-1"]["dag"]["tasks"]):
        for name, task in dag.items():
            if not name.startswith("for-loop-"):
                assert not task.get("cachingOptions", {}).get("enableCache"), name


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


def test_candidates_and_step_settings_are_parameters(ir: dict) -> None:
    params = ir["root"]["inputDefinitions"]["parameters"]
    assert {"candidates", "run_id", "ingest_settings", "train_settings"} <= set(params)
    assert "config" not in params
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


GOLDEN = Path(__file__).with_name("golden") / "pipeline_inputs.json"


def interface(doc: dict) -> dict:
    """Each component's parameter and artifact names with their types."""
    out: dict = {}
    for name, comp in sorted(doc["components"].items()):
        if "executorLabel" not in comp:  # a DAG (loop, condition), not a component
            continue
        entry: dict = {}
        for side in ("inputDefinitions", "outputDefinitions"):
            defs = comp.get(side, {})
            entry[side] = {
                "parameters": {
                    k: v["parameterType"] for k, v in defs.get("parameters", {}).items()
                },
                "artifacts": {
                    k: v["artifactType"]["schemaTitle"] + ("[]" if v.get("isArtifactList") else "")
                    for k, v in defs.get("artifacts", {}).items()
                },
            }
        out[name] = entry
    return out


def golden_now(project: Path) -> dict:
    from crispops.step_settings import STEP_SETTINGS

    paths = compile_all(load_settings(project), project / "out")
    docs = {n: yaml.safe_load(p.read_text()) for n, p in paths.items()}
    return {
        "components": {n: interface(d) for n, d in docs.items()},
        "pipeline_parameters": {
            n: {
                k: v["parameterType"]
                for k, v in d["root"]["inputDefinitions"]["parameters"].items()
            }
            for n, d in docs.items()
        },
        "step_settings": {
            k: {s or "<top>": list(f) for s, f in v.items()} for k, v in STEP_SETTINGS.items()
        },
    }


def test_component_interfaces_match_the_golden_file(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    project = tmp_path_factory.mktemp("g")
    shutil.copy(ROOT / "crispops.toml", project / "crispops.toml")
    want = json.loads(GOLDEN.read_text())
    got = golden_now(project)
    assert got == want, (
        "a component's inputs, outputs or settings slice changed; if meant, regenerate "
        "with: PYTHONPATH=src:. .venv/bin/python tests/unit/test_pipeline_ir.py --update"
    )


def test_no_component_takes_the_whole_settings(ir: dict) -> None:
    for name, comp in interface(ir).items():
        assert "config" not in comp["inputDefinitions"]["parameters"], name


def test_a_setting_reaches_only_the_steps_that_read_it(tmp_path: Path) -> None:
    from crispops.step_settings import pipeline_settings

    shutil.copy(ROOT / "crispops.toml", tmp_path / "crispops.toml")
    s = load_settings(tmp_path)
    before = pipeline_settings(s)
    after = pipeline_settings(
        s.model_copy(update={"training": s.training.model_copy(update={"cv_folds": 5})})
    )
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {"train_settings"}


if __name__ == "__main__" and "--update" in sys.argv:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(ROOT / "crispops.toml", Path(tmp) / "crispops.toml")
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(golden_now(Path(tmp)), indent=2, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")


def test_kfp_never_caches_a_task_that_reads_or_writes_outside_its_inputs(tmp_path: Path) -> None:
    """On a cluster KFP's cache keys on a task's inputs only: a retrain over new rows in
    the warehouse (same settings) must ingest them, not reuse the last run's data."""
    from crispops.config import load_settings
    from crispops.orchestration.compile import UNCACHED_ON_CLUSTER, compile_all

    seen: dict[str, bool] = {}
    for path in compile_all(load_settings(ROOT), tmp_path).values():
        doc = yaml.safe_load(path.read_text())
        dags = [doc["root"]["dag"], *(c["dag"] for c in doc["components"].values() if "dag" in c)]
        for dag in dags:
            for name, task in dag.get("tasks", {}).items():
                if "componentRef" in task and not name.startswith(("condition-", "for-loop-")):
                    seen[name] = bool(task.get("cachingOptions", {}).get("enableCache"))
    assert {n for n, cached in seen.items() if not cached} == set(UNCACHED_ON_CLUSTER)
    assert seen["train"] and seen["evaluate"] and seen["split"]
