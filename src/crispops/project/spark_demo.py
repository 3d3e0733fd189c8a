"""The bundled demo as a Spark project (`crispops demo --engine spark`).

The same settings, feature definitions and generated data as the DuckDB demo; what
changes is the repo's feature_store.yaml (Feast's Spark offline store and Spark
materialization engine on ``spark.master``, written by the same code as `crispops init
--engine spark`) and ``feature_store.engine = "spark"`` in crispops.toml. The demo's
``credit.py`` reads its feature_store.yaml and declares SparkSources over the Parquet
files when the offline store is Spark, so one copy of the definitions serves both.

The project is built in a hidden sibling directory and renamed into place, so a failure
leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from pathlib import Path

import yaml

from crispops.config import (
    COMPONENT_IMAGE,
    CONFIG_FILE,
    SPARK_COMPONENT_IMAGE,
    SparkSettings,
    load_settings,
)
from crispops.errors import ScaffoldError
from crispops.project.render import engine_block, render_store_yaml

#: The demo's files a Spark copy takes (data and state are generated, not copied).
REPO_FILES = ("credit.py", ".feastignore")


def spark_demo_project(
    dest: Path, source: Path, spark: SparkSettings | None = None, namespace: str = "crispops"
) -> Path:
    """Write the Spark variant of the demo project at ``source`` into ``dest`` (new or
    empty); return ``dest``."""
    spark = spark or SparkSettings()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ScaffoldError(f"{dest}: exists and is not an empty directory")
    settings_text = (source / CONFIG_FILE).read_text(encoding="utf-8")
    if not re.search(r"(?m)^\[feature_store\]\s*$", settings_text) or re.search(
        r"(?m)^\s*engine\s*=", settings_text
    ):
        raise ScaffoldError(f"{source / CONFIG_FILE}: no [feature_store] table to set engine in")
    # engine goes into [feature_store] itself; its [feature_store.spark] table at the end.
    engine_line, _, spark_table = engine_block("spark", spark).partition("\n")
    settings_text = re.sub(
        r"(?m)^\[feature_store\]\s*$", lambda m: f"{m.group(0)}\n{engine_line}", settings_text
    )
    settings_text = settings_text.rstrip("\n") + "\n" + spark_table.rstrip("\n") + "\n"
    # Its tasks on a cluster need Java and pyspark: the components' -spark image.
    settings_text = settings_text.replace(
        f"component_image = {json.dumps(COMPONENT_IMAGE)}",
        f"component_image = {json.dumps(SPARK_COMPONENT_IMAGE)}",
    )
    project = yaml.safe_load((source / "feature_repo" / "feature_store.yaml").read_text())[
        "project"
    ]
    stores = render_store_yaml(project, "spark", spark, namespace=namespace)

    dest.parent.mkdir(parents=True, exist_ok=True)
    staged = dest.parent / f".{dest.name}.crispops-demo-{secrets.token_hex(4)}"
    try:
        repo = staged / "feature_repo"
        repo.mkdir(parents=True)
        (staged / CONFIG_FILE).write_text(settings_text, encoding="utf-8")
        for name in REPO_FILES:
            shutil.copy(source / "feature_repo" / name, repo / name)
        for name, text in stores.items():
            (repo / name).write_text(text, encoding="utf-8")
        s = load_settings(staged)  # the file must be valid Settings before it lands
        if s.feature_store.engine != "spark":
            raise ScaffoldError(f"{staged / CONFIG_FILE}: engine did not take")
        if dest.exists():
            dest.rmdir()
        os.replace(staged, dest)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return dest
