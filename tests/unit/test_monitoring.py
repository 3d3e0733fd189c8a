"""The monitor's pure parts: drift against a training profile, realized metrics, the
retraining policy and its ledger."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as M

from crispops.contract import FeatureContract, FieldSpec
from crispops.monitoring.drift import (
    feature_drift,
    prediction_drift,
    score_profile,
)
from crispops.monitoring.policy import (
    Figures,
    LedgerError,
    Thresholds,
    action_key,
    decide,
    find_action,
    last_action_time,
    read_ledger,
    record_action,
)
from crispops.monitoring.realized import realized_metrics
from crispops.steps import validate as va

NOW = datetime(2026, 12, 2, 12, 30, tzinfo=UTC)


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "id": np.arange(n),
            "ts": pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(np.arange(n), "h"),
            "y": rng.integers(0, 2, n),
            "income": rng.normal(50_000, 10_000, n),
            "age": rng.integers(18, 80, n).astype(float),
            "city": rng.choice(["a", "b", "c", "d"], n, p=[0.4, 0.3, 0.2, 0.1]),
            "plan": rng.choice(["x", "y"], n),
        }
    )


def _profile(df: pd.DataFrame) -> dict:
    contract = FeatureContract(
        feature_service="fs",
        entity_keys=(FieldSpec("id", "int", "e"),),
        features=(
            FieldSpec("income", "float", "v"),
            FieldSpec("age", "float", "v"),
            FieldSpec("city", "string", "v"),
            FieldSpec("plan", "string", "v"),
        ),
    )
    rules = va.Rules(entity_keys=("id",), timestamp="ts", label="y", task="binary")
    return va.profile(df, contract, rules)


def test_shifted_features_drift_and_unshifted_do_not() -> None:
    profile = _profile(_frame(4000, 1))
    window = _frame(1000, 2)
    window["income"] = window["income"] + 15_000  # 1.5 std
    window["city"] = np.where(np.arange(1000) % 2 == 0, "d", window["city"])
    drift = feature_drift(window, profile, threshold=0.25)
    assert set(drift) == {"income", "age", "city", "plan"}
    assert {n for n, d in drift.items() if d.drifted} == {"income", "city"}
    assert drift["income"].wasserstein == pytest.approx(1.5, abs=0.2)
    assert drift["age"].wasserstein is not None and drift["age"].wasserstein < 0.1
    assert drift["city"].js is not None and drift["city"].js > drift["plan"].js  # type: ignore[operator]
    assert drift["plan"].psi < 0.05


def test_unseen_category_counts_as_drift() -> None:
    profile = _profile(_frame(2000, 1))
    window = _frame(500, 3)
    window["plan"] = "z"
    d = feature_drift(window, profile, threshold=0.25)["plan"]
    assert d.drifted and d.unseen == ("z",)
    assert d.js == pytest.approx(1.0, abs=1e-6)


def test_prediction_drift_against_holdout_scores() -> None:
    rng = np.random.default_rng(0)
    ref = score_profile(rng.beta(2, 5, 3000))
    same = prediction_drift(pd.Series(rng.beta(2, 5, 800)), ref)
    moved = prediction_drift(pd.Series(rng.beta(5, 2, 800)), ref)
    assert same.psi is not None and same.psi < 0.1
    assert moved.psi is not None and moved.psi > 1.0
    assert prediction_drift(pd.Series([0.1, 0.2]), None).psi is None


def _logged(y: list, pred: list, score: list) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "label": [json.dumps(v) for v in y],
            "prediction": [json.dumps(v) for v in pred],
            "score": score,
            "probabilities": [json.dumps({"0": 1 - s, "1": s}) for s in score],
        }
    )


def test_realized_binary_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 300)
    p = np.clip(y * 0.3 + rng.uniform(0, 0.7, 300), 0, 1)
    pred = (p >= 0.5).astype(int)
    r = realized_metrics(_logged(y.tolist(), pred.tolist(), p.tolist()), "binary", ["0", "1"])
    assert r.labels == 300
    assert r.metrics["roc_auc"] == pytest.approx(M.roc_auc_score(y, p))
    assert r.metrics["accuracy"] == pytest.approx(M.accuracy_score(y, pred))
    assert r.metrics["f1"] == pytest.approx(M.f1_score(y, pred))
    assert r.metrics["brier"] == pytest.approx(M.brier_score_loss(y, p))


def test_realized_regression_and_one_class() -> None:
    df = _logged([1.0, 2.0, 4.0], [1.5, 2.0, 3.0], [1.5, 2.0, 3.0])
    r = realized_metrics(df, "regression", None)
    assert r.metrics["mae"] == pytest.approx(0.5)
    assert r.metrics["rmse"] == pytest.approx(np.sqrt((0.25 + 0 + 1) / 3))
    one = realized_metrics(_logged([1, 1], [1, 0], [0.9, 0.4]), "binary", ["0", "1"])
    assert "roc_auc" not in one.metrics and "one class" in one.skipped["roc_auc"]


T = Thresholds(
    drift_share=0.3,
    prediction_psi=0.25,
    metric_drop=0.05,
    min_rows=200,
    min_labels=100,
    cooldown=timedelta(days=1),
)


def _figures(**kw: object) -> Figures:
    base: dict = dict(
        rows=1000,
        features=10,
        drifted=[],
        prediction_psi=0.05,
        labels=500,
        metric="roc_auc",
        realized=0.80,
        holdout=0.81,
        higher_is_better=True,
    )
    return Figures(**{**base, **kw})


def test_all_clear() -> None:
    d = decide(_figures(), T, None, NOW)
    assert d.retrain is False and d.reasons[0].startswith("all clear")
    assert set(d.checks.values()) == {"ok"}


def test_drift_share() -> None:
    assert decide(_figures(drifted=["a", "b", "c"]), T, None, NOW).retrain is False  # 30%
    d = decide(_figures(drifted=["a", "b", "c", "d"]), T, None, NOW)
    assert d.retrain is True and "4 of 10 features drifted" in d.reasons[0]
    assert d.checks["feature_drift"] == "fired"


def test_prediction_drift_fires() -> None:
    d = decide(_figures(prediction_psi=0.4), T, None, NOW)
    assert d.retrain is True and "score PSI 0.400" in d.reasons[0]


def test_metric_drop_in_each_direction() -> None:
    assert decide(_figures(realized=0.75), T, None, NOW).retrain is True
    assert decide(_figures(realized=0.77), T, None, NOW).retrain is False
    rmse = dict(metric="rmse", higher_is_better=False, holdout=1.0)
    assert decide(_figures(realized=1.1, **rmse), T, None, NOW).retrain is True
    assert decide(_figures(realized=0.5, **rmse), T, None, NOW).retrain is False


def test_too_few_rows_or_labels_is_no_decision() -> None:
    d = decide(_figures(rows=50), T, None, NOW)
    assert d.retrain is None and "50 < min_rows 200" in " ".join(d.reasons)
    d = decide(_figures(labels=10), T, None, NOW)
    assert d.retrain is None and "10 < min_labels 100" in " ".join(d.reasons)
    assert d.checks == {"feature_drift": "ok", "prediction_drift": "ok", "metric": "not judged"}
    # drift fires even without labels
    assert decide(_figures(labels=0, prediction_psi=1.0), T, None, NOW).retrain is True


def test_cooldown() -> None:
    fired = _figures(prediction_psi=1.0)
    d = decide(fired, T, NOW - timedelta(hours=3), NOW)
    assert d.retrain is False and "cooldown" in d.reasons[-1]
    assert decide(fired, T, NOW - timedelta(days=2), NOW).retrain is True


def test_ledger_round_trip_and_keys(tmp_path: Path) -> None:
    path = tmp_path / "actions.json"
    assert read_ledger(path) == []
    key = action_key("m:1", "1d", NOW)
    assert key == action_key("m:1", "1d", NOW + timedelta(minutes=20))
    assert key != action_key("m:1", "1d", NOW + timedelta(hours=1))
    assert key != action_key("m:2", "1d", NOW)
    record_action(path, {"key": key, "at": NOW.isoformat(), "status": "started"})
    record_action(path, {"key": key, "at": NOW.isoformat(), "status": "done"})
    actions = read_ledger(path)
    assert len(actions) == 1 and find_action(actions, key)["status"] == "done"  # type: ignore[index]
    assert last_action_time(actions) == NOW
    path.write_text("[1, 2")
    with pytest.raises(LedgerError, match=r"actions\.json"):
        read_ledger(path)


def test_realized_multiclass_matches_sklearn() -> None:
    rng = np.random.default_rng(5)
    classes = ["a", "b", "c"]
    y = rng.choice(classes, 200)
    raw = rng.dirichlet([1, 1, 1], 200)
    pred = np.asarray(classes)[raw.argmax(axis=1)]
    df = pd.DataFrame(
        {
            "label": [json.dumps(v) for v in y],
            "prediction": [json.dumps(v) for v in pred],
            "score": raw.max(axis=1),
            "probabilities": [json.dumps(dict(zip(classes, r.tolist(), strict=True))) for r in raw],
        }
    )
    r = realized_metrics(df, "multiclass", classes)
    assert r.metrics["accuracy"] == pytest.approx(M.accuracy_score(y, pred))
    assert r.metrics["macro_f1"] == pytest.approx(M.f1_score(y, pred, average="macro"))
    assert r.metrics["log_loss"] == pytest.approx(M.log_loss(y, raw, labels=classes))


def _report_parts() -> tuple[dict, pd.DataFrame, dict, pd.DataFrame, dict]:
    profile = _profile(_frame(2000, 1))
    window = _frame(400, 2)
    window["income"] += 20_000
    drift = feature_drift(window, profile, threshold=0.25)
    rng = np.random.default_rng(1)
    ref = score_profile(rng.beta(2, 5, 1000))
    preds = pd.DataFrame({"score": rng.beta(2, 5, 400)})
    pd_ = prediction_drift(preds["score"], ref)
    figures = _figures(rows=400, features=len(drift), drifted=["income"], labels=0)
    decision = decide(figures, T, None, NOW)
    report = {
        "model_tag": "m:1",
        "window": {
            "start": "2026-12-01T12:00:00+00:00",
            "end": "2026-12-02T12:00:00+00:00",
            "length": "1d",
        },
        "features": {n: d.to_dict() for n, d in drift.items()},
        "drifted_share": 0.25,
        "predictions": {**pd_.to_dict(), "logged": 400, "other_models": 0},
        "labels": {"joined": 0, "share": 0.0},
        "realized": {},
        "holdout": {"metric": "roc_auc", "roc_auc": 0.8},
        "decision": decision.to_dict(),
        "thresholds": {
            "drift_psi": 0.25,
            "prediction_psi": 0.25,
            "metric_drop": 0.05,
            "min_labels": 100,
        },
        "generated_at": NOW.isoformat(),
    }
    return report, window, profile, preds, ref


def test_html_report_is_self_contained_with_a_plot_per_feature() -> None:
    from crispops.monitoring.report import html_report

    report, window, profile, preds, ref = _report_parts()
    page = html_report(report, window, profile, preds, ref)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<script" not in page and "http://" not in page and "https://" not in page
    # four features and the score distribution
    assert page.count('src="data:image/png;base64,') == 5
    assert "no decision" in page and "class='drifted'" in page
    assert report["decision"]["retrain"] is None


def test_prometheus_text_parses_and_carries_the_figures() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from crispops.monitoring.report import prometheus_text

    report, *_ = _report_parts()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(prometheus_text(report))
        for s in fam.samples
    }
    model = ("model_tag", "m:1")
    income = ("feature", "income")
    assert samples[("crispops_monitor_feature_drifted", (income, model))] == 1.0
    assert samples[("crispops_monitor_feature_psi", (income, model))] == pytest.approx(
        report["features"]["income"]["psi"]
    )
    assert samples[("crispops_monitor_retrain", (model,))] == -1.0
    assert samples[("crispops_monitor_predictions", (model,))] == 400
