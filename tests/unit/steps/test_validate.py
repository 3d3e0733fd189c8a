from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from crispops.contract import FeatureContract
from crispops.rules import Override, Policy
from crispops.steps.validate import Rules, profile, validate

from .conftest import make_frame

RULES = Rules(
    entity_keys=("key",),
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
        entity_keys=("key",),
        timestamp="ts",
        label="y",
        task="regression",
        min_rows=100,
        now=RULES.now,
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


def test_a_dead_feature_is_dropped_on_a_first_run_and_blocks_when_the_champion_uses_it(
    contract: FeatureContract,
) -> None:
    df = make_frame("binary").assign(n1=4, x2=np.nan)
    first = validate(df, contract, RULES)
    assert first.ok, first.summary()
    assert set(first.dropped) == {"n1", "x2"}
    assert {(p.column, p.severity) for p in first.warnings} >= {("n1", "warn"), ("x2", "warn")}
    assert "Left out of training" in first.markdown() and "| n1 | not_constant | warn |" in (
        first.markdown()
    )
    used = Rules(**{**RULES.__dict__, "champion_inputs": frozenset({"n1", "x1"})})
    later = validate(df, contract, used)
    assert not later.ok
    assert [(p.column, p.rule) for p in later.errors] == [("n1", "not_constant")]
    assert "went dead" in later.summary()
    assert later.dropped == ["x2"]  # the champion never used x2: still only a property


def test_severities_and_thresholds_per_rule_and_per_column(contract: FeatureContract) -> None:
    df = make_frame("binary").assign(n1=4)
    strict = Rules(**{**RULES.__dict__, "policy": Policy({"not_constant": Override("error")}, {})})
    assert [p.column for p in validate(df, contract, strict).errors] == ["n1"]
    off = Rules(
        **{**RULES.__dict__, "policy": Policy({}, {"n1": {"not_constant": Override("off")}})}
    )
    assert validate(df, contract, off).problems == []
    # x2 is 6% null: a per-column threshold of 1% flags it, for that column only
    tight = Rules(
        **{**RULES.__dict__, "policy": Policy({}, {"x2": {"null_rate": Override(None, 0.01)}})}
    )
    report = validate(make_frame("binary"), contract, tight)
    assert [(p.column, p.rule) for p in report.problems] == [("x2", "null_rate<=0.01")]
    assert report.dropped == ["x2"] and report.ok


def test_duplicates_are_judged_on_every_entity_key(contract: FeatureContract) -> None:
    two = FeatureContract(
        contract.feature_service,
        (*contract.entity_keys, contract.entity_keys[0].__class__("shop", "string", "shop")),
        contract.features,
        contract.request_fields,
    )
    rules = Rules(**{**RULES.__dict__, "entity_keys": ("key", "shop")})
    df = make_frame("binary")
    doubled = pd.concat([df.assign(shop="a"), df.iloc[:10].assign(shop="b")], ignore_index=True)
    assert validate(doubled, two, rules).ok  # same key and time, another shop: distinct rows
    again = pd.concat([doubled, doubled.iloc[:3]], ignore_index=True)
    found = {(p.column, p.rule) for p in validate(again, two, rules).errors}
    assert ("key, shop, ts", "unique_entity_timestamp") in found
