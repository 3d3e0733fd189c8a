"""Synthetic frames and contracts for step tests: no demo column names."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crispops.contract import FeatureContract, FieldSpec


def make_contract() -> FeatureContract:
    return FeatureContract(
        feature_service="svc_v1",
        entity_keys=(FieldSpec("key", "int", "thing"),),
        features=(
            FieldSpec("x1", "float", "fv"),
            FieldSpec("x2", "float", "fv"),
            FieldSpec("n1", "int", "fv"),
            FieldSpec("cat", "string", "fv"),
            FieldSpec("noise", "float", "fv"),
        ),
        request_fields=(FieldSpec("req", "float", "request"),),
    )


def make_frame(task: str, n: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = rng.normal(size=n)
    cat = rng.choice(["a", "b", "c"], size=n)
    signal = (
        np.where(x1 > 0.3, 2.0, -1.0) * (x2 > 0) + 1.5 * (cat == "a") + 0.3 * rng.normal(size=n)
    )
    if task == "binary":
        y = (signal > 0.5).astype(int)
    elif task == "multiclass":
        y = np.select([signal < 0, signal < 1.2], ["low", "mid"], "high")
    else:
        y = 10 + 3 * signal
    df = pd.DataFrame(
        {
            "key": rng.integers(0, 100, n),
            "ts": pd.Timestamp("2025-01-01", tz="UTC") + pd.to_timedelta(np.arange(n), unit="h"),
            "y": y,
            "x1": x1,
            "x2": x2,
            "n1": rng.integers(0, 5, n),
            "cat": cat,
            "noise": rng.normal(size=n),
            "req": rng.uniform(1, 2, n),
        }
    )
    df.loc[::17, "x2"] = np.nan
    return df


@pytest.fixture()
def contract() -> FeatureContract:
    return make_contract()


def make_mixed_frame(task: str, n: int = 600, n_values: int = 80, seed: int = 0) -> pd.DataFrame:
    """``make_frame`` plus a high-cardinality string column ``many`` (``n_values`` values)
    that carries label signal, and missing values in both string columns."""
    df = make_frame(task, n=n, seed=seed)
    rng = np.random.default_rng(seed + 1)
    if task == "regression":
        groups = pd.qcut(df["y"], 4, labels=False).to_numpy()
    else:
        groups = pd.factorize(df["y"], sort=True)[0] % 4
    pick = rng.integers(0, n_values // 4, n) * 4 + groups  # value index mod 4 follows the label
    pick = np.where(rng.random(n) < 0.3, rng.integers(0, n_values, n), pick)
    df["many"] = pd.Series([f"v{i:03d}" for i in pick], index=df.index, dtype=object)
    df.loc[::13, "many"] = None
    df["cat"] = df["cat"].astype(object)
    df.loc[::11, "cat"] = None
    return df
