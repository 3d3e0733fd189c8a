"""`crispops rollout analyze` over a real parquet prediction log, `crispops models`, and
`crispops deploy --challenger --dry-run` (rendered, nothing applied)."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from crispops.champion import Champion, write_champion
from crispops.cli import app
from crispops.cli.rollout import EXIT_WAIT
from crispops.config import load_settings
from crispops.monitoring.store import ParquetSink, PredictionRecord, now
from crispops.registry import ModelEntry, Status, register

ROOT = Path(__file__).resolve().parents[2]
ENV = {"COLUMNS": "300", "CRISPOPS_DEBUG": ""}
V1, V2 = "credit_default_v1:aaa111", "credit_default_v1:bbb222"


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "crispops.toml", tmp_path / "crispops.toml")
    s = load_settings(tmp_path)
    write_champion(s.champion_file, Champion(V1, V1, "/nowhere", "linear", "roc_auc", 0.75))
    register(s.models_file, ModelEntry(V1, V1, Status.CHAMPION.value, "roc_auc", 0.75))
    register(s.models_file, ModelEntry(V2, V2, Status.CHALLENGER.value, "roc_auc", 0.74))
    return tmp_path


def log(project: Path, per_arm: int, shift: float = 0.0) -> None:
    s = load_settings(project)
    rng = np.random.default_rng(0)
    t = now() - timedelta(minutes=5)
    records = [
        PredictionRecord(
            request_id=f"{tag}-{i}",
            ts=t,
            model_tag=tag,
            endpoint="predict",
            prediction=0,
            score=float(np.clip(rng.beta(2, 5) + (shift if tag == V2 else 0), 0, 1)),
        )
        for tag in (V1, V2)
        for i in range(per_arm)
    ]
    ParquetSink(s.monitoring_path).write_predictions(records)


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args), env=ENV)


def test_analyze_passes_alike_arms_waits_on_few_and_fails_a_shift(project: Path) -> None:
    log(project, 300)
    out = invoke("rollout", "analyze", "-p", str(project), "--json")
    assert out.exit_code == 0, out.output
    verdict = json.loads(out.stdout)
    assert verdict["status"] == "pass" and verdict["measurements"]["challenger_requests"] == 300

    shifted = project.parent / "shifted"
    shutil.copytree(project, shifted)
    shutil.rmtree(load_settings(shifted).monitoring_path)
    log(shifted, 300, shift=0.4)
    out = invoke("rollout", "analyze", "-p", str(shifted), "--challenger", V2)
    assert out.exit_code == 1 and "score PSI" in out.stdout


def test_analyze_waits_on_too_few_requests(project: Path) -> None:
    log(project, 20)
    out = invoke("rollout", "analyze", "-p", str(project), "--window", "1h")
    assert out.exit_code == EXIT_WAIT and "wait" in out.stdout


def test_analyze_rejects_a_bad_window_and_an_unknown_challenger(project: Path) -> None:
    out = invoke("rollout", "analyze", "-p", str(project), "--window", "soon")
    assert out.exit_code == 2 and "--window 'soon'" in out.output
    out = invoke("rollout", "analyze", "-p", str(project), "--challenger", "nope:1")
    assert out.exit_code == 2 and "no model 'nope:1'" in out.output


def test_models_lists_the_registry(project: Path) -> None:
    out = invoke("models", "-p", str(project), "--json")
    assert out.exit_code == 0
    assert [(m["model_tag"], m["status"]) for m in json.loads(out.stdout)] == [
        (V1, "champion"),
        (V2, "challenger"),
    ]
    table = invoke("models", "-p", str(project))
    assert V2 in table.stdout and "challenger" in table.stdout


def test_deploy_challenger_dry_run_renders_both_models(project: Path) -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl not found")
    out = invoke(
        "deploy",
        "--overlay",
        "dev",
        "--bento",
        V1,
        "--challenger",
        V2,
        "--strategy",
        "shadow",
        "--steps",
        "5,100",
        "--dry-run",
        "-p",
        str(project),
    )
    assert out.exit_code == 0, out.output
    docs = list(yaml.safe_load_all(out.stdout))
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert ("Deployment", "crispops-model-service-challenger") in names
    [cm] = [d for d in docs if d["metadata"]["name"] == "crispops-rollout"]
    assert json.loads(cm["data"]["rollout.json"])["mode"] == "shadow"
    bad = invoke(
        "deploy",
        "--overlay",
        "dev",
        "--bento",
        V1,
        "--challenger",
        V2,
        "--steps",
        "50,10",
        "--dry-run",
        "-p",
        str(project),
    )
    assert bad.exit_code == 2 and "--steps '50,10'" in bad.output
