from __future__ import annotations

import pytest

from crispops.contract import FeatureContract
from crispops.steps.select_features import select_features
from crispops.steps.split import split

from .conftest import make_frame


def test_time_split_trains_on_the_past() -> None:
    df = make_frame("binary").sample(frac=1.0, random_state=0)
    train, test, result = split(df, timestamp="ts", label="y", task="binary", test_fraction=0.25)
    assert train["ts"].max() < test["ts"].min()
    assert len(train) + len(test) == len(df)
    assert abs(len(test) / len(df) - 0.25) < 0.01
    assert result.strategy == "time" and result.cutoff == str(test["ts"].min())


def test_random_split_is_stratified_and_seeded() -> None:
    df = make_frame("binary")
    a_train, a_test, _ = split(df, timestamp="ts", label="y", task="binary", strategy="random")
    b_train, _, _ = split(df, timestamp="ts", label="y", task="binary", strategy="random")
    assert a_train["ts"].tolist() == b_train["ts"].tolist()
    assert abs(a_test["y"].mean() - df["y"].mean()) < 0.03
    assert a_train["ts"].max() > a_test["ts"].min()  # not a time split


def test_split_refuses_single_class_holdout() -> None:
    df = make_frame("binary")
    df.loc[df.index >= 450, "y"] = 1
    with pytest.raises(ValueError, match="one class"):
        split(df, timestamp="ts", label="y", task="binary", test_fraction=0.2)


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_select_keeps_signal_and_drops_noise(contract: FeatureContract, task: str) -> None:
    df = make_frame(task, n=1500)
    sel = select_features(df, contract, label="y", task=task, threshold=0.02)
    assert {"x1", "cat"} <= set(sel.kept)
    assert "noise" in sel.dropped
    assert sel.scores["x1"] > sel.scores["noise"]
    assert sorted(sel.kept + sel.dropped) == sorted(contract.input_names)


def test_select_never_keeps_nothing(contract: FeatureContract) -> None:
    sel = select_features(make_frame("binary"), contract, label="y", task="binary", threshold=99)
    assert len(sel.kept) == 1
