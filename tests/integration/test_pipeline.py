"""The whole training pipeline through kfp.local's SubprocessRunner, on small data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from crispops.champion import read_champion
from crispops.config import Settings, load_settings
from crispops.orchestration.local import RunResult, run_training
from crispops.step_settings import settings_json

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FAST = [
    {"name": "linear", "estimator": "logistic_regression", "search": {"C": [0.5]}},
    {
        "name": "trees",
        "estimator": "hist_gradient_boosting",
        "search": {"max_iter": [60], "max_leaf_nodes": [15]},
    },
]


def settings_for(project: Path, **data: Any) -> Settings:
    base = load_settings(project)
    training = base.training.model_dump()
    training["candidates"] = data.pop("candidates", FAST)
    training.update(data.pop("training", {}))
    return load_settings(project, data={**base.data.model_dump(), **data}, training=training)


def steps(result: RunResult) -> list[str]:
    return result.completed()


def test_binary_run_trains_evaluates_and_packages(fresh_project: Path) -> None:
    s = settings_for(fresh_project)
    result = run_training(s)
    assert result.ok, result.error
    assert steps(result) == sorted(
        [
            "ingest",
            "validate",
            "explore",
            "split",
            "select-features",
            "train",
            "train",
            "evaluate",
            "evaluate",
            "select-champion",
            "package",
        ]
    )
    champion = read_champion(s.champion_file)
    assert champion is not None and champion.run_id == result.run_id
    assert champion.candidate in {"linear", "trees"}
    assert 0.6 < champion.metrics["roc_auc"] <= 1.0
    assert Path(champion.model_file).is_file()
    assert (s.bentoml_home / "bentos" / champion.bento_tag.replace(":", "/")).is_dir()
    decision = result.decision
    assert decision is not None and decision["promote"] is True
    assert {r["candidate"] for r in decision["leaderboard"] if not r["baseline"]} == {
        "linear",
        "trees",
    }
    assert [r["candidate"] for r in decision["leaderboard"] if r["baseline"]] == [
        "baseline (prior)"
    ]
    assert decision["verdict"] == "promoted" and decision["baseline_score"] == 0.5
    html = result.artifact("explore", "report")
    assert html is not None and html.read_text().count("<svg") >= 5
    # explore, which nothing waits for, ran beside split and select-features
    spans = result.spans()
    ((explore_start, _),) = spans["explore"]
    ((_, validated),) = spans["validate"]
    ((_, selected),) = spans["select-features"]
    assert validated <= explore_start < selected, spans
    evaluations = result.artifacts("evaluate", "evaluation")
    assert len(evaluations) == 2

    # A second run whose only candidate is worse leaves the champion as it was.
    worse = settings_for(
        fresh_project,
        candidates=[
            {
                "name": "stump",
                "estimator": "hist_gradient_boosting",
                "search": {"max_iter": [1], "max_depth": [1]},
            }
        ],
    )
    second = run_training(worse)
    assert second.ok, second.error
    # It beat the baseline, not the champion: packaged as a challenger, pointer unmoved.
    assert "package" in steps(second)
    assert read_champion(s.champion_file) == champion
    assert second.decision is not None and second.decision["promote"] is False
    assert "champion unchanged" in second.decision["reason"]


def test_bad_data_stops_at_validate_and_packages_nothing(fresh_project: Path) -> None:
    s = settings_for(fresh_project)
    labels = pd.read_parquet(s.label_source_path)
    bad = pd.concat([labels, labels.iloc[:25]])  # duplicate (entity, timestamp) rows
    path = fresh_project / "feature_repo" / "data" / "bad_labels.parquet"
    bad.to_parquet(path)
    result = run_training(settings_for(fresh_project, label_source=str(path)))
    assert not result.ok
    assert result.failed_step == "validate"
    assert "package" not in steps(result) and "train" not in steps(result)
    report = result.artifact("validate", "report")
    assert report is not None
    assert "unique_entity_timestamp" in report.read_text()
    assert read_champion(s.champion_file) is None
    assert not (s.bentoml_home / "bentos").exists()


def _derived_labels(project: Path, name: str, make: Any) -> Path:
    s = load_settings(project)
    labels = pd.read_parquet(s.label_source_path)
    rng = np.random.default_rng(0)
    labels[name] = make(labels, rng)
    path = project / "feature_repo" / "data" / f"{name}.parquet"
    labels.drop(columns=["defaulted"]).to_parquet(path)
    return path


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_other_task_types_run_from_settings_alone(fresh_project: Path, task: str) -> None:
    if task == "multiclass":
        path = _derived_labels(
            fresh_project,
            "risk_band",
            lambda d, rng: np.select(
                [d["defaulted"] == 1, d["requested_amount"] > 9000], ["default", "large"], "small"
            ),
        )
        label, metric = "risk_band", "macro_f1"
        candidates = FAST
    else:
        path = _derived_labels(
            fresh_project,
            "loss",
            lambda d, rng: d["defaulted"] * d["requested_amount"] * rng.uniform(0.3, 1.0, len(d)),
        )
        label, metric = "loss", "rmse"
        candidates = [{"name": "linear", "estimator": "ridge", "search": {"alpha": [1.0]}}, FAST[1]]
    s = settings_for(
        fresh_project,
        label_source=str(path),
        label=label,
        task=task,
        candidates=candidates,
        training={"selection_metric": metric},
    )
    result = run_training(s)
    assert result.ok, result.error
    champion = read_champion(s.champion_file)
    assert champion is not None and champion.metric == metric
    evaluation = json.loads(result.artifacts("evaluate", "evaluation")[0].read_text())
    expected = {
        "multiclass": {"macro_f1", "accuracy", "log_loss"},
        "regression": {"rmse", "mae", "r2"},
    }[task]
    assert set(evaluation["metrics"]) == expected


def test_materialization_pipeline_through_kfp_local(fresh_project: Path, tmp_path: Path) -> None:
    """The scheduled job's pipeline form: materialize, then online equals offline."""
    import sqlite3

    from kfp import local

    from crispops.steps.features import check
    from pipelines.materialization import materialization_pipeline

    repo = fresh_project / "feature_repo"
    with sqlite3.connect(repo / "data" / "online_store.db") as db:
        db.execute("DELETE FROM crispops_demo_customer_profile_fv")
    assert not check(repo, "credit_default_v1", sample=20).ok
    # the registry says the window is done: a fresh window end is needed to refill,
    # so re-apply (which keeps definitions) and materialize from scratch
    from crispops.steps.features import apply

    (repo / "data" / "registry.db").unlink()
    apply(repo)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path))
    s = load_settings(fresh_project)
    task = materialization_pipeline(
        materialize_settings=settings_json(s, "materialize"), config_file=""
    )
    assert task is not None
    result = check(repo, "credit_default_v1", sample=20)
    assert result.ok, result.mismatches[:3]
