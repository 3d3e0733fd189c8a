"""`crispops init` on data shaped nothing like the demo, then the real feature store.

A fleet of devices: string entity keys, timestamps with UTC offsets in a CSV, a string
categorical column, numeric columns with gaps, a boolean and a three-class label.
The generated project goes through `crispops features apply / materialize / check`
(the real CLI, in process), the plain `feast apply`, and a point-in-time join.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from crispops.cli import app
from crispops.config import load_settings
from crispops.contract import feature_store, load_contract
from crispops.steps.ingest import ingest

pytestmark = pytest.mark.integration

ROWS = 300
DEVICES = 40
FEATURES = ["firmware", "temperature_c", "battery_pct", "error_count", "charging"]
#: Wide enough that rich does not wrap messages in the middle of a column name.
WIDE = {"COLUMNS": "400", "CRISPOPS_DEBUG": ""}


def fleet_data(path: Path, seed: int = 5) -> pd.DataFrame:
    """~300 readings of 40 devices over the last 9 days, written as CSV."""
    rng = np.random.default_rng(seed)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=9)
    minutes = np.sort(rng.choice(9 * 24 * 60 - 60, ROWS, replace=False))
    ts = [start + timedelta(minutes=int(m)) for m in minutes]
    offsets = rng.choice([0, 2, -5], ROWS)
    stamps = [
        (t + timedelta(hours=int(h))).replace(tzinfo=None).isoformat() + f"{int(h):+03d}:00"
        for t, h in zip(ts, offsets, strict=True)
    ]
    temperature = rng.normal(35, 8, ROWS).round(2)
    temperature[rng.random(ROWS) < 0.1] = np.nan
    battery = rng.uniform(0, 100, ROWS).round(1)
    battery[rng.random(ROWS) < 0.05] = np.nan
    firmware = rng.choice(["v1.2", "v1.3", "v2.0"], ROWS).astype(object)
    health = np.where(temperature > 42, "overheating", np.where(battery < 20, "low_power", "ok"))
    df = pd.DataFrame(
        {
            "device_id": [f"dev-{i:04d}" for i in rng.integers(0, DEVICES, ROWS)],
            "reading_at": stamps,
            "firmware": firmware,
            "temperature_c": temperature,
            "battery_pct": battery,
            "error_count": rng.poisson(1.5, ROWS),
            "charging": rng.random(ROWS) < 0.3,
            "health": health,
        }
    )
    df.to_csv(path, index=False)
    return df


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env=WIDE)
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("init")
    data = root / "fleet.csv"
    fleet_data(data)
    proj = root / "fleet_health"
    code, out = invoke(
        "init",
        str(proj),
        "--data",
        str(data),
        "--entity",
        "device_id",
        "--timestamp",
        "reading_at",
        "--label",
        "health",
        "--task",
        "multiclass",
    )
    assert code == 0, out
    assert "created" in out and "5 features" in out
    return proj


def test_init_apply_materialize_check(project: Path) -> None:
    code, out = invoke("features", "apply", "-p", str(project))
    assert code == 0, out
    assert "fleet_health_fv" in out and "fleet_health_v1" in out
    code, out = invoke("features", "materialize", "-p", str(project))
    assert code == 0, out
    assert "fleet_health_fv" in out
    code, out = invoke("features", "check", "-p", str(project))
    assert code == 0, out
    assert out.startswith("ok:"), out
    assert f"{DEVICES} entities x 5 features match" in " ".join(out.split())


def test_generated_settings_and_contract(project: Path) -> None:
    s = load_settings(project)
    assert s.data.task == "multiclass" and s.training.selection_metric == "macro_f1"
    assert s.feature_store.feature_service == "fleet_health_v1"
    invoke("features", "apply", "-p", str(project))
    contract = load_contract(s)
    assert contract.feature_names == FEATURES
    assert contract.kinds() == {
        "firmware": "string",
        "temperature_c": "float",
        "battery_pct": "float",
        "error_count": "int",
        "charging": "bool",
    }


def test_point_in_time_join_gives_each_row_its_own_features(project: Path) -> None:
    """The training pipeline's ingest step: labels joined with features as of their time."""
    s = load_settings(project)
    invoke("features", "apply", "-p", str(project))
    store = feature_store(s)
    df, result = ingest(store, load_contract(s), s.label_source_path, "reading_at", "health")
    assert result.rows == ROWS
    source = pd.read_parquet(s.repo_path / "data" / "features.parquet")
    source = source.rename(columns={"event_timestamp": "reading_at"})
    merged = df.merge(source, on=["device_id", "reading_at"], suffixes=("", "_src"))
    assert len(merged) == ROWS
    for name in FEATURES:
        got, want = merged[name], merged[f"{name}_src"]
        same = (got.astype(str) == want.astype(str)) | (got.isna() & want.isna())
        assert same.all(), name


def test_plain_feast_apply_in_the_generated_repo(project: Path) -> None:
    feast = Path(sys.executable).parent / "feast"
    if not feast.exists():
        found = shutil.which("feast")
        if found is None:
            pytest.skip("the feast CLI is not installed next to this Python")
        feast = Path(found)
    repo = project / "feature_repo"
    proc = subprocess.run(
        [str(feast), "apply"], cwd=repo, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "fleet_health" in proc.stdout
    proc = subprocess.run(
        [str(feast), "feature-services", "list"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "fleet_health_v1" in proc.stdout


def test_generated_definitions_are_ruff_clean(project: Path) -> None:
    ruff = Path(sys.executable).parent / "ruff"
    if not ruff.exists():
        pytest.skip("ruff is not installed next to this Python")
    module = project / "feature_repo" / "fleet_health_features.py"
    for args in (["check", "--no-cache", "--isolated"], ["format", "--check", "--no-cache"]):
        proc = subprocess.run(
            [str(ruff), *args, "--line-length", "100", str(module)],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_bad_file_exits_2_naming_the_column(tmp_path: Path) -> None:
    df = fleet_data(tmp_path / "fleet.csv")
    df["tags"] = [["a", "b"]] * len(df)  # a list per row: no Feast type for it
    df.to_parquet(tmp_path / "tagged.parquet", index=False)
    target = tmp_path / "tagged"
    code, out = invoke(
        "init",
        str(target),
        "--data",
        str(tmp_path / "tagged.parquet"),
        "--entity",
        "device_id",
        "--timestamp",
        "reading_at",
        "--label",
        "health",
        "--task",
        "multiclass",
    )
    assert code == 2, out
    assert "'tags' (list values)" in out
    assert "Traceback" not in out
    assert not target.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fleet.csv", "tagged.parquet"]


def test_missing_column_via_cli_lists_the_columns(tmp_path: Path) -> None:
    fleet_data(tmp_path / "fleet.csv")
    code, out = invoke(
        "init",
        str(tmp_path / "p"),
        "--data",
        str(tmp_path / "fleet.csv"),
        "--entity",
        "device",
        "--timestamp",
        "reading_at",
        "--label",
        "health",
        "--task",
        "binary",
    )
    assert code == 2, out
    flat = " ".join(out.split())
    assert "no column 'device' (--entity)" in flat
    assert "device_id, reading_at, firmware" in flat
    assert "Traceback" not in out
