"""Faults, repeats and overload: nothing lost, nothing half-written, nothing dies.

- a crash after select-champion leaves the previous champion serving;
- materializing twice changes nothing; killing materialization part-way and running it
  again leaves the online store equal to the latest offline values (SQLite and Redis);
- a killed model server answers again once started; `crispops run` killed mid-pipeline
  completes when started again, with a consistent champion;
- above its concurrency limit the server sheds load with 503s and recovers.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from crispops.champion import read_champion
from crispops.config import load_settings
from crispops.orchestration.local import run_training
from crispops.steps.features import apply, check, materialize
from support.online_store import KILLER, REDIS_YAML, view_ends
from support.projects import copy_project, fast_settings, weaken_champion
from support.servers import serve_bento
from tests.conftest import service_available

pytestmark = [pytest.mark.integration, pytest.mark.slow]


# -- promotion safety -----------------------------------------------------------------------
def test_crash_after_select_champion_keeps_the_previous_champion(
    trained_project: Path, tmp_path: Path
) -> None:
    project = copy_project(trained_project, tmp_path / "p")
    s = load_settings(project)
    # Make the serving champion a weak model, so this run's candidates beat it ...
    champion = weaken_champion(project, tmp_path / "weak.joblib")
    # ... forget the models packaged so far (this run retrains the same model, whose Bento
    # the package step would otherwise reuse without building) ...
    s.models_file.unlink()
    # ... and make packaging crash: its build directory is a file.
    shutil.rmtree(s.state_path / "build", ignore_errors=True)
    (s.state_path / "build").write_text("not a directory")
    result = run_training(fast_settings(project))
    assert not result.ok
    assert result.failed_step == "package"
    assert result.decision is not None and result.decision["promote"] is True
    assert read_champion(s.champion_file) == champion  # the previous champion still serves


# -- materialization ------------------------------------------------------------------------
@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_materialization_is_idempotent_and_survives_a_kill(
    store: str, demo_project: Path, tmp_path: Path
) -> None:
    if store == "redis":
        service_available("127.0.0.1", 6379, "Redis")
    project = tmp_path / "p"
    shutil.copytree(demo_project, project, ignore=shutil.ignore_patterns("*.db", ".crispops"))
    repo = project / "feature_repo"
    config: str | None = None
    if store == "redis":
        config = "feature_store.redis.yaml"
        name = f"crispops_rel_{os.getpid()}_{int(time.time())}"
        (repo / config).write_text(REDIS_YAML.format(project=name))
    apply(repo, config_file=config)
    # killed part-way at several points, then run again to completion
    states = []
    for when in ("between-views", "0.05", "0.3"):
        proc = subprocess.run(
            [sys.executable, "-c", KILLER, str(repo), config or "", when],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
        states.append(view_ends(repo, config))
    materialize(repo, config_file=config)
    first = check(repo, "credit_default_v1", sample=60, config_file=config)
    assert first.ok, first.mismatches[:3]
    # the same window again changes nothing
    materialize(repo, config_file=config)
    second = check(repo, "credit_default_v1", sample=60, config_file=config)
    assert second.ok and second.compared == first.compared
    # the first kill left one view materialized and the other not: a partial state
    assert sorted(v is None for v in states[0].values()) == [False, True], states[0]


# -- restarts -------------------------------------------------------------------------------
def test_model_server_answers_again_after_a_kill(trained_project: Path, tmp_path: Path) -> None:
    server = serve_bento(trained_project, tmp_path)
    try:
        assert httpx.get(server.url + "/readyz", timeout=5).status_code == 200
        server.kill(signal.SIGKILL)  # the server and its workers, without warning
        server.proc.wait(timeout=10)
        with pytest.raises(httpx.HTTPError):
            httpx.get(server.url + "/readyz", timeout=2)
    finally:
        server.stop()
    again = serve_bento(trained_project, tmp_path)
    try:
        meta = httpx.get(again.url + "/metadata", timeout=5)
        assert meta.status_code == 200 and meta.json()["model_tag"]
    finally:
        again.stop()


def test_run_killed_mid_pipeline_completes_when_started_again(
    demo_project: Path, tmp_path: Path
) -> None:
    project = copy_project(demo_project, tmp_path / "p", keep_state=False)
    toml = project / "crispops.toml"
    toml.write_text(toml.read_text().replace("max_depth = [8, 14]", "max_depth = [6]"))
    cli = [sys.executable, "-m", "crispops.cli", "run", "-p", str(project)]
    proc = subprocess.Popen(
        cli, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    seen = []
    deadline = time.monotonic() + 240
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if "> train" in line or time.monotonic() > deadline:
            break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert any("> train" in ln for ln in seen), "".join(seen)[-2000:]
    s = load_settings(project)
    assert read_champion(s.champion_file) is None  # killed before package: nothing promoted
    again = subprocess.run(cli, capture_output=True, text=True, timeout=400, check=False)
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    champion = read_champion(s.champion_file)
    assert champion is not None
    assert Path(champion.model_file).is_file()
    bento = s.bentoml_home / "bentos" / champion.bento_tag.replace(":", "/")
    assert (bento / "bento.yaml").is_file()
    assert json.loads(s.champion_file.read_text())["run_id"] == champion.run_id


# -- overload -------------------------------------------------------------------------------
def test_overload_sheds_503_and_recovers(trained_project: Path, tmp_path: Path) -> None:
    record = _record(trained_project)
    server = serve_bento(trained_project, tmp_path, {"CRISPOPS_SERVING__MAX_CONCURRENCY": "2"})
    statuses: list[int] = []
    lock = threading.Lock()

    def hammer(stop: float) -> None:
        with httpx.Client(timeout=10) as client:
            while time.monotonic() < stop:
                try:
                    code = client.post(server.url + "/predict_entity", json=record).status_code
                except httpx.HTTPError:
                    code = -1
                with lock:
                    statuses.append(code)

    try:
        stop = time.monotonic() + 4
        threads = [threading.Thread(target=hammer, args=(stop,)) for _ in range(24)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert 503 in statuses, sorted(set(statuses))
        assert set(statuses) <= {200, 503}, sorted(set(statuses))
        # once the load drops, every request is answered
        calm = [
            httpx.post(server.url + "/predict_entity", json=record, timeout=10).status_code
            for _ in range(20)
        ]
        assert calm == [200] * 20
        assert server.proc.poll() is None
    finally:
        server.stop()


def _record(project: Path) -> dict:
    import pandas as pd

    s = load_settings(project)
    key = int(pd.read_parquet(s.label_source_path)[s.data.join_keys[0]].iloc[-1])
    return {
        "records": [{s.data.join_keys[0]: key, "requested_amount": 9000.0, "term_months": 36}] * 20
    }
