"""Spark on the cluster and the Spark demo, without a cluster: the image each path picks,
the Spark conf `init --engine spark` writes for k8s:// masters, the Spark image's executor
entrypoint against pyspark's own KubernetesExecutorBackend, and the Spark demo project
(`crispops demo --engine spark`) as files and Feast config.

The manifests (components/spark composed into dev and prod) are checked in
test_manifests.py; the Spark demo's whole run is in tests/integration/test_spark.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from crispops.cli import app
from crispops.config import (
    COMPONENT_IMAGE,
    SPARK_COMPONENT_IMAGE,
    SPARK_EXECUTOR_TEMPLATE,
    SparkSettings,
    load_settings,
)

ROOT = Path(__file__).resolve().parents[2]
ENV = {"COLUMNS": "300", "CRISPOPS_DEBUG": ""}
ENTRYPOINT = ROOT / "scripts" / "spark-executor-entrypoint.sh"


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "crispops.toml", tmp_path / "crispops.toml")
    return tmp_path


def _spark(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRISPOPS_FEATURE_STORE__ENGINE", "spark")


# The image ------------------------------------------------------------------------------
def test_a_spark_project_runs_its_tasks_in_the_spark_image(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_settings(project).task_image == COMPONENT_IMAGE
    _spark(monkeypatch)
    assert f"{COMPONENT_IMAGE}-spark" == SPARK_COMPONENT_IMAGE
    assert load_settings(project).task_image == SPARK_COMPONENT_IMAGE
    # An image the user chose is theirs, Spark or not.
    monkeypatch.setenv("CRISPOPS_CLUSTER__COMPONENT_IMAGE", "reg.example/own:1.2")
    assert load_settings(project).task_image == "reg.example/own:1.2"


def test_compiled_spark_pipeline_runs_every_task_in_the_spark_image(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crispops.orchestration.compile import compile_pipeline

    _spark(monkeypatch)
    path = compile_pipeline(load_settings(project), "training", project / "out")
    executors = yaml.safe_load(path.read_text())["deploymentSpec"]["executors"]
    assert executors
    assert {e["container"]["image"] for e in executors.values()} == {SPARK_COMPONENT_IMAGE}


def test_image_plan_builds_the_spark_variant_for_a_spark_project(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crispops.cluster.build import image_plan

    (what, commands), _ = image_plan(load_settings(project), "reg.example/team")
    assert "Spark" not in what and "SPARK" not in " ".join(commands)
    _spark(monkeypatch)
    (what, commands), _ = image_plan(load_settings(project), "reg.example/team")
    wheel, spark_wheel, build, push = commands
    assert "--wheel-dir build/wheelhouse " in wheel and "spark" not in wheel
    assert "--wheel-dir build/wheelhouse-spark '.[spark]'" in spark_wheel, spark_wheel
    assert "--target spark" in build
    assert build.endswith("-t reg.example/team/crispops-components:0.1.0-spark .")
    assert push == "docker push reg.example/team/crispops-components:0.1.0-spark"


def test_dockerfile_adds_java_and_pyspark_only_to_the_spark_stage() -> None:
    text = (ROOT / "Dockerfile").read_text()
    components, rest = text.split("FROM components AS spark\n")
    spark, default = rest.split("\nFROM components\n")
    code = "\n".join(ln for ln in components.splitlines() if not ln.lstrip().startswith("#"))
    assert "openjdk-17-jre-headless" in spark and "openjdk" not in code
    assert '"crispops[spark]"' in spark and "spark]" not in code
    assert "COPY build/wheelhouse-spark/" in spark
    assert "COPY scripts/spark-executor-entrypoint.sh /usr/local/bin/crispops-spark-executor" in (
        components
    )
    assert not default.strip() or default.lstrip().startswith("#"), "the default target"
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert "!scripts/spark-executor-entrypoint.sh" in ignored, "the build context needs it"
    assert "!build/wheelhouse-spark/" in ignored


# The Spark conf on a cluster ------------------------------------------------------------
def test_k8s_master_conf_runs_the_driver_in_client_mode_with_restricted_executors() -> None:
    conf = SparkSettings(executor_instances=3, executor_cores=2).cluster_conf("ml")
    assert conf["spark.master"] == "k8s://https://kubernetes.default.svc:443"
    assert conf["spark.submit.deployMode"] == "client"
    assert conf["spark.kubernetes.namespace"] == "ml"
    assert conf["spark.kubernetes.container.image"] == SPARK_COMPONENT_IMAGE
    assert conf["spark.kubernetes.executor.podTemplateFile"] == SPARK_EXECUTOR_TEMPLATE
    assert conf["spark.executor.instances"] == "3"
    assert conf["spark.kubernetes.executor.limit.cores"] == "2"
    assert conf["spark.kubernetes.executor.request.cores"] == "1000m"
    token = conf["spark.kubernetes.authenticate.oauthTokenFile"]
    assert token == "/var/run/secrets/kubernetes.io/serviceaccount/token"


def test_a_standalone_master_gets_no_kubernetes_settings() -> None:
    conf = SparkSettings(cluster_master="spark://spark-master:7077").cluster_conf("ml")
    assert conf["spark.master"] == "spark://spark-master:7077"
    assert not [k for k in conf if k.startswith("spark.kubernetes.")]
    assert conf["spark.executor.memory"] == "4g"


# The executor entrypoint ----------------------------------------------------------------
def test_entrypoint_runs_anything_but_executor_as_given() -> None:
    done = subprocess.run(
        [str(ENTRYPOINT), "sh", "-c", "echo ran $0", "x"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0 and done.stdout == "ran x\n", done


@pytest.mark.spark
def test_entrypoint_starts_pysparks_kubernetes_executor_backend() -> None:
    """The arguments and class path the entrypoint builds are the ones pyspark's
    KubernetesExecutorBackend accepts: it starts, then fails only to reach a driver
    that is not there (port 1 refuses)."""
    if shutil.which("java") is None or not _has_pyspark():
        pytest.skip("needs Java and pyspark (the [spark] extra)")
    env = {
        **os.environ,
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_EXECUTOR_POD_IP": "127.0.0.1",
        "SPARK_EXECUTOR_MEMORY": "256m",
        "SPARK_DRIVER_URL": "spark://CoarseGrainedScheduler@127.0.0.1:1",
        "SPARK_EXECUTOR_ID": "1",
        "SPARK_EXECUTOR_CORES": "1",
        "SPARK_APPLICATION_ID": "spark-test",
        "SPARK_EXECUTOR_POD_NAME": "exec-1",
        "SPARK_JAVA_OPT_0": "-Dspark.network.timeout=5s",
        "SPARK_JAVA_OPT_1": "-Dspark.rpc.numRetries=1",
    }
    done = subprocess.run(
        [str(ENTRYPOINT), "executor"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    out = done.stdout + done.stderr
    assert done.returncode != 0, out
    assert "KubernetesExecutorBackend: Started daemon" in out, out[-3000:]
    assert "127.0.0.1:1" in out and "Connection refused" in out, out[-3000:]
    for wrong in ("ClassNotFoundException", "Unrecognized", "Usage:"):
        assert wrong not in out, out[-3000:]


def _has_pyspark() -> bool:
    import importlib.util

    return importlib.util.find_spec("pyspark") is not None


# The Spark demo project -----------------------------------------------------------------
def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), env=ENV)


def test_spark_demo_project_is_the_demo_on_spark(tmp_path: Path) -> None:
    from feast.repo_config import load_repo_config

    from crispops.project.spark_demo import spark_demo_project

    dest = spark_demo_project(tmp_path / "sd", ROOT)
    s = load_settings(dest)
    demo = load_settings(ROOT)
    assert s.feature_store.engine == "spark"
    assert s.feature_store.spark.master == SparkSettings().master
    assert s.feature_store.feature_service == demo.feature_store.feature_service
    assert s.data.model_dump() == demo.data.model_dump()
    assert [c.name for c in s.training.candidates] == [c.name for c in demo.training.candidates]
    assert s.cluster.component_image == SPARK_COMPONENT_IMAGE
    repo = dest / "feature_repo"
    assert (repo / "credit.py").read_bytes() == (ROOT / "feature_repo" / "credit.py").read_bytes()
    config = load_repo_config(repo, repo / "feature_store.yaml")
    assert config.offline_store.type == "spark"
    assert config.batch_engine.type == "spark.engine"
    assert config.online_store.type == "sqlite"
    cluster = yaml.safe_load((repo / "feature_store.cluster.yaml").read_text())
    assert cluster["offline_store"]["spark_conf"]["spark.master"].startswith("k8s://")
    assert not list(tmp_path.glob(".sd.*")), "no staging directory left behind"


def test_demo_definitions_declare_spark_sources_on_spark(tmp_path: Path) -> None:
    """credit.py reads its feature_store.yaml: SparkSources on Spark, FileSources else."""
    import importlib.util

    from crispops.project.spark_demo import spark_demo_project

    dest = spark_demo_project(tmp_path / "sd", ROOT)
    kinds = {}
    for name, repo in (("duckdb", ROOT / "feature_repo"), ("spark", dest / "feature_repo")):
        spec = importlib.util.spec_from_file_location(f"credit_{name}", repo / "credit.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        kinds[name] = type(module.customer_profile_source).__name__
        assert module.account_activity_source.path == str(
            repo / "data" / "account_activity.parquet"
        )
    assert kinds == {"duckdb": "FileSource", "spark": "SparkSource"}


def test_spark_demo_refuses_a_directory_with_something_in_it(tmp_path: Path) -> None:
    from crispops.errors import ScaffoldError
    from crispops.project.spark_demo import spark_demo_project

    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    with pytest.raises(ScaffoldError, match="not an empty directory"):
        spark_demo_project(tmp_path / "full", ROOT)
    assert (tmp_path / "full" / "notes.txt").read_text() == "mine"


def test_demo_engine_is_checked(project: Path) -> None:
    result = invoke("demo", "--engine", "polars", "-p", str(project))
    assert result.exit_code == 2, result.output
    assert "--engine 'polars': choose duckdb or spark" in " ".join(result.output.split())


def test_demo_engine_spark_on_a_duckdb_project_says_so(project: Path) -> None:
    result = invoke("demo", "--engine", "spark", "-p", str(project))
    assert result.exit_code == 2, result.output
    out = " ".join(result.output.split())
    assert "is a duckdb project" in out and "--project a new directory" in out
    assert not (project / "feature_repo").exists(), "nothing written"
