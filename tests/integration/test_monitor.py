"""`crispops monitor` on a trained champion: its own training rows logged as served
traffic (no server), some shifted, some labelled; the report, the policy and --act.

Each test monitors a private copy of the session's trained project (settings and the
champion pointer; the champion's model stays where the training run packaged it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn import metrics as M

from crispops.config import load_settings
from crispops.monitoring.store import PostgresSink
from crispops.monitoring.watch import act, monitor
from support.monitoring import log_predictions, return_labels, training_rows
from support.projects import FAST_CANDIDATES, copy_project
from tests.conftest import service_available

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLI = [sys.executable, "-m", "crispops.cli"]
#: On the hour: END and END + 1 minute are the same window (its length, its end's hour).
END = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
SHIFTED = {"annual_income", "home_ownership"}


def crispops(*args: str, env: dict[str, str] | None = None, timeout: float = 400) -> Any:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture()
def watched(tmp_path: Path, trained_project: Path) -> Path:
    """The trained project's settings and champion pointer, with an empty log."""
    dest = tmp_path / "watched"
    shutil.copytree(
        trained_project,
        dest,
        ignore=shutil.ignore_patterns("runs", "bentoml", "monitoring", "*.db", "build"),
    )
    return dest


@pytest.fixture(scope="module")
def rows(trained_project: Path) -> Any:
    return training_rows(trained_project)


def _shift(rows: Any) -> Any:
    out = rows.copy()
    out["annual_income"] = out["annual_income"] + 2 * out["annual_income"].std()
    out["home_ownership"] = "RENT"
    return out


def test_a_shifted_feature_is_flagged_and_unshifted_ones_not(watched: Path, rows: Any) -> None:
    log_predictions(watched, _shift(rows), end=END)
    result = monitor(load_settings(watched), end=END)
    report = result.report
    assert set(report) >= {"features", "predictions", "labels", "realized", "decision"}
    features = report["features"]
    assert len(features) >= 5
    flagged = {n for n, f in features.items() if f["drifted"]}
    assert flagged == SHIFTED
    for name, f in features.items():
        assert set(f) >= {"psi", "drifted"}
        assert ("wasserstein" in f) != ("js" in f), name
        if name not in SHIFTED:
            assert f["psi"] < 0.1, (name, f)
    assert features["annual_income"]["wasserstein"] == pytest.approx(2.0, abs=0.3)
    assert features["home_ownership"]["js"] > 0.3
    assert report["predictions"]["rows"] == len(rows)
    assert report["labels"]["joined"] == 0 and report["realized"] == {}
    # 2 of ~9 features drifted, under drift_share 0.3; no labels: not all clear
    assert report["decision"]["retrain"] is None
    assert any("min_labels" in r for r in report["decision"]["reasons"])
    on_disk = json.loads(result.json_path.read_text())
    assert on_disk["features"] == features
    assert result.html_path.read_text().startswith("<!DOCTYPE html>")
    prom = result.prom_path.read_text()
    assert 'crispops_monitor_feature_drifted{feature="annual_income"' in prom
    assert "crispops_monitor_retrain" in prom


def test_realized_metrics_match_a_hand_computation(watched: Path, rows: Any) -> None:
    logged = log_predictions(watched, rows, end=END)
    some = logged.iloc[::3]
    return_labels(watched, list(some["request_id"]), list(some["label"]))
    report = monitor(load_settings(watched), end=END).report
    y = some["label"].astype(int).to_numpy()
    pred = some["prediction"].astype(int).to_numpy()
    p = some["score"].to_numpy()
    assert report["labels"]["joined"] == len(some)
    r = report["realized"]
    assert r["roc_auc"] == pytest.approx(M.roc_auc_score(y, p))
    assert r["accuracy"] == pytest.approx(M.accuracy_score(y, pred))
    assert r["f1"] == pytest.approx(M.f1_score(y, pred))
    assert r["log_loss"] == pytest.approx(M.log_loss(y, p))
    # the champion's own training rows: no drift, the metric holds
    assert report["decision"]["retrain"] is False, report["decision"]
    assert report["decision"]["checks"] == {
        "feature_drift": "ok",
        "prediction_drift": "ok",
        "metric": "ok",
    }


def test_too_few_rows_is_no_decision_and_json_prints(watched: Path, rows: Any) -> None:
    log_predictions(watched, _shift(rows).head(50), end=END)
    out = crispops("monitor", "-p", str(watched), "--json", "--end", END.isoformat())
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["decision"]["retrain"] is None
    assert "50 < min_rows 200" in " ".join(report["decision"]["reasons"])
    assert report["predictions"]["rows"] == 50


