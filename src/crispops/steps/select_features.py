"""select-features: rank features by mutual information on the training split only."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.feature_selection import mutual_info_classif, mutual_info_regression
from sklearn.preprocessing import OrdinalEncoder

from crispops.contract import FeatureContract


@dataclass
class Selection:
    kept: list[str]
    dropped: list[str]
    scores: dict[str, float] = field(default_factory=dict)
    threshold: float = 0.0


def select_features(
    train: pd.DataFrame,
    contract: FeatureContract,
    *,
    label: str,
    task: str,
    threshold: float = 0.0,
    seed: int = 42,
    max_rows: int = 20_000,
    exclude: list[str] | None = None,
) -> Selection:
    """Keep inputs whose mutual information with the label exceeds ``threshold``;
    ``exclude`` names inputs that are not candidates at all (validate left them out)."""
    names = [n for n in contract.input_names if n not in set(exclude or ())]
    if not names:
        raise ValueError(
            "no feature is left to train on: validate left out every input "
            f"({', '.join(exclude or [])})"
        )
    sample = train.sample(n=min(len(train), max_rows), random_state=seed)
    kinds = contract.kinds()
    X = pd.DataFrame(index=sample.index)
    discrete = []
    for name in names:
        col = sample[name]
        if kinds[name] == "string" or not pd.api.types.is_numeric_dtype(col):
            enc = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)
            X[name] = enc.fit_transform(col.astype("string").fillna("__missing__").to_frame())[:, 0]
            discrete.append(True)
        else:
            v = col.astype(float)
            X[name] = v.fillna(v.median() if v.notna().any() else 0.0)
            discrete.append(False)
    y = sample[label]
    fn = mutual_info_regression if task == "regression" else mutual_info_classif
    scores = fn(X.to_numpy(), y.to_numpy(), discrete_features=np.array(discrete), random_state=seed)
    ranked = dict(sorted(zip(names, map(float, scores), strict=True), key=lambda kv: -kv[1]))
    kept = [n for n in names if ranked[n] > threshold]
    if not kept:  # never train on nothing: keep the single best feature
        kept = [next(iter(ranked))]
    dropped = [n for n in names if n not in kept]
    return Selection(
        kept=kept,
        dropped=dropped,
        scores={k: round(v, 6) for k, v in ranked.items()},
        threshold=threshold,
    )
