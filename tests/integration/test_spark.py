"""Projects on Feast's Spark offline store and Spark materialization engine, end to end.

`crispops init --engine spark` on a small table, then the real CLI's `features apply /
materialize / check`, and the same label rows joined through DuckDB giving the same
training set; `crispops demo --engine spark`: the demo's data, features, checks and
training pipeline through kfp.local (its ingest step joins through Spark local[2]) to a
champion. The pipeline runs once, in the demo (each Spark run costs a JVM and a
session: the Spark tests stay at a few minutes).
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from crispops.champion import read_champion
from crispops.cli import app
from crispops.config import load_settings
from crispops.contract import feature_store, load_contract
from crispops.steps.ingest import ingest
from support.projects import FAST_CANDIDATES
from tests.conftest import REQUIRE_SERVICES

pytestmark = [pytest.mark.integration, pytest.mark.spark, pytest.mark.slow]

ROWS, SHOPS = 400, 50
WIDE = {"COLUMNS": "400", "CRISPOPS_DEBUG": ""}


@pytest.fixture(scope="module", autouse=True)
def _spark_runs_here() -> None:
    """Spark needs pyspark and a Java runtime: skip with the reason (fail in CI)."""
    import importlib.util

    missing = [
        what
        for what, ok in (
            ("pyspark (the [spark] extra)", importlib.util.find_spec("pyspark") is not None),
            ("a Java runtime", shutil.which("java") is not None),
        )
        if not ok
    ]
    if missing:
        message = f"Spark needs {' and '.join(missing)}"
        if REQUIRE_SERVICES:
            pytest.fail(message + " and CRISPOPS_REQUIRE_SERVICES=1", pytrace=False)
        pytest.skip(message)


def shop_data(path: Path, seed: int = 3) -> None:
    """Daily readings of 50 shops over 20 days; the label depends on two features."""
    rng = np.random.default_rng(seed)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=20)
    minutes = np.sort(rng.choice(20 * 24 * 60 - 60, ROWS, replace=False))
    revenue = rng.normal(100, 25, ROWS).round(2)
    visits = rng.poisson(30, ROWS)
    churned = ((revenue < 90) & (visits < 32)).astype(int)
    flip = rng.random(ROWS) < 0.05
    pd.DataFrame(
        {
            "shop_id": rng.integers(0, SHOPS, ROWS),
            "seen_at": [start + timedelta(minutes=int(m)) for m in minutes],
            "revenue": revenue,
            "visits": visits,
            "region": rng.choice(["north", "south", "east"], ROWS),
            "churned": np.where(flip, 1 - churned, churned),
        }
    ).to_parquet(path, index=False)


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={**WIDE, **(env or {})})
    return result.exit_code, result.output


def init(root: Path, name: str, *engine: str) -> Path:
    code, out = invoke(
        "init",
        str(root / name),
        "--data",
        str(root / "shops.parquet"),
        "--entity",
        "shop_id",
        "--timestamp",
        "seen_at",
        "--label",
        "churned",
        "--task",
        "binary",
        *engine,
    )
    assert code == 0, out
    return root / name


@pytest.fixture(scope="module")
def projects(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("spark")
    shop_data(root / "shops.parquet")
    return init(root, "shops", "--engine", "spark"), init(root, "shops_duckdb")


def test_spark_project_runs_the_lifecycle(projects: tuple[Path, Path]) -> None:
    spark, _ = projects
    yaml_text = (spark / "feature_repo" / "feature_store.yaml").read_text()
    assert "type: spark" in yaml_text and "type: spark.engine" in yaml_text
    code, out = invoke("features", "apply", "-p", str(spark))
    assert code == 0, out
    code, out = invoke("features", "materialize", "-p", str(spark))
    assert code == 0, out
    code, out = invoke("features", "check", "-p", str(spark))
    assert code == 0, out
    assert out.startswith("ok:"), out
    assert f"{SHOPS} entities x 3 features match" in " ".join(out.split())


def test_spark_and_duckdb_give_the_same_training_set(projects: tuple[Path, Path]) -> None:
    spark, duck = projects
    frames = []
    for project in (spark, duck):
        assert invoke("features", "apply", "-p", str(project))[0] == 0
        s = load_settings(project)
        df, result = ingest(
            feature_store(s), load_contract(s), s.label_source_path, "seen_at", "churned"
        )
        assert result.rows == ROWS
        frames.append(df)
    got, want = frames
    assert list(got.columns) == list(want.columns)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)


def test_demo_runs_on_spark(tmp_path: Path) -> None:
    """`crispops demo --engine spark`: the demo made as a Spark project, its data
    generated, features applied, materialized and checked through Spark, the training
    pipeline run to a champion (two quick candidates, through the environment)."""
    project = tmp_path / "spark-demo"
    quick = {"CRISPOPS_TRAINING__CANDIDATES": json.dumps(FAST_CANDIDATES)}
    code, out = invoke(
        "demo", "--engine", "spark", "-p", str(project), "--customers", "60", env=quick
    )
    text = " ".join(out.split())
    assert code == 0, out[-4000:]
    assert f"created the Spark demo project in {project}" in text
    assert "ok:" in text and "(online == latest offline)" in text, "features check"
    s = load_settings(project)
    assert s.feature_store.engine == "spark"
    registry = yaml.safe_load((project / "feature_repo" / "feature_store.yaml").read_text())
    assert registry["offline_store"]["type"] == "spark"
    champion = read_champion(s.champion_file)
    assert champion is not None and champion.model_tag.startswith("credit_default_v1:")
    assert champion.candidate in {c["name"] for c in FAST_CANDIDATES}
