"""The CLI as a user runs it: real processes, exit codes, messages, no tracebacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "crispops.cli"]


def crispops(
    *args: str, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_run_end_to_end_through_the_cli(fresh_project: Path) -> None:
    (fresh_project / "crispops.toml").write_text(
        (fresh_project / "crispops.toml")
        .read_text()
        .replace("max_depth = [8, 14]", "max_depth = [6]")
        .replace(
            "learning_rate = [0.05, 0.1], max_iter = [150], max_leaf_nodes = [15, 31]",
            "learning_rate = [0.1], max_iter = [60], max_leaf_nodes = [15]",
        )
    )
    result = crispops("run", "--project", str(fresh_project), timeout=400)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    for step in ("ingest", "validate", "explore", "select-champion", "package"):
        assert f"ok {step}" in out
    assert "leaderboard" in out and "champion: model credit_default_v1:" in out
    assert "EDA report:" in out and "Traceback" not in out
    assert (fresh_project / ".crispops" / "champion.json").is_file()


def test_bad_settings_exit_2_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "crispops.toml").write_text(
        (Path(__file__).resolve().parents[2] / "crispops.toml")
        .read_text()
        .replace("promotion_margin = 0.005", "promotion_margin = -3")
    )
    result = crispops("features", "check", "-p", str(tmp_path))
    assert result.returncode == 2
    assert "training.promotion_margin" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    "args", [["run", "--runner", "kubernetes"], ["features", "check", "--sample", "0"], ["nope"]]
)
def test_bad_arguments_are_named(args: list[str], fresh_project: Path) -> None:
    result = crispops(*args, "-p", str(fresh_project)) if args[0] != "nope" else crispops(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert args[-1].split("=")[0] in result.stderr or args[1] in result.stderr


def test_features_check_reports_stale_online_store(fresh_project: Path) -> None:
    import sqlite3

    db = fresh_project / "feature_repo" / "data" / "online_store.db"
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM crispops_demo_account_activity_fv")
    result = crispops("features", "check", "-p", str(fresh_project))
    assert result.returncode == 1
    assert "online differs from offline" in result.stdout
    assert "values differ" in result.stderr


def test_compile_writes_ir(tmp_path: Path, fresh_project: Path) -> None:
    result = crispops("compile", "--out", str(tmp_path / "ir"), "-p", str(fresh_project))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "ir" / "training.yaml").read_text().startswith("# PIPELINE DEFINITION")


def test_deploy_dry_run_prints_valid_manifests_for_the_bento(fresh_project: Path) -> None:
    import kubernetes_validate
    import yaml

    result = crispops(
        "deploy",
        "--overlay",
        "dev",
        "--bento",
        "credit_default_v1:abc123",
        "--dry-run",
        "-p",
        str(fresh_project),
    )
    assert result.returncode == 0, result.stderr
    objects = [o for o in yaml.safe_load_all(result.stdout) if o]
    assert len(objects) > 10
    for obj in objects:
        kubernetes_validate.validate(obj, "1.30", strict=True)
    images = {
        c["image"]
        for o in objects
        if o["kind"] == "Deployment"
        for c in o["spec"]["template"]["spec"]["containers"]
    }
    assert "ghcr.io/crispops/credit_default_v1:abc123" in images
    assert not any(i.endswith(":latest") for i in images)


def test_deploy_rejects_an_unpinned_bento(fresh_project: Path) -> None:
    result = crispops(
        "deploy",
        "--overlay",
        "dev",
        "--bento",
        "credit_default_v1:latest",
        "--dry-run",
        "-p",
        str(fresh_project),
    )
    assert result.returncode == 2
    assert "latest" in result.stderr and "Traceback" not in result.stderr
