"""split: hold out the newest rows for testing (or a random share, by setting)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandas as pd


@dataclass(frozen=True)
class SplitResult:
    strategy: str
    train_rows: int
    test_rows: int
    cutoff: str | None  # first test timestamp, for a time split


def split(
    df: pd.DataFrame,
    *,
    timestamp: str,
    label: str,
    task: str,
    strategy: Literal["time", "random"] = "time",
    test_fraction: float = 0.25,
    seed: int = 42,
) -> tuple[pd.DataFrame, pd.DataFrame, SplitResult]:
    """Train on older rows and test on newer ones, so the test mimics the future."""
    if len(df) < 4:
        raise ValueError(f"split: {len(df)} rows are too few to split")
    if strategy == "time":
        ordered = df.sort_values(timestamp, kind="stable", ignore_index=True)
        cut = round(len(ordered) * (1 - test_fraction))
        cut = min(max(cut, 1), len(ordered) - 1)
        # rows sharing the cutoff timestamp all go to the test side
        cutoff = ordered[timestamp].iloc[cut]
        train = ordered[ordered[timestamp] < cutoff]
        test = ordered[ordered[timestamp] >= cutoff]
        if train.empty:
            raise ValueError(
                f"split: every row shares the timestamp {cutoff}; cannot split by time"
            )
        result = SplitResult("time", len(train), len(test), str(cutoff))
    else:
        from sklearn.model_selection import train_test_split

        stratify = (
            df[label] if task != "regression" and df[label].value_counts().min() > 1 else None
        )
        train, test = train_test_split(
            df, test_size=test_fraction, random_state=seed, stratify=stratify
        )
        result = SplitResult("random", len(train), len(test), None)
    if task != "regression":
        missing = sorted(set(map(str, train[label].unique())) - set(map(str, test[label].unique())))
        if test[label].nunique() < 2:
            raise ValueError(
                f"split: the test set holds one class of {label!r} only; "
                f"classes absent from it: {', '.join(missing)}"
            )
    return train.reset_index(drop=True), test.reset_index(drop=True), result
