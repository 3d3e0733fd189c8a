"""lifecycle.select_champion_task on files, without KFP: the baseline row and the gate."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest

from crispops.champion import Champion, write_champion
from crispops.config import Settings, load_settings
from crispops.io import read_json, write_json
from crispops.lifecycle import select_champion_task
from crispops.steps.evaluate import evaluate
from crispops.steps.select_champion import Decision
from crispops.steps.train import train

ROOT = Path(__file__).resolve().parents[2]
NUM = ["x1", "x2"]
CAT = ["cat"]
TREES = {"name": "trees", "estimator": "hist_gradient_boosting", "search": {"max_iter": [30]}}
METRIC = {"binary": "roc_auc", "regression": "rmse"}


def settings_for(project: Path, task: str, **training: Any) -> Settings:
    shutil.copy(ROOT / "crispops.toml", project / "crispops.toml")
    data = {"label_source": "labels.parquet", "entity": "key", "timestamp": "ts"}
    linear = {
        "name": "linear",
        "estimator": "ridge" if task == "regression" else "logistic_regression",
        "search": {},
    }
    return load_settings(
        project,
        data={**data, "label": "y", "task": task},
        training={"candidates": [linear, TREES], "selection_metric": METRIC[task], **training},
    )


def frame(task: str, signal: bool, n: int = 500, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    cat = rng.choice(["a", "b"], size=n)
    z = 2 * x1 - x2 + (cat == "a") + 0.3 * rng.normal(size=n)
    y: Any = (z > 0).astype(int) if task == "binary" else 10 + 3 * z
    if not signal:  # features that say nothing: every model can only predict the prior
        x1, x2, cat = np.zeros(n), np.ones(n), np.full(n, "a")
    return pd.DataFrame({"x1": x1, "x2": x2, "cat": cat, "y": y})


def run_gate(s: Settings, df: pd.DataFrame, work: Path) -> tuple[Decision, dict, str]:
    train_df, test_df = df.iloc[:375], df.iloc[375:]
    train_df.to_parquet(work / "train.parquet")
    test_df.to_parquet(work / "test.parquet")
    models, evaluations = {}, []
    for c in s.training.candidates:
        model, _ = train(
            train_df,
            name=c.name,
            estimator=c.estimator,
            search=c.search,
            numeric=NUM,
            categorical=CAT,
            label="y",
            task=s.data.task,
            metric=s.training.selection_metric,
        )
        joblib.dump(model, work / f"{c.name}.joblib")
        result = evaluate(model, test_df, label="y", task=s.data.task, name=c.name)
        write_json(work / f"{c.name}.json", result.to_dict())
        evaluations.append(work / f"{c.name}.json")
        info = {"candidate": c.name, "numeric": NUM, "categorical": CAT}
        models[c.name] = (work / f"{c.name}.joblib", info)
    decision = select_champion_task(
        s,
        evaluations,
        models,
        work / "train.parquet",
        work / "test.parquet",
        work / "leaderboard.md",
        work / "decision.json",
        work / "champion.joblib",
    )
    return decision, read_json(work / "decision.json"), (work / "leaderboard.md").read_text()


def test_the_leaderboard_has_a_marked_baseline_row_that_is_never_chosen(tmp_path: Path) -> None:
    s = settings_for(tmp_path, "binary")
    decision, record, markdown = run_gate(s, frame("binary", signal=True), tmp_path)
    assert decision.promote and decision.verdict == "promoted"
    board = record["leaderboard"]
    base = [r for r in board if r["baseline"]]
    assert len(base) == 1 and base[0]["candidate"] == "baseline (prior)"
    assert base[0]["rank"] is None and base[0]["roc_auc"] == pytest.approx(0.5)
    ranked = [r for r in board if not r["baseline"]]
    assert [r["rank"] for r in ranked] == [1, 2]
    assert {r["candidate"] for r in ranked} == {"linear", "trees"}
    assert board[-1]["baseline"]  # both candidates beat it: it is last
    assert record["verdict"] == "promoted" and record["baseline_score"] == pytest.approx(0.5)
    assert record["challenger"] in {"linear", "trees"}
    row = next(ln for ln in markdown.splitlines() if "_baseline (prior)_" in ln)
    assert row.startswith("| –")  # marked, and never ranked
    assert "DummyClassifier (prior)" in markdown and "**Decision (promoted):**" in markdown


@pytest.mark.parametrize("task", ["binary", "regression"])
def test_a_run_with_nothing_better_than_trivial_promotes_nothing(tmp_path: Path, task: str) -> None:
    s = settings_for(tmp_path, task)
    decision, record, markdown = run_gate(s, frame(task, signal=False), tmp_path)
    assert not decision.promote and decision.verdict == "below_baseline"
    assert record["verdict"] == "below_baseline" and record["promote"] is False
    assert record["challenger"] in {"linear", "trees"}  # a candidate, never the baseline
    name = "baseline (mean)" if task == "regression" else "baseline (prior)"
    assert any(r["candidate"] == name and r["baseline"] for r in record["leaderboard"])
    assert "not promoted" in decision.reason and "no champion yet" in decision.reason
    assert f"vs baseline {record['baseline_score']:.4f}" in decision.reason
    assert "**Decision (below_baseline):**" in markdown


def test_the_floor_and_a_champion_that_stays(tmp_path: Path) -> None:
    s = settings_for(tmp_path, "binary", min_score=0.999)
    # a champion already serves: the weak new run must leave it named as serving
    (tmp_path / "champ").mkdir()
    df = frame("binary", signal=True)
    model, _ = train(
        df,
        name="old",
        estimator="logistic_regression",
        search={},
        numeric=NUM,
        categorical=CAT,
        label="y",
        task="binary",
        metric="roc_auc",
    )
    joblib.dump(model, tmp_path / "champ" / "model.joblib")
    champion = Champion("m:1", "b:1", str(tmp_path / "champ" / "model.joblib"), "old", "roc_auc", 1)
    write_champion(s.champion_file, champion)
    decision, record, _ = run_gate(s, df, tmp_path)
    assert decision.verdict == "below_floor" and not decision.promote
    assert "champion unchanged" in decision.reason and "m:1 still serves" in decision.reason
    assert "floor 0.999" in decision.reason and record["min_score"] == 0.999
