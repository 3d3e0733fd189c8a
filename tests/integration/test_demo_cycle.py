"""`crispops demo-cycle`: the loop closing once, with every part real: a `bentoml serve`
process logging what it answers, labels returned over HTTP, the monitor's verdict and
a training run that the gate judges."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from crispops.champion import read_champion
from crispops.config import load_settings
from crispops.monitoring.store import ParquetSink
from support.projects import FAST_CANDIDATES, copy_project

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REQUESTS = 300
CLI = [sys.executable, "-m", "crispops.cli"]


def test_demo_cycle_serves_takes_labels_back_monitors_and_retrains(
    tmp_path: Path, trained_project: Path
) -> None:
    project = copy_project(trained_project, tmp_path / "cycle", keep_state=True)
    s = load_settings(project)
    labels_before = len(pd.read_parquet(s.label_source_path))
    before = read_champion(s.champion_file)
    assert before is not None
    env = {**os.environ, "CRISPOPS_TRAINING__CANDIDATES": json.dumps(FAST_CANDIDATES)}
    done = subprocess.run(
        [*CLI, "demo-cycle", "-p", str(project), "--requests", str(REQUESTS)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    steps = ["1. champion", "2. the world moves", "3. labels back", "4. the warehouse"]
    for step in [*steps, "5. monitor --act", "decision: retrain", "6. "]:
        assert step in out, f"{step!r} not printed:\n{out[-3000:]}"
    assert "Traceback" not in out

    # what the service answered was logged, and every label came back to it
    sink = ParquetSink(s.monitoring_path)
    logged = sink.read_predictions()
    assert len(logged) == REQUESTS
    assert set(logged["model_tag"]) == {before.model_tag}
    labels = sink.read_feedback()
    assert set(labels["request_id"]) == set(logged["request_id"])
    assert f"{REQUESTS} accepted by /feedback, 0 rejected" in out
    # the warehouse recorded the outcomes, and the retraining read them
    assert len(pd.read_parquet(s.label_source_path)) == labels_before + REQUESTS
    ledger = json.loads((s.monitoring_path / "actions.json").read_text())
    (action,) = ledger["actions"]
    assert action["status"] == "completed"
    after = read_champion(s.champion_file)
    assert after is not None
    if action["promoted"]:
        assert after.model_tag != before.model_tag
        assert f"6. new champion {after.model_tag}" in out
    else:
        assert after.model_tag == before.model_tag
        assert f"6. champion kept: {before.model_tag}" in out


def test_demo_cycle_without_a_champion_says_what_to_do(tmp_path: Path, demo_project: Path) -> None:
    project = copy_project(demo_project, tmp_path / "none", keep_state=False, materialized=False)
    done = subprocess.run(
        [*CLI, "demo-cycle", "-p", str(project)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    said = " ".join(done.stderr.split())  # the console wraps long lines
    assert "no champion yet" in said and "run `crispops demo` first" in said
    assert "Traceback" not in done.stdout + done.stderr
