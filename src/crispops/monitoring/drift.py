"""Drift of the served inputs and scores against the champion's training profile.

Pure functions over DataFrames and the profiles the training run stored:

- per feature, the PSI that ``validate`` computes (the same bins: the training
  deciles for numbers, the training categories for strings) plus a distance fit for
  the kind: Wasserstein for numbers, scaled by the training standard deviation (so
  1.0 means "moved by one std"), and Jensen-Shannon distance (base 2, in [0, 1]) for
  categories;
- the score distribution (p(positive), the predicted value, or the top class's
  probability) against the holdout's, stored at packaging as :func:`score_profile`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial.distance import jensenshannon
from scipy.stats import wasserstein_distance

from crispops.steps.validate import psi

#: Quantiles kept of each numeric feature and of the holdout scores (0, 5, ..., 100 %).
QUANTILES = np.linspace(0.0, 1.0, 21)
#: Share given to a category the training data never had (PSI needs no zero shares).
UNSEEN = "__unseen__"


@dataclass(frozen=True)
class FeatureDrift:
    kind: str
    psi: float
    drifted: bool
    rows: int
    #: numbers: Wasserstein distance / training std; strings: Jensen-Shannon distance.
    wasserstein: float | None = None
    js: float | None = None
    #: strings the training data never had, most frequent first (at most 5).
    unseen: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if v is not None}
        out["unseen"] = list(self.unseen)
        return out


def _numeric(kind: str) -> bool:
    return kind in {"float", "int"}


def binned_shares(values: np.ndarray, edges: list[float]) -> list[float]:
    """Shares of ``values`` in the bins the inner ``edges`` make (as validate bins)."""
    if not len(values):
        return [0.0] * (len(edges) + 1)
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    return (counts / len(values)).tolist()


def numeric_drift(values: pd.Series, ref: dict[str, Any], threshold: float) -> FeatureDrift | None:
    v = pd.to_numeric(values, errors="coerce").dropna().astype(float).to_numpy()
    if not len(v) or not ref.get("bin_shares"):
        return None
    score = psi(ref["bin_shares"], binned_shares(v, ref["bin_edges"]))
    quantiles = ref.get("quantiles")
    wd: float | None = None
    if quantiles:
        std = ref.get("std") or 0.0
        scale = std if std and math.isfinite(std) and std > 0 else 1.0
        wd = float(wasserstein_distance(v, np.asarray(quantiles, dtype=float)) / scale)
    return FeatureDrift(
        kind="numeric",
        psi=round(float(score), 4),
        drifted=bool(score > threshold),
        rows=len(v),
        wasserstein=None if wd is None else round(wd, 4),
    )


def categorical_drift(
    values: pd.Series, ref: dict[str, Any], threshold: float
) -> FeatureDrift | None:
    s = values.dropna().astype(str)
    categories: dict[str, float] = ref.get("categories") or {}
    if not len(s) or not categories:
        return None
    shares = s.value_counts(normalize=True)
    unseen = [c for c in shares.index if c not in categories]
    expected = [*categories.values(), 0.0]
    actual = [float(shares.get(c, 0.0)) for c in categories]
    actual.append(float(shares[unseen].sum()) if unseen else 0.0)
    score = psi(expected, actual)
    js = float(jensenshannon(np.asarray(expected), np.asarray(actual), base=2))
    return FeatureDrift(
        kind="categorical",
        psi=round(float(score), 4),
        drifted=bool(score > threshold),
        rows=len(s),
        js=round(js if math.isfinite(js) else 0.0, 4),
        unseen=tuple(unseen[:5]),
    )


def feature_drift(
    inputs: pd.DataFrame,
    profile: dict[str, Any],
    threshold: float,
    features: list[str] | None = None,
) -> dict[str, FeatureDrift]:
    """Drift of each profiled feature the window has values for (``features``: only
    these, e.g. the champion's inputs)."""
    out: dict[str, FeatureDrift] = {}
    for name, ref in (profile.get("features") or {}).items():
        if features is not None and name not in features:
            continue
        if name not in inputs:
            continue
        if _numeric(str(ref.get("kind"))):
            found = numeric_drift(inputs[name], ref, threshold)
        else:
            found = categorical_drift(inputs[name], ref, threshold)
        if found is not None:
            out[name] = found
    return out


def drifted_share(drift: dict[str, FeatureDrift]) -> float:
    return sum(d.drifted for d in drift.values()) / len(drift) if drift else 0.0


# Scores ---------------------------------------------------------------------------------


def model_scores(model: Any, X: pd.DataFrame, task: str) -> np.ndarray:
    """One number per row, as the prediction log records it: p(the second class) for a
    binary model, the top class's probability for a multiclass one, the prediction for a
    regression."""
    if task == "regression":
        return np.asarray(model.predict(X), dtype=float)
    proba = np.asarray(model.predict_proba(X), dtype=float)
    return proba[:, 1] if task == "binary" else proba.max(axis=1)


def score_profile(scores: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """The holdout's score distribution: decile bins (as features get), quantiles."""
    v = np.asarray(scores, dtype=float)
    v = v[np.isfinite(v)]
    if not len(v):
        return {"rows": 0, "bin_edges": [], "bin_shares": [], "quantiles": []}
    qs = np.unique(np.quantile(v, np.linspace(0, 1, bins + 1)))
    edges = qs[1:-1].tolist()
    return {
        "rows": len(v),
        "bin_edges": edges,
        "bin_shares": binned_shares(v, edges),
        "quantiles": np.quantile(v, QUANTILES).tolist(),
        "mean": float(v.mean()),
        "std": float(v.std()),
    }


@dataclass(frozen=True)
class PredictionDrift:
    psi: float | None
    rows: int
    mean: float | None
    reference_mean: float | None
    wasserstein: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def prediction_drift(scores: pd.Series, reference: dict[str, Any] | None) -> PredictionDrift:
    v = pd.to_numeric(scores, errors="coerce").dropna().astype(float).to_numpy()
    ref = reference or {}
    ref_mean = ref.get("mean")
    if not len(v) or not ref.get("bin_shares"):
        return PredictionDrift(
            psi=None,
            rows=len(v),
            mean=float(v.mean()) if len(v) else None,
            reference_mean=ref_mean,
        )
    score = psi(ref["bin_shares"], binned_shares(v, ref["bin_edges"]))
    std = ref.get("std") or 0.0
    scale = std if std and std > 0 else 1.0
    wd = float(wasserstein_distance(v, np.asarray(ref["quantiles"], dtype=float)) / scale)
    return PredictionDrift(
        psi=round(float(score), 4),
        rows=len(v),
        mean=float(v.mean()),
        reference_mean=ref_mean,
        wasserstein=round(wd, 4),
    )
