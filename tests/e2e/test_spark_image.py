"""The components' Spark image (the Dockerfile's `spark` stage) in a real container, run
as the manifests run it (components/spark): non-root 10001, read-only root filesystem with a
writable /tmp only, no capabilities, no privilege escalation.

- Java 17 and pyspark are in it, beside Feast and crispops;
- the executor entrypoint Spark on Kubernetes starts (`crispops-spark-executor
  executor`) brings up pyspark's KubernetesExecutorBackend, which then fails only to
  reach a driver that is not there;
- as the Spark driver would: `features materialize` and `features check` of an
  `init --engine spark` project through Feast's Spark offline store and spark.engine
  (local[2]: no Kubernetes API here).

Skipped, with the reason, where no container engine works; failed instead when
CRISPOPS_REQUIRE_CONTAINERS=1.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crispops.cli import app
from crispops.cluster.build import Engine, build_component_image
from crispops.config import SPARK_COMPONENT_IMAGE

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.spark]

#: How manifests/components/spark runs the driver and the executors.
RESTRICTED = [
    "--rm",
    "--network=host",
    "--read-only",
    "--tmpfs",
    "/tmp:rw,mode=1777",
    "--user",
    "10001:10001",
    "--cap-drop=ALL",
    "--security-opt=no-new-privileges",
    "-e",
    "HOME=/tmp",
]


@pytest.fixture(scope="module")
def spark_image(engine: Engine) -> str:
    return build_component_image(engine, spark=True)


def test_spark_image_holds_java_17_and_pyspark(engine: Engine, spark_image: str) -> None:
    assert spark_image == SPARK_COMPONENT_IMAGE
    code = "import feast, pyspark, crispops; print(pyspark.__version__)"
    out = engine.run(
        "run", *RESTRICTED, spark_image, "sh", "-c", f"java -version 2>&1; python -c '{code}'"
    )
    assert 'version "17.' in out, out
    assert out.strip().splitlines()[-1].startswith("4."), out


def test_executor_entrypoint_starts_the_kubernetes_executor_backend(
    engine: Engine, spark_image: str
) -> None:
    env = {
        "SPARK_EXECUTOR_POD_IP": "127.0.0.1",
        "SPARK_EXECUTOR_MEMORY": "256m",
        "SPARK_DRIVER_URL": "spark://CoarseGrainedScheduler@127.0.0.1:1",
        "SPARK_EXECUTOR_ID": "1",
        "SPARK_EXECUTOR_CORES": "1",
        "SPARK_APPLICATION_ID": "spark-test",
        "SPARK_EXECUTOR_POD_NAME": "exec-1",
    }
    args = [a for k, v in env.items() for a in ("-e", f"{k}={v}")]
    # The pod template's command, and the argument Spark gives executor pods.
    done = subprocess.run(
        [
            engine.path,
            "run",
            *RESTRICTED,
            *args,
            "--entrypoint",
            "/usr/local/bin/crispops-spark-executor",
            spark_image,
            "executor",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    out = done.stdout + done.stderr
    assert done.returncode != 0, out[-3000:]
    assert "KubernetesExecutorBackend: Started daemon" in out, out[-3000:]
    assert "Connection refused" in out and "127.0.0.1:1" in out, out[-3000:]
    assert "Read-only file system" not in out, out[-3000:]


def test_feast_on_spark_runs_in_the_image_read_only(
    engine: Engine, spark_image: str, tmp_path: Path
) -> None:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(5)
    rows = 120
    pd.DataFrame(
        {
            "shop_id": rng.integers(0, 20, rows),
            "seen_at": pd.date_range("2026-01-01", periods=rows, freq="h", tz="UTC"),
            "revenue": rng.normal(100, 20, rows).round(2),
            "churned": rng.integers(0, 2, rows),
        }
    ).to_parquet(tmp_path / "shops.parquet", index=False)
    project = tmp_path / "shops"
    result = CliRunner().invoke(
        app,
        [
            "init",
            str(project),
            "--data",
            str(tmp_path / "shops.parquet"),
            "--entity",
            "shop_id",
            "--timestamp",
            "seen_at",
            "--label",
            "churned",
            "--task",
            "binary",
            "--engine",
            "spark",
        ],
        env={"COLUMNS": "300"},
    )
    assert result.exit_code == 0, result.output
    subprocess.run(["chmod", "-R", "a+rwX", str(tmp_path)], check=True)
    script = (
        f"crispops features apply -p {project} && crispops features materialize -p {project} "
        f"&& crispops features check -p {project}"
    )
    out = engine.run(
        "run",
        *RESTRICTED,
        "-e",
        "COLUMNS=300",
        "-v",
        f"{tmp_path}:{tmp_path}",
        spark_image,
        "sh",
        "-c",
        script,
        timeout=600,
    )
    assert "ok:" in out and "(online == latest offline)" in out, out[-3000:]
