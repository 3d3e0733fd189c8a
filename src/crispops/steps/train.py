"""train: one candidate, a scikit-learn Pipeline with its preprocessing, tuned by CV search."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits

#: The CV scorer that optimises each selection metric.
SCORERS = {
    "roc_auc": "roc_auc",
    "pr_auc": "average_precision",
    "f1": "f1",
    "log_loss": "neg_log_loss",
    "brier": "neg_brier_score",
    "macro_f1": "f1_macro",
    "accuracy": "accuracy",
    "rmse": "neg_root_mean_squared_error",
    "mae": "neg_mean_absolute_error",
    "r2": "r2",
}


def make_estimator(name: str, task: str, seed: int) -> Any:
    classification = task != "regression"
    if name == "logistic_regression":
        return LogisticRegression(max_iter=2000)
    if name == "ridge":
        return Ridge()
    if name == "random_forest":
        cls = RandomForestClassifier if classification else RandomForestRegressor
        return cls(n_jobs=1, random_state=seed)
    if name == "hist_gradient_boosting":
        cls = HistGradientBoostingClassifier if classification else HistGradientBoostingRegressor
        return cls(random_state=seed)
    raise ValueError(f"unknown estimator {name!r}")


def make_pipeline(
    estimator: str, task: str, numeric: list[str], categorical: list[str], seed: int = 42
) -> Pipeline:
    """Preprocessing plus model: the saved object takes raw feature values."""
    return with_preprocessing(make_estimator(estimator, task, seed), numeric, categorical)


def with_preprocessing(model: Any, numeric: list[str], categorical: list[str]) -> Pipeline:
    """A model behind crispops' preprocessing (impute, scale, one-hot)."""
    transformers = []
    if numeric:
        transformers.append(
            (
                "num",
                Pipeline(
                    [
                        (
                            "impute",
                            SimpleImputer(
                                strategy="median", add_indicator=True, keep_empty_features=True
                            ),
                        ),
                        ("scale", StandardScaler()),
                    ]
                ),
                numeric,
            )
        )
    if categorical:
        transformers.append(
            (
                "cat",
                Pipeline(
                    [
                        (
                            "impute",
                            SimpleImputer(
                                strategy="constant",
                                fill_value="__missing__",
                                keep_empty_features=True,
                            ),
                        ),
                        (
                            "onehot",
                            OneHotEncoder(
                                handle_unknown="ignore", min_frequency=5, sparse_output=False
                            ),
                        ),
                    ]
                ),
                categorical,
            )
        )
    pre = ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=False)
    return Pipeline([("prep", pre), ("model", model)])


def train_baseline(
    train_df: pd.DataFrame,
    *,
    numeric: list[str],
    categorical: list[str],
    label: str,
    task: str,
) -> Pipeline:
    """The trivial model every candidate must beat: the training split's class prior
    (DummyClassifier) or mean (DummyRegressor), ignoring the features. It sits behind
    the same preprocessing as a candidate, so it is scored by the same code."""
    model: Any = (
        DummyRegressor(strategy="mean")
        if task == "regression"
        else DummyClassifier(strategy="prior")
    )
    pipe = with_preprocessing(model, numeric, categorical)
    return pipe.fit(to_frame(train_df, numeric, categorical), train_df[label])


@dataclass(frozen=True)
class TrainResult:
    candidate: str
    estimator: str
    best_params: dict[str, Any]
    cv_score: float
    cv_metric: str
    features: list[str]
    fit_seconds: float


def to_frame(df: pd.DataFrame, numeric: list[str], categorical: list[str]) -> pd.DataFrame:
    """The model's input frame: numbers as float, categories as strings (None for missing)."""
    out = pd.DataFrame(index=df.index)
    for c in numeric:
        out[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
    for c in categorical:
        out[c] = df[c].astype("object").where(df[c].notna(), None)
    return out


def train(
    train_df: pd.DataFrame,
    *,
    name: str,
    estimator: str,
    search: dict[str, list[Any]],
    numeric: list[str],
    categorical: list[str],
    label: str,
    task: str,
    metric: str,
    cv_folds: int = 3,
    seed: int = 42,
) -> tuple[Pipeline, TrainResult]:
    """Fit one candidate with a small cross-validated grid search; refit on all of train."""
    started = time.perf_counter()
    pipe = make_pipeline(estimator, task, numeric, categorical, seed)
    grid = {f"model__{k}": v for k, v in search.items()} or {}
    valid = set(pipe.get_params())
    unknown = sorted(k.removeprefix("model__") for k in grid if k not in valid)
    if unknown:
        raise ValueError(
            f"candidate {name!r}: {estimator} has no parameter(s) {', '.join(unknown)}"
        )
    X = to_frame(train_df, numeric, categorical)
    y = train_df[label]
    cv = (
        KFold(cv_folds, shuffle=True, random_state=seed)
        if task == "regression"
        else StratifiedKFold(cv_folds, shuffle=True, random_state=seed)
    )
    scoring = SCORERS[metric]
    if task == "multiclass" and metric == "roc_auc":
        scoring = "roc_auc_ovr"
    gs = GridSearchCV(
        pipe, grid or [{}], scoring=scoring, cv=cv, n_jobs=1, refit=True, error_score="raise"
    )
    # One OpenMP/BLAS thread: candidates train side by side on few cores, and
    # HistGradientBoosting on small data is many times slower with contended threads.
    with threadpool_limits(1):
        gs.fit(X, y)
    best = {k.removeprefix("model__"): v for k, v in gs.best_params_.items()}
    return gs.best_estimator_, TrainResult(
        candidate=name,
        estimator=estimator,
        best_params=best,
        cv_score=float(gs.best_score_),
        cv_metric=scoring,
        features=numeric + categorical,
        fit_seconds=round(time.perf_counter() - started, 3),
    )
