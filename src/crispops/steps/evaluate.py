"""evaluate: a candidate on the holdout with the task's metrics, curves and matrix."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as M

from crispops.steps.train import to_frame


@dataclass
class Evaluation:
    candidate: str
    task: str
    metrics: dict[str, float]
    rows: int
    roc: dict[str, list[float]] = field(default_factory=dict)  # fpr, tpr, threshold
    confusion: dict[str, Any] = field(default_factory=dict)  # labels, matrix

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate,
            "task": self.task,
            "metrics": self.metrics,
            "rows": self.rows,
            "roc": self.roc,
            "confusion": self.confusion,
        }


def model_columns(model: Any) -> tuple[list[str], list[str]]:
    """Numeric and categorical input columns a fitted crispops pipeline expects
    (categorical: the one-hot block's, then the target-encoded block's)."""
    numeric: list[str] = []
    categorical: list[str] = []
    for name, _, cols in model.named_steps["prep"].transformers_:
        if name == "num":
            numeric = list(cols)
        elif name in ("cat", "te"):
            categorical += list(cols)
    return numeric, categorical


def score(model: Any, df: pd.DataFrame, label: str, task: str) -> dict[str, float]:
    return evaluate(model, df, label=label, task=task, name="").metrics


def evaluate(
    model: Any, df: pd.DataFrame, *, label: str, task: str, name: str, curve_points: int = 50
) -> Evaluation:
    numeric, categorical = model_columns(model)
    missing = [c for c in numeric + categorical if c not in df.columns]
    if missing:
        raise KeyError(f"holdout lacks column(s) the model needs: {', '.join(missing)}")
    X = to_frame(df, numeric, categorical)
    y = df[label].to_numpy()
    out = Evaluation(candidate=name, task=task, metrics={}, rows=len(df))
    if task == "regression":
        pred = model.predict(X)
        out.metrics = {
            "rmse": float(np.sqrt(M.mean_squared_error(y, pred))),
            "mae": float(M.mean_absolute_error(y, pred)),
            "r2": float(M.r2_score(y, pred)),
        }
        return out
    classes = np.asarray(model.classes_)
    proba = model.predict_proba(X)
    pred = classes[proba.argmax(axis=1)]
    y_obj = y.astype(classes.dtype) if classes.dtype.kind in "iufb" else y.astype(str)
    if classes.dtype.kind not in "iufb":
        classes, pred = classes.astype(str), pred.astype(str)
    cm = M.confusion_matrix(y_obj, pred, labels=classes)
    out.confusion = {"labels": [str(c) for c in classes], "matrix": cm.tolist()}
    if task == "binary":
        pos = classes[1]
        p1 = proba[:, 1]
        y1 = (y_obj == pos).astype(int)
        out.metrics = {
            "roc_auc": float(M.roc_auc_score(y1, p1)),
            "pr_auc": float(M.average_precision_score(y1, p1)),
            "f1": float(M.f1_score(y1, (pred == pos).astype(int), zero_division=0)),
            "log_loss": float(M.log_loss(y1, p1, labels=[0, 1])),
            "brier": float(M.brier_score_loss(y1, p1)),
        }
        fpr, tpr, thr = M.roc_curve(y1, p1)
        idx = np.unique(np.linspace(0, len(fpr) - 1, min(curve_points, len(fpr))).astype(int))
        thr = np.clip(thr, 0.0, 1.0)
        out.roc = {
            "fpr": fpr[idx].tolist(),
            "tpr": tpr[idx].tolist(),
            "threshold": thr[idx].tolist(),
        }
    else:
        out.metrics = {
            "macro_f1": float(M.f1_score(y_obj, pred, average="macro", zero_division=0)),
            "accuracy": float(M.accuracy_score(y_obj, pred)),
            "log_loss": float(M.log_loss(y_obj, proba, labels=classes)),
        }
    return out
