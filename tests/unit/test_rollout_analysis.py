"""The rollout analysis' decisions on hand-built prediction frames: pass, fail, wait."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crispops.config import RolloutSettings
from crispops.monitoring.analysis import Window, analyze, psi
from crispops.monitoring.prometheus import ArmMetrics, LiveMetrics, queries

ROOT = Path(__file__).resolve().parents[2]
LIMITS = RolloutSettings(min_requests=200, min_labels=100)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def arm(
    tag: str,
    n: int,
    *,
    seed: int,
    shift: float = 0.0,
    errors: float = 0.0,
    latency: float = 20.0,
    ids: str | None = None,
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    score = np.clip(rng.beta(2, 5, n) + shift, 0, 1)
    return pd.DataFrame(
        {
            "request_id": [f"{ids or tag}-{i}" for i in range(n)],
            "ts": [T0 + timedelta(seconds=i) for i in range(n)],
            "model_tag": tag,
            "endpoint": "predict",
            "score": score,
            "prediction": [json.dumps(int(p > 0.5)) for p in score],
            "error": rng.random(n) < errors,
            "latency_s": rng.gamma(4, latency / 4, n) / 1000.0,  # as the service logs it
        }
    )


def window(*frames: pd.DataFrame, mode: str = "canary", feedback=None) -> Window:  # type: ignore[no-untyped-def]
    return Window(pd.concat(frames, ignore_index=True), "champ", "chall", mode, "binary", feedback)  # type: ignore[arg-type]


def test_alike_arms_pass() -> None:
    v = analyze(window(arm("champ", 600, seed=1), arm("chall", 400, seed=2)), LIMITS)
    assert v.status == "pass", v.reasons
    assert v.measurements["psi"] < 0.1 and v.measurements["challenger_requests"] == 400


def test_too_few_requests_waits_even_when_alike() -> None:
    v = analyze(window(arm("champ", 600, seed=1), arm("chall", 150, seed=2)), LIMITS)
    assert v.status == "wait"
    assert "challenger has 150 of the 200 requests needed" in v.reasons[0]


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        ({"errors": 0.08}, "error rate"),
        ({"latency": 60.0}, "p99"),
        ({"shift": 0.35}, "score PSI"),
    ],
)
def test_a_bad_challenger_fails_with_the_reason(bad: dict, needle: str) -> None:  # type: ignore[type-arg]
    v = analyze(window(arm("champ", 600, seed=1), arm("chall", 600, seed=2, **bad)), LIMITS)
    assert v.status == "fail", v.reasons
    assert needle in v.reasons[0]


def test_shadow_agreement_is_measured_on_pairs() -> None:
    champ = arm("champ", 400, seed=1, ids="r")
    same = arm("chall", 400, seed=1, ids="r")  # the same records, the same answers
    assert analyze(window(champ, same, mode="shadow"), LIMITS).measurements["agreement"] == 1.0
    suffixed = same.assign(request_id=[f"{r}#shadow" for r in same["request_id"]])
    assert (
        analyze(window(champ, suffixed, mode="shadow"), LIMITS).measurements["shadow_pairs"] == 400
    )
    flipped = same.assign(prediction=[json.dumps(1 - json.loads(p)) for p in same["prediction"]])
    v = analyze(window(champ, flipped, mode="shadow"), LIMITS)
    assert v.status == "fail" and "shadow agreement 0.0%" in v.reasons[0]


def test_realized_metric_drop_fails_once_labels_came_back() -> None:
    champ = arm("champ", 400, seed=1)
    chall = arm("chall", 400, seed=2)
    rng = np.random.default_rng(3)
    # Labels that follow the champion's scores and are noise for the challenger's.
    labels = list((rng.random(400) < champ["score"]).astype(int)) + list(rng.integers(0, 2, 400))
    feedback = pd.DataFrame(
        {
            "request_id": list(champ["request_id"]) + list(chall["request_id"]),
            "label": [json.dumps(int(v)) for v in labels],
            "observed_at": T0,
            "received_at": T0,
        }
    )
    v = analyze(window(champ, chall, feedback=feedback), LIMITS)
    assert v.status == "fail", v.reasons
    assert v.measurements["metric"] == "roc_auc"
    assert v.measurements["champion_metric"] > v.measurements["challenger_metric"] + 0.1


def test_psi_is_zero_for_one_distribution_and_grows_with_shift() -> None:
    x = np.random.default_rng(0).normal(size=5000)
    assert psi(x, x) == pytest.approx(0.0, abs=1e-9)
    assert psi(x, x + 0.2) < psi(x, x + 1.0)


def test_steps_must_increase_to_100() -> None:
    with pytest.raises(ValueError, match="end at 100"):
        RolloutSettings(steps=[10, 50])
    with pytest.raises(ValueError, match="increase"):
        RolloutSettings(steps=[50, 10, 100])


def live(**arms: ArmMetrics) -> LiveMetrics:
    return LiveMetrics("http://prom:9090", "1h", dict(arms))


def test_prometheus_figures_replace_the_logs_error_rate_and_p99() -> None:
    # the log's arms are alike (they would pass); Prometheus saw the challenger erring
    frames = arm("champ", 600, seed=1), arm("chall", 600, seed=2)
    seen = live(
        champ=ArmMetrics(requests=1000, errors=0, p99_ms=20.0),
        chall=ArmMetrics(requests=1000, errors=50, p99_ms=45.0),
    )
    w = window(*frames)
    v = analyze(Window(w.predictions, "champ", "chall", live=seen), LIMITS)
    assert v.status == "fail", v.reasons
    assert v.measurements["challenger_error_rate"] == 0.05
    assert v.measurements["challenger_p99_ms"] == 45.0 and v.measurements["p99_ratio"] == 2.25
    assert v.reasons[0].startswith("error rate 5.00%") and v.reasons[0].endswith("(Prometheus)")
    assert "p99 45.0 ms vs 20.0 ms" in v.reasons[1]
    assert analyze(w, LIMITS).status == "pass"  # the same log without Prometheus


def test_an_arm_prometheus_has_no_series_of_waits() -> None:
    frames = arm("champ", 600, seed=1), arm("chall", 600, seed=2)
    seen = live(champ=ArmMetrics(requests=1000, errors=0, p99_ms=20.0))
    v = analyze(Window(window(*frames).predictions, "champ", "chall", live=seen), LIMITS)
    assert v.status == "wait"
    assert (
        "http://prom:9090 has no crispops_predictions_total series of the challenger"
        in (v.reasons[0])
    )


def test_the_queries_use_the_services_metric_names_window_and_selector() -> None:
    q = queries(3600, 'job="crispops"')
    assert q["requests"] == (
        'sum by (model_tag) (increase(crispops_predictions_total{job="crispops"}[3600s]))'
    )
    assert 'crispops_predictions_total{job="crispops",outcome="error"}[3600s]' in q["errors"]
    assert q["p99"].startswith("histogram_quantile(0.99, sum by (model_tag, le)")
    assert 'crispops_predict_seconds_bucket{job="crispops"}[3600s]' in q["p99"]
    assert "{" not in queries(90)["requests"]  # no selector: every series


def test_the_cluster_loop_waits_when_prometheus_cannot_answer(tmp_path: Path) -> None:
    from crispops.cli.rollout import log_analysis
    from crispops.cluster.progressive import RolloutState
    from crispops.config import load_settings

    shutil.copy(ROOT / "crispops.toml", tmp_path / "crispops.toml")
    s = load_settings(tmp_path, rollout={"prometheus_url": "http://127.0.0.1:9"})
    state = RolloutState("canary", [10, 50, 100], 0, "m:champ", "m:chall", "crispops")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("crispops.cli.rollout.model_tag", lambda _s, tag: tag)
        v = log_analysis(s)(state)
    assert v.status == "wait"
    assert "Prometheus at http://127.0.0.1:9 is not reachable" in v.reasons[0]
