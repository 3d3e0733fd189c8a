from __future__ import annotations

import numpy as np
import pytest

from crispops.serving.fastpath import FastPipeline
from crispops.steps.train import make_pipeline, to_frame, train
from tests.unit.steps.conftest import make_frame, make_mixed_frame

NUM = ["x1", "x2", "n1", "noise", "req"]
CAT = ["cat"]


@pytest.mark.parametrize(
    ("task", "estimator", "method"),
    [
        ("binary", "hist_gradient_boosting", "predict_proba"),
        ("binary", "logistic_regression", "predict_proba"),
        ("multiclass", "random_forest", "predict_proba"),
        ("regression", "ridge", "predict"),
    ],
)
def test_fast_path_equals_the_pipeline(task: str, estimator: str, method: str) -> None:
    df = make_frame(task, n=400)
    metric = {"binary": "roc_auc", "multiclass": "macro_f1", "regression": "rmse"}[task]
    model, _ = train(
        df,
        name="c",
        estimator=estimator,
        search={},
        numeric=NUM,
        categorical=CAT,
        label="y",
        task=task,
        metric=metric,
    )
    fast = FastPipeline.from_pipeline(model)
    assert fast is not None
    probe = df.iloc[:60].copy()
    probe.loc[probe.index[:10], "x2"] = np.nan  # missing numbers
    probe.loc[probe.index[10:15], "cat"] = "never-seen"  # unseen category
    probe.loc[probe.index[15:20], "cat"] = None  # missing category
    X = to_frame(probe, NUM, CAT)
    expected = getattr(model, method)(X)
    got = getattr(fast, method)(X[NUM].to_numpy(float), X[CAT].values.tolist())
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_unknown_structure_falls_back() -> None:
    assert FastPipeline.from_pipeline(object()) is None


MIXED_CAT = ["cat", "many"]  # 3 values (one-hot) and 80 (target-encoded)


@pytest.mark.parametrize(
    ("task", "estimator", "method"),
    [
        ("binary", "hist_gradient_boosting", "predict_proba"),
        ("binary", "logistic_regression", "predict_proba"),
        ("multiclass", "hist_gradient_boosting", "predict_proba"),
        ("multiclass", "logistic_regression", "predict_proba"),
        ("regression", "ridge", "predict"),
        ("regression", "hist_gradient_boosting", "predict"),
    ],
)
def test_fast_path_equals_the_pipeline_with_target_encoding(
    task: str, estimator: str, method: str
) -> None:
    df = make_mixed_frame(task, n=500)
    metric = {"binary": "roc_auc", "multiclass": "macro_f1", "regression": "rmse"}[task]
    model, info = train(
        df,
        name="c",
        estimator=estimator,
        search={},
        numeric=NUM,
        categorical=MIXED_CAT,
        label="y",
        task=task,
        metric=metric,
        max_onehot_categories=10,
    )
    assert info.categorical_encoding == {"cat": "onehot", "many": "target"}
    fast = FastPipeline.from_pipeline(model)
    assert fast is not None
    assert fast.categorical == ["cat", "many"]  # the ColumnTransformer's block order
    probe = df.iloc[:80].copy()
    probe.loc[probe.index[:10], "x2"] = np.nan  # missing numbers
    probe.loc[probe.index[10:15], "many"] = "never-seen"  # unseen, target-encoded
    probe.loc[probe.index[15:20], "many"] = None  # missing, target-encoded
    probe.loc[probe.index[20:25], "cat"] = "never-seen"  # unseen, one-hot
    probe.loc[probe.index[25:30], "cat"] = None  # missing, one-hot
    X = to_frame(probe, NUM, MIXED_CAT)
    expected = getattr(model, method)(X)
    got = getattr(fast, method)(
        X[fast.numeric].to_numpy(float), X[fast.categorical].values.tolist()
    )
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    # the same through the encodings alone: the transformed matrix, column for column
    np.testing.assert_allclose(
        fast.transform(X[fast.numeric].to_numpy(float), X[fast.categorical].values.tolist()),
        model.named_steps["prep"].transform(X),
        rtol=0,
        atol=1e-12,
    )


def test_fast_path_reorders_to_the_pipeline_when_target_block_comes_first() -> None:
    """``categorical`` follows the pipeline's blocks, whatever order the caller listed."""
    df = make_mixed_frame("binary", n=400)
    model, _ = train(
        df,
        name="c",
        estimator="logistic_regression",
        search={},
        numeric=NUM,
        categorical=["many", "cat"],
        label="y",
        task="binary",
        metric="roc_auc",
        max_onehot_categories=10,
    )
    fast = FastPipeline.from_pipeline(model)
    assert fast is not None and fast.categorical == ["cat", "many"]
    X = to_frame(df.iloc[:40], NUM, ["many", "cat"])
    got = fast.predict_proba(X[fast.numeric].to_numpy(float), X[fast.categorical].values.tolist())
    np.testing.assert_allclose(got, model.predict_proba(X), rtol=0, atol=1e-12)


def test_unrecognised_target_block_falls_back() -> None:
    df = make_mixed_frame("binary", n=300)
    pipe = make_pipeline(
        "logistic_regression", "binary", NUM, MIXED_CAT, encoding={"many": "target"}
    )
    pipe.set_params(prep__te__impute__fill_value="other")  # not the fast path's missing
    pipe.fit(to_frame(df, NUM, MIXED_CAT), df["y"])
    assert FastPipeline.from_pipeline(pipe) is None


def test_missing_category_in_training_is_the_fast_paths_missing() -> None:
    """A category missing in the training rows (None) is learnt as "__missing__", the
    category the fast path maps None to."""
    df = make_mixed_frame("binary", n=300)
    model, _ = train(
        df,
        name="c",
        estimator="logistic_regression",
        search={},
        numeric=NUM,
        categorical=CAT,
        label="y",
        task="binary",
        metric="roc_auc",
    )
    encoder = model.named_steps["prep"].named_transformers_["cat"].named_steps["onehot"]
    assert list(encoder.categories_[0]) == ["__missing__", "a", "b", "c"]
    fast = FastPipeline.from_pipeline(model)
    assert fast is not None
    X = to_frame(df.iloc[:60], NUM, CAT)  # rows 0, 11, 22, ... have no category
    got = fast.predict_proba(X[NUM].to_numpy(float), X[CAT].values.tolist())
    np.testing.assert_allclose(got, model.predict_proba(X), rtol=0, atol=1e-12)
