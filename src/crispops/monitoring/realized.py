"""Realized metrics: how the served model did on the predictions whose labels came back.

The same metrics the evaluate step reports on the holdout (so the champion's holdout
metric and the realized one compare like for like), plus accuracy for classifiers.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as M


@dataclass(frozen=True)
class Realized:
    labels: int
    metrics: dict[str, float] = field(default_factory=dict)
    #: Metrics that could not be computed on these labels, with the reason.
    skipped: dict[str, str] = field(default_factory=dict)


def _loads(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _finite(metrics: dict[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(v)}


def realized_metrics(joined: pd.DataFrame, task: str, classes: list[str] | None) -> Realized:
    """Metrics over ``joined`` (predictions with a ``label`` column, as
    :func:`crispops.monitoring.store.labeled` returns them).

    ``classes``: the model's classes in its order (the second is the positive class of
    a binary model); labels and predictions are compared as text.
    """
    n = len(joined)
    skipped: dict[str, str] = {}
    if n == 0:
        return Realized(labels=0)
    y = [_loads(v) for v in joined["label"]]
    pred = [_loads(v) for v in joined["prediction"]]
    if task == "regression":
        yt = np.asarray(y, dtype=float)
        yp = np.asarray(pred, dtype=float)
        out = {
            "rmse": float(np.sqrt(M.mean_squared_error(yt, yp))),
            "mae": float(M.mean_absolute_error(yt, yp)),
        }
        if n >= 2:
            out["r2"] = float(M.r2_score(yt, yp))
        else:
            skipped["r2"] = "needs at least 2 labels"
        return Realized(labels=n, metrics=_finite(out), skipped=skipped)
    ys = np.asarray([str(v) for v in y])
    ps = np.asarray([str(v) for v in pred])
    out = {"accuracy": float(M.accuracy_score(ys, ps))}
    if task == "binary":
        names = [str(c) for c in (classes or [])]
        if len(names) != 2:
            names = sorted(set(ys) | set(ps))
        pos = names[-1] if names else ""
        y1 = (ys == pos).astype(int)
        p1 = pd.to_numeric(joined["score"], errors="coerce").to_numpy(dtype=float)
        out["f1"] = float(M.f1_score(y1, (ps == pos).astype(int), zero_division=0))
        ok = np.isfinite(p1)
        if ok.all():
            out["brier"] = float(M.brier_score_loss(y1, p1))
            out["log_loss"] = float(M.log_loss(y1, np.clip(p1, 1e-15, 1 - 1e-15), labels=[0, 1]))
            if len(set(y1)) == 2:
                out["roc_auc"] = float(M.roc_auc_score(y1, p1))
                out["pr_auc"] = float(M.average_precision_score(y1, p1))
            else:
                skipped["roc_auc"] = skipped["pr_auc"] = "the labels hold one class only"
        else:
            for m in ("roc_auc", "pr_auc", "log_loss", "brier"):
                skipped[m] = "some logged predictions have no score"
    else:
        out["macro_f1"] = float(M.f1_score(ys, ps, average="macro", zero_division=0))
        probs = [_loads(v) for v in joined["probabilities"]]
        names = [str(c) for c in (classes or [])] or sorted({k for p in probs if p for k in p})
        if names and all(isinstance(p, dict) for p in probs):
            matrix = np.asarray([[float(p.get(c, 0.0)) for c in names] for p in probs])
            matrix = np.clip(matrix, 1e-15, 1.0)
            matrix /= matrix.sum(axis=1, keepdims=True)
            if set(ys) <= set(names):
                out["log_loss"] = float(M.log_loss(ys, matrix, labels=names))
            else:
                skipped["log_loss"] = "a label is not one of the model's classes"
        else:
            skipped["log_loss"] = "some logged predictions have no probabilities"
    return Realized(labels=n, metrics=_finite(out), skipped=skipped)
