from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from crispops.contract import FeatureContract
from crispops.steps.validate import Rules, profile, validate

from .conftest import make_frame

RULES = Rules(
    entity="key",
    timestamp="ts",
    label="y",
    task="binary",
    min_rows=100,
    now=datetime(2030, 1, 1, tzinfo=UTC),
)


def problems(
    df: pd.DataFrame, contract: FeatureContract, rules: Rules = RULES, reference: dict | None = None
) -> set[tuple[str, str]]:
    return {(p.column, p.rule) for p in validate(df, contract, rules, reference).problems}


def test_good_data_passes(contract: FeatureContract) -> None:
    report = validate(make_frame("binary"), contract, RULES)
    assert report.ok, report.summary()
    assert "passed" in report.markdown()


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (lambda d: d.drop(columns=["x1"]), ("x1", "required_column")),
        (lambda d: d.assign(x1="text"), ("x1", "dtype=float")),
        (lambda d: d.assign(x2=np.nan), ("x2", "null_rate<=0.5")),
        (lambda d: d.assign(y=np.where(d.index < 5, np.nan, d["y"])), ("y", "not_nullable")),
        (lambda d: d.assign(y=1), ("y", "at_least_two_classes")),
        (lambda d: d.assign(n1=4), ("n1", "not_constant")),
        (lambda d: pd.concat([d, d.iloc[:4]]), ("key, ts", "unique_entity_timestamp")),
        (
            lambda d: d.assign(
                ts=d["ts"].where(d.index != 3, pd.Timestamp("2031-01-01", tz="UTC"))
            ),
            ("ts", "not_in_future"),
        ),
        (lambda d: d.iloc[:50], ("*", "rows>=100")),
        (lambda d: d.assign(noise=d["y"]), ("noise", "no_label_leakage")),
        (lambda d: d.assign(x1=np.where(d.index == 7, np.inf, d["x1"])), ("x1", "finite")),
        (lambda d: d.assign(cat=1.5), ("cat", "dtype=string")),
    ],
)
def test_each_rule_names_column(contract: FeatureContract, breakage, expected) -> None:
    found = problems(breakage(make_frame("binary")), contract)
    assert expected in found, found


def test_report_lists_every_problem_at_once(contract: FeatureContract) -> None:
    df = make_frame("binary").drop(columns=["x1"]).assign(n1=4)
    report = validate(df, contract, RULES)
    assert {("x1", "required_column"), ("n1", "not_constant")} <= {
        (p.column, p.rule) for p in report.problems
    }
    md = report.markdown()
    assert "FAILED" in md and "| x1 | required_column |" in md


def test_regression_label_must_be_numeric(contract: FeatureContract) -> None:
    rules = Rules(
        entity="key", timestamp="ts", label="y", task="regression", min_rows=100, now=RULES.now
    )
    ok = make_frame("regression")
    assert validate(ok, contract, rules).ok
    bad = ok.assign(y=np.where(ok.index % 2 == 0, np.inf, ok["y"]))
    assert ("y", "finite") in problems(bad, contract, rules)


def test_drift_and_unseen_categories_against_profile(contract: FeatureContract) -> None:
    base = make_frame("binary", seed=1)
    ref = profile(base, contract, RULES)
    same = make_frame("binary", seed=2)
    assert validate(same, contract, RULES, ref).ok
    shifted = same.assign(x1=same["x1"] + 3.0)
    report = validate(shifted, contract, RULES, ref)
    assert ("x1", "drift_psi<=0.25") in {(p.column, p.rule) for p in report.problems}
    assert report.drift["x1"] > 1.0 and report.drift["x2"] < 0.25
    unseen = same.assign(cat=np.where(same.index < 20, "zzz", same["cat"]))
    assert ("cat", "known_categories") in problems(unseen, contract, RULES, ref)


def test_profile_has_bins_and_categories(contract: FeatureContract) -> None:
    p = profile(make_frame("binary"), contract, RULES)
    assert p["rows"] == 600
    x2 = p["features"]["x2"]
    assert abs(x2["null_rate"] - 36 / 600) < 1e-9
    assert abs(sum(x2["bin_shares"]) - 1.0) < 1e-9
    assert set(p["features"]["cat"]["categories"]) == {"a", "b", "c"}
    assert set(p["label"]["classes"]) == {"0", "1"}


def test_missing_label_is_reported_not_raised(contract: FeatureContract) -> None:
    found = problems(make_frame("binary").drop(columns=["y"]), contract)
    assert ("y", "required_column") in found
