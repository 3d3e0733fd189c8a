from __future__ import annotations

import numpy as np
import pytest

from crispops.steps.evaluate import evaluate, model_columns
from crispops.steps.train import train

from .conftest import make_frame

NUM = ["x1", "x2", "n1", "noise", "req"]
CAT = ["cat"]
CASES = {
    "binary": ("roc_auc", {"roc_auc", "pr_auc", "f1", "log_loss", "brier"}),
    "multiclass": ("macro_f1", {"macro_f1", "accuracy", "log_loss"}),
    "regression": ("rmse", {"rmse", "mae", "r2"}),
}


@pytest.mark.parametrize("task", list(CASES))
@pytest.mark.parametrize("estimator", ["linear", "random_forest", "hist_gradient_boosting"])
def test_candidates_fit_and_score(task: str, estimator: str) -> None:
    metric, names = CASES[task]
    if estimator == "linear":
        estimator = "ridge" if task == "regression" else "logistic_regression"
    grid = {"max_depth": [3, 6]} if estimator == "random_forest" else {}
    df = make_frame(task, n=500)
    train_df, test_df = df.iloc[:380], df.iloc[380:]
    model, info = train(
        train_df,
        name="c",
        estimator=estimator,
        search=grid,
        numeric=NUM,
        categorical=CAT,
        label="y",
        task=task,
        metric=metric,
        cv_folds=3,
    )
    assert model_columns(model) == (NUM, CAT)
    if grid:
        assert info.best_params["max_depth"] in (3, 6)
    result = evaluate(model, test_df, label="y", task=task, name="c")
    assert set(result.metrics) == names
    assert all(np.isfinite(v) for v in result.metrics.values())
    if task == "binary":
        assert result.metrics["roc_auc"] > 0.7
        assert len(result.roc["fpr"]) == len(result.roc["tpr"]) <= 50
        assert np.array(result.confusion["matrix"]).sum() == len(test_df)
    if task == "multiclass":
        assert result.confusion["labels"] == ["high", "low", "mid"]
    if task == "regression":
        assert result.metrics["r2"] > 0.3


def test_model_takes_raw_values_with_missing_and_unseen() -> None:
    df = make_frame("binary")
    model, _ = train(
        df,
        name="c",
        estimator="hist_gradient_boosting",
        search={},
        numeric=NUM,
        categorical=CAT,
        label="y",
        task="binary",
        metric="roc_auc",
    )
    odd = df.iloc[:5].copy()
    odd["cat"] = ["never-seen", None, "a", "b", "c"]
    odd["x1"] = np.nan
    assert (
        evaluate(model, odd.assign(y=[0, 1, 0, 1, 0]), label="y", task="binary", name="c").rows == 5
    )


def test_unknown_search_parameter_is_named() -> None:
    with pytest.raises(ValueError, match=r"no parameter.*depthh"):
        train(
            make_frame("binary"),
            name="c",
            estimator="random_forest",
            search={"depthh": [1]},
            numeric=NUM,
            categorical=CAT,
            label="y",
            task="binary",
            metric="roc_auc",
        )
