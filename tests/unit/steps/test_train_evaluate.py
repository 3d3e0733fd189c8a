from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.preprocessing import TargetEncoder

from crispops.steps.evaluate import evaluate, model_columns
from crispops.steps.train import categorical_encoding, make_pipeline, to_frame, train

from .conftest import make_frame, make_mixed_frame

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


def test_encoding_follows_the_cardinality_threshold() -> None:
    X = pd.DataFrame(
        {
            "five": pd.Series([f"v{i % 5}" for i in range(40)], dtype=object),
            "six": pd.Series([f"v{i % 6}" for i in range(40)], dtype=object),
            "five_and_missing": pd.Series(
                [None if i % 6 == 5 else f"v{i % 6}" for i in range(40)], dtype=object
            ),
        }
    )
    cols = list(X.columns)
    assert categorical_encoding(X, cols, max_onehot_categories=5) == {
        "five": "onehot",  # at the threshold: one-hot
        "six": "target",  # above it
        "five_and_missing": "onehot",  # missing is not counted as a value
    }
    assert set(categorical_encoding(X, cols, max_onehot_categories=6).values()) == {"onehot"}
    assert set(categorical_encoding(X, cols, max_onehot_categories=2).values()) == {"target"}


@pytest.mark.parametrize(
    ("task", "target_type"),
    [("binary", "binary"), ("multiclass", "multiclass"), ("regression", "continuous")],
)
def test_high_cardinality_column_is_target_encoded(task: str, target_type: str) -> None:
    metric, names = CASES[task]
    estimator = "ridge" if task == "regression" else "logistic_regression"
    df = make_mixed_frame(task, n=500)
    train_df, test_df = df.iloc[:380], df.iloc[380:]
    model, info = train(
        train_df,
        name="c",
        estimator=estimator,
        search={},
        numeric=NUM,
        categorical=["cat", "many"],
        label="y",
        task=task,
        metric=metric,
        max_onehot_categories=30,
    )
    assert info.categorical_encoding == {"cat": "onehot", "many": "target"}
    prep = model.named_steps["prep"]
    assert [(n, list(c)) for n, _, c in prep.transformers_] == [
        ("num", NUM),
        ("cat", ["cat"]),
        ("te", ["many"]),
    ]
    encoder = prep.named_transformers_["te"].named_steps["target"]
    assert isinstance(encoder, TargetEncoder)
    assert encoder.target_type_ == target_type
    width = 3 if task == "multiclass" else 1  # one column per class, else one
    assert [n for n in prep.get_feature_names_out() if n.startswith("many")] == (
        [f"many_{c}" for c in encoder.classes_] if width > 1 else ["many"]
    )
    assert model_columns(model) == (NUM, ["cat", "many"])
    result = evaluate(model, test_df, label="y", task=task, name="c")
    assert set(result.metrics) == names
    assert all(np.isfinite(v) for v in result.metrics.values())


def test_a_large_threshold_keeps_every_column_one_hot() -> None:
    df = make_mixed_frame("binary", n=300)
    model, info = train(
        df,
        name="c",
        estimator="logistic_regression",
        search={},
        numeric=NUM,
        categorical=["cat", "many"],
        label="y",
        task="binary",
        metric="roc_auc",
        max_onehot_categories=10_000,
    )
    assert info.categorical_encoding == {"cat": "onehot", "many": "onehot"}
    assert [n for n, _, _ in model.named_steps["prep"].transformers_] == ["num", "cat"]
    assert model_columns(model) == (NUM, ["cat", "many"])


def test_target_encoding_is_cross_fitted_and_seeded() -> None:
    """The encoder cross-fits in fit_transform with a seeded splitter: the training rows'
    encodings differ from transform's (all-rows) encodings, and a refit repeats them."""
    df = make_mixed_frame("binary", n=300)
    pipe = make_pipeline("logistic_regression", "binary", NUM, ["many"], 7, {"many": "target"})
    te = pipe.named_steps["prep"].transformers[-1][1]
    X = to_frame(df, [], ["many"])
    crossed = te.fit_transform(X, df["y"])
    assert not np.allclose(crossed, te.transform(X))
    np.testing.assert_array_equal(crossed, clone(te).fit_transform(X, df["y"]))


def test_unknown_encoding_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown encoding"):
        make_pipeline("ridge", "regression", NUM, CAT, encoding={"cat": "hash"})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="not categorical"):
        make_pipeline("ridge", "regression", NUM, CAT, encoding={"x1": "target"})
