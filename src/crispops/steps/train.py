"""train: one candidate, a scikit-learn Pipeline with its preprocessing, tuned by CV search."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

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
from sklearn.preprocessing import OneHotEncoder, StandardScaler, TargetEncoder
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


#: How a categorical column is encoded: one-hot, or target encoding (cross-fitted).
Encoding = Literal["onehot", "target"]

#: TargetEncoder's target_type for each task.
TARGET_TYPES = {"binary": "binary", "multiclass": "multiclass", "regression": "continuous"}

#: Folds of TargetEncoder's internal cross fitting (scikit-learn's default).
TARGET_ENCODER_FOLDS = 5


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


def categorical_encoding(
    X: pd.DataFrame, categorical: list[str], max_onehot_categories: int
) -> dict[str, Encoding]:
    """One-hot for a column with at most ``max_onehot_categories`` distinct values (missing
    not counted), target encoding above: one-hot width, and so fit time, grows with the
    number of categories, a target encoding's does not."""
    return {
        c: "target" if X[c].nunique(dropna=True) > max_onehot_categories else "onehot"
        for c in categorical
    }


def _constant_imputer() -> SimpleImputer:
    """Missing becomes a category of its own. ``to_frame`` (and the service) give a missing
    category as None, which SimpleImputer's default ``missing_values=np.nan`` does not
    match in an object column: the encoder would then learn None as a category the serving
    fast path (None -> "__missing__") does not know."""
    return SimpleImputer(
        strategy="constant",
        fill_value="__missing__",
        missing_values=None,
        keep_empty_features=True,
    )


def _target_encoder(task: str, seed: int) -> TargetEncoder:
    # fit_transform cross-fits (each row is encoded by a model of the other folds), so
    # the estimator never sees a row's own label through its encoding; transform uses
    # the encodings learnt on all rows. The splitter carries the seed (scikit-learn 1.9
    # deprecates TargetEncoder's own shuffle/random_state).
    folds = KFold if task == "regression" else StratifiedKFold
    return TargetEncoder(
        target_type=TARGET_TYPES[task],
        cv=folds(TARGET_ENCODER_FOLDS, shuffle=True, random_state=seed),
    )


def make_pipeline(
    estimator: str,
    task: str,
    numeric: list[str],
    categorical: list[str],
    seed: int = 42,
    encoding: Mapping[str, Encoding] | None = None,
) -> Pipeline:
    """Preprocessing plus model: the saved object takes raw feature values.

    ``encoding`` names each categorical column's encoding (see ``categorical_encoding``);
    a column it does not name is one-hot encoded. The ColumnTransformer's blocks, in
    output order: ``num`` (numeric), ``cat`` (one-hot), ``te`` (target-encoded).
    """
    model = make_estimator(estimator, task, seed)
    return with_preprocessing(model, numeric, categorical, task, seed, encoding)


def with_preprocessing(
    model: Any,
    numeric: list[str],
    categorical: list[str],
    task: str,
    seed: int = 42,
    encoding: Mapping[str, Encoding] | None = None,
) -> Pipeline:
    """A model behind crispops' preprocessing (impute, scale, encode)."""
    chosen = {c: (encoding or {}).get(c, "onehot") for c in categorical}
    stray = sorted(set(encoding or {}) - set(categorical))
    if stray:
        raise ValueError(f"encoding names column(s) that are not categorical: {stray}")
    bad = sorted(c for c, e in chosen.items() if e not in ("onehot", "target"))
    if bad:
        raise ValueError(f"unknown encoding for column(s) {bad}: use 'onehot' or 'target'")
    onehot = [c for c in categorical if chosen[c] == "onehot"]
    target = [c for c in categorical if chosen[c] == "target"]
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
    if onehot:
        transformers.append(
            (
                "cat",
                Pipeline(
                    [
                        ("impute", _constant_imputer()),
                        (
                            "onehot",
                            OneHotEncoder(
                                handle_unknown="ignore", min_frequency=5, sparse_output=False
                            ),
                        ),
                    ]
                ),
                onehot,
            )
        )
    if target:
        transformers.append(
            (
                "te",
                Pipeline(
                    [("impute", _constant_imputer()), ("target", _target_encoder(task, seed))]
                ),
                target,
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
    # the dummy ignores its inputs: the cheapest encoding (no one-hot of thousands of values)
    encoding: dict[str, Encoding] = dict.fromkeys(categorical, "target")
    pipe = with_preprocessing(model, numeric, categorical, task, encoding=encoding)
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
    #: Each categorical column's encoding, e.g. {"city": "target", "plan": "onehot"}.
    categorical_encoding: dict[str, Encoding] = field(default_factory=dict)


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
    max_onehot_categories: int = 30,
) -> tuple[Pipeline, TrainResult]:
    """Fit one candidate with a small cross-validated grid search; refit on all of train.

    Each categorical column is one-hot encoded when it has at most
    ``max_onehot_categories`` distinct values in ``train_df``, target-encoded otherwise.
    """
    started = time.perf_counter()
    X = to_frame(train_df, numeric, categorical)
    encoding = categorical_encoding(X, categorical, max_onehot_categories)
    pipe = make_pipeline(estimator, task, numeric, categorical, seed, encoding)
    grid = {f"model__{k}": v for k, v in search.items()} or {}
    valid = set(pipe.get_params())
    unknown = sorted(k.removeprefix("model__") for k in grid if k not in valid)
    if unknown:
        raise ValueError(
            f"candidate {name!r}: {estimator} has no parameter(s) {', '.join(unknown)}"
        )
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
        categorical_encoding=encoding,
    )