@pytest.mark.postgres
def test_the_log_in_postgresql(watched: Path, rows: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    service_available("127.0.0.1", 5432, "PostgreSQL")
    dsn = "postgresql://postgres@127.0.0.1:5432/test"
    prefix = "mon" + uuid.uuid4().hex[:8]
    sink = PostgresSink(dsn, prefix=prefix)
    try:
        logged = log_predictions(watched, _shift(rows), end=END, sink=sink)
        return_labels(watched, list(logged["request_id"][:120]), list(logged["label"][:120]), sink)
        monkeypatch.setenv("MON_TEST_DSN", dsn)
        s = load_settings(
            watched,
            monitoring={"sink": "postgres", "dsn_env": "MON_TEST_DSN", "table_prefix": prefix},
        )
        report = monitor(s, end=END).report
        assert {n for n, f in report["features"].items() if f["drifted"]} == SHIFTED
        assert report["labels"]["joined"] == 120 and "roc_auc" in report["realized"]
    finally:
        sink._run(
            "dropping",
            lambda conn: conn.execute(f"DROP TABLE {prefix}_predictions, {prefix}_feedback"),
        )
        sink.close()


def test_an_unreachable_log_is_a_clear_error(watched: Path) -> None:
    env = {
        "CRISPOPS_MONITORING__SINK": "postgres",
        "CRISPOPS_PREDICTION_LOG_DSN": "postgresql://postgres@127.0.0.1:1/test",
    }
    out = crispops("monitor", "-p", str(watched), env=env)
    assert out.returncode == 2, out.stderr
    assert "cannot connect to PostgreSQL" in out.stderr and "Traceback" not in out.stderr
    out = crispops("monitor", "-p", str(watched), env={"CRISPOPS_MONITORING__SINK": "postgres"})
    assert out.returncode == 2 and "CRISPOPS_PREDICTION_LOG_DSN" in out.stderr


def test_predictions_of_other_models_are_not_judged(watched: Path, rows: Any) -> None:
    log_predictions(watched, rows, end=END, model_tag="someone_else:v0")
    report = monitor(load_settings(watched), end=END).report
    assert report["predictions"]["rows"] == 0
    assert report["predictions"]["other_models"] == len(rows)


def test_bad_window_and_no_champion_are_clear_errors(watched: Path, tmp_path: Path) -> None:
    out = crispops("monitor", "-p", str(watched), "--window", "yesterday")
    assert out.returncode == 2 and "--window 'yesterday'" in out.stderr
    assert "Traceback" not in out.stderr
    (watched / ".crispops" / "champion.json").unlink()
    out = crispops("monitor", "-p", str(watched))
    assert out.returncode == 2 and "no champion" in out.stderr


def test_act_on_a_cluster_submits_instead_of_training(watched: Path, rows: Any) -> None:
    log_predictions(watched, _shift(rows), end=END)
    s = load_settings(
        watched,
        monitoring={"drift_share": 0.1},
        cluster={"kfp_host": "http://kfp.invalid:8888"},
    )
    result = monitor(s, end=END)
    assert result.decision["retrain"] is True
    submitted: list[str] = []

    class Run:
        run_id = "kfp-run-1"
        url = "http://kfp.invalid/#/runs/details/kfp-run-1"

    def submit(name: str) -> Run:
        submitted.append(name)
        return Run()

    def train(run_id: str) -> None:
        raise AssertionError("trained locally with cluster.kfp_host set")

    first = act(s, result, train_local=train, submit=submit)
    assert first.acted and first.entry["status"] == "submitted"
    assert first.entry["kfp_run_id"] == "kfp-run-1" and first.entry["reasons"]
    again = act(s, monitor(s, end=END + timedelta(minutes=1)), train_local=train, submit=submit)
    assert not again.acted and "already acted" in again.message
    assert len(submitted) == 1


def test_act_twice_for_the_same_window_trains_once(tmp_path: Path, trained_project: Path) -> None:
    project = copy_project(trained_project, tmp_path / "act", keep_state=True, materialized=False)
    runs = project / ".crispops" / "runs"
    assert not runs.exists()
    log_predictions(project, _shift(training_rows(trained_project)), end=END)
    env = {
        "CRISPOPS_TRAINING__CANDIDATES": json.dumps(FAST_CANDIDATES[:1]),
        # the retrained model is kept (not promoted): the second --act sees the same
        # champion, hence the same (model, window)
        "CRISPOPS_TRAINING__PROMOTION_MARGIN": "1.0",
        "CRISPOPS_MONITORING__DRIFT_SHARE": "0.1",
    }
    args = ["monitor", "-p", str(project), "--act", "--end", END.isoformat()]
    first = crispops(*args, env=env)
    out = first.stdout + first.stderr
    assert first.returncode == 0, out[-3000:]
    assert "decision: retrain" in out and "acted" in out
    assert len(list(runs.iterdir())) == 1
    ledger = json.loads((project / ".crispops" / "monitoring" / "actions.json").read_text())
    (entry,) = ledger["actions"]
    assert entry["status"] == "completed" and entry["kind"] == "local"
    assert entry["promoted"] is False  # promotion_margin 1.0: the gate kept the champion
    assert any("features drifted" in r for r in entry["reasons"])
    second = crispops(*args, env=env)
    assert second.returncode == 0, second.stderr
    assert "already acted on this window" in second.stdout
    assert len(list(runs.iterdir())) == 1, "the second --act trained again"


# The report in a browser ----------------------------------------------------------------


@pytest.mark.browser
def test_the_report_renders_in_headless_chromium(watched: Path, rows: Any, tmp_path: Path) -> None:
    from tests.integration.test_explore_browser import _chromium, _run_chromium

    browser = _chromium()
    logged = log_predictions(watched, _shift(rows), end=END)
    return_labels(watched, list(logged["request_id"][:150]), list(logged["label"][:150]))
    result = monitor(load_settings(watched), end=END)
    page = result.html_path.read_text()
    assert "http://" not in page and "https://" not in page and "<script" not in page
    url = result.html_path.as_uri()
    dom = _run_chromium(browser, tmp_path / "profile", url, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    for heading in ("Summary", "Feature drift", "Prediction drift", "Realized metrics"):
        assert f"<h2>{heading}</h2>" in dom.stdout
    assert dom.stdout.count("data:image/png;base64,") >= len(result.report["features"])
    shot = tmp_path / "report.png"
    out = _run_chromium(
        browser, tmp_path / "profile2", url, f"--screenshot={shot}", "--window-size=1200,2000"
    )
    assert out.returncode == 0 and shot.is_file() and shot.stat().st_size > 20_000
    from PIL import Image

    with Image.open(shot) as img:
        colors = img.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 50, "the screenshot is blank"
    assert np.isfinite(result.report["realized"]["roc_auc"])
