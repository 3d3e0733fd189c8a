"""The monitoring pipeline: scheduled on Kubeflow Pipelines, and run by kfp.local over a
trained project's prediction log (records written as the service writes them).

A window whose scores drifted is a retrain decision; acting on it from the pipeline
trains once, and a second run for the same window does nothing (the actions ledger).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from crispops.config import load_settings
from crispops.orchestration.compile import pipeline_arguments
from crispops.orchestration.submit import submit
from support.monitoring import log_predictions, training_rows
from support.projects import copy_demo_project, copy_project, fast_settings
from tests.kfp_fake import FakeKFP

pytestmark = pytest.mark.integration

#: A fixed window end, so every run in a test judges the same window whatever the clock.
END = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


@pytest.fixture()
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeKFP]:
    import kfp

    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))
    for name in ("KF_PIPELINES_ENDPOINT", "KF_PIPELINES_UI_ENDPOINT", "KFP_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with FakeKFP() as server:
        yield server


def test_the_monitoring_pipeline_is_scheduled(fake: FakeKFP, tmp_path: Path) -> None:
    settings = load_settings(copy_demo_project(tmp_path / "project"))
    result = submit(settings, host=fake.url, pipeline="monitoring", schedule="15 * * * *")
    upload = fake.one("POST", "/pipelines/upload")
    ir = yaml.safe_load(upload.files["uploadfile"])
    assert ir["pipelineInfo"]["name"] == "crispops-monitoring"
    body = fake.one("POST", "/recurringruns").json
    assert body["trigger"] == {"cron_schedule": {"cron": "0 15 * * * *"}}
    params = body["runtime_config"]["parameters"]
    assert set(params) == set(pipeline_arguments(settings, "monitoring"))
    assert params["act"] is True and params["window"] == settings.monitoring.window
    # No cluster.kfp_host in the project: a retraining it decides on goes to this KFP.
    assert settings.cluster.kfp_host is None
    assert json.loads(params["config"])["cluster"]["kfp_host"] == fake.url
    assert result.recurring_run_id and result.run_id is None


def _run_pipeline(project: Path, root: Path, *, act: bool) -> dict[str, Any]:
    from kfp import local

    from pipelines.monitoring import monitoring_pipeline

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
    s = fast_settings(project)  # a retraining it starts trains the quick candidates
    task = monitoring_pipeline(config=s.to_json(), window="1d", end=END.isoformat(), act=act)
    assert task is not None
    reports = sorted((s.monitoring_path / "reports").glob("*.json"))
    assert reports, f"no report under {s.monitoring_path}"
    return dict(json.loads(reports[-1].read_text()))


def _training_runs(project: Path) -> list[Path]:
    return sorted((load_settings(project).state_path / "runs").glob("*/pipeline.log"))


@pytest.mark.slow
def test_the_pipeline_judges_a_drifted_window_and_acts_once(
    trained_project: Path, tmp_path: Path
) -> None:
    project = copy_project(trained_project, tmp_path / "project")
    rows = training_rows(trained_project)  # a copy keeps no run artifacts
    # Every numeric input moved by two of its standard deviations: the scores move too.
    shifted = rows.copy()
    for c in shifted.select_dtypes("number").columns:
        if c != load_settings(project).data.label:
            shifted[c] = shifted[c] + 2 * float(np.nanstd(shifted[c].to_numpy(dtype=float)))
    log_predictions(project, shifted, end=END - timedelta(minutes=1), spread=timedelta(hours=6))
    before = _training_runs(project)

    report = _run_pipeline(project, tmp_path / "kfp-1", act=True)
    assert report["decision"]["retrain"] is True, report["decision"]
    assert report["predictions"]["rows"] == len(shifted)
    assert any(f["drifted"] for f in report["features"].values())
    after_first = _training_runs(project)
    assert len(after_first) == len(before) + 1, "acting on the decision trains once"

    _run_pipeline(project, tmp_path / "kfp-2", act=True)
    assert _training_runs(project) == after_first, "the same window is never acted on twice"
    ledger = json.loads((load_settings(project).monitoring_path / "actions.json").read_text())
    assert len(ledger["actions"]) == 1 and ledger["actions"][0]["reasons"]
