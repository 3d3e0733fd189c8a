"""The generated files of a project: crispops.toml and the Feast definitions module.

Templates live in ``templates/``; values are written as TOML or Python literals, never
pasted in raw.
"""

from __future__ import annotations

import builtins
import json
import keyword
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from string import Template
from typing import TYPE_CHECKING, Any

import pandas as pd

from crispops.config import (
    SPARK_COMPONENT_IMAGE,
    ClusterSettings,
    Engine,
    ServingSettings,
    SparkSettings,
)
from crispops.project.columns import entity_name

if TYPE_CHECKING:
    from crispops.project.columns import PreparedData

SELECTION_METRIC = {"binary": "roc_auc", "multiclass": "macro_f1", "regression": "rmse"}

_FOREST: dict[str, Any] = {
    "name": "forest",
    "estimator": "random_forest",
    "search": {"n_estimators": [150], "max_depth": [8, 14], "min_samples_leaf": [5]},
}
_HGB: dict[str, Any] = {
    "name": "hgb",
    "estimator": "hist_gradient_boosting",
    "search": {"learning_rate": [0.05, 0.1], "max_iter": [150], "max_leaf_nodes": [15, 31]},
}
_CLASSIFIERS = [
    {"name": "logreg", "estimator": "logistic_regression", "search": {"C": [0.1, 1.0, 10.0]}},
    _FOREST,
    _HGB,
]
#: Default training candidates per task: small grids, quick on a laptop.
CANDIDATES: dict[str, list[dict[str, Any]]] = {
    "binary": _CLASSIFIERS,
    "multiclass": _CLASSIFIERS,
    "regression": [
        {"name": "ridge", "estimator": "ridge", "search": {"alpha": [0.1, 1.0, 10.0]}},
        _FOREST,
        _HGB,
    ],
}

#: Days added to the age of the oldest row to make the feature view's ttl.
TTL_MARGIN_DAYS = 30
DEFAULT_MIN_ROWS = 200
#: Names the generated module binds itself (an entity variable must not shadow them).
_MODULE_NAMES = frozenset({"timedelta", "Path", "DATA", "OWNER"})


# Rendering -----------------------------------------------------------------------------
def template(name: str) -> Template:
    return Template(
        resources.files("crispops.project").joinpath("templates", name).read_text("utf-8")
    )


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML form for {value!r}")


def safe_text(text: str) -> str:
    """A user-supplied name that may go inside a generated string or comment."""
    return text if re.fullmatch(r"[\w .+-]{1,80}", text) else "the input file"


@dataclass(frozen=True)
class Names:
    project: str
    entity: str  # Feast entity name
    entity_var: str
    source: str
    view: str
    service: str
    module: str


def names_for(project: str, entity_column: str) -> Names:
    entity = entity_name(entity_column)
    source, view, service = f"{project}_source", f"{project}_fv", f"{project}_v1"
    var = entity
    if (
        keyword.iskeyword(var)
        or hasattr(builtins, var)
        or var in _MODULE_NAMES
        or var in {source, view, service}
    ):
        var = f"{entity}_entity"
    return Names(project, entity, var, source, view, service, f"{project}_features.py")


def _schema_lines(types: dict[str, str]) -> str:
    lines = []
    for name, kind in types.items():
        line = f'        Field(name="{name}", dtype={kind}),'
        if len(line) > 100:  # as ruff format splits it
            line = "\n".join(
                [
                    "        Field(",
                    f'            name="{name}",',
                    f"            dtype={kind},",
                    "        ),",
                ]
            )
        lines.append(line)
    return "\n".join(lines)


_SPARK_SOURCE = "feast.infra.offline_stores.contrib.spark_offline_store.spark_source"


def render_features(
    names: Names,
    entity_column: str,
    data: PreparedData,
    source_name: str,
    now: datetime,
    engine: Engine = "duckdb",
) -> str:
    age_days = max(0, math.ceil((pd.Timestamp(now) - data.oldest).total_seconds() / 86400))
    used = sorted(set(data.feature_types.values()))
    if engine == "spark":
        imports = (
            "from feast import Entity, FeatureService, FeatureView, Field\n"
            f"from {_SPARK_SOURCE} import SparkSource"
        )
        source_class, source_format = "SparkSource", '\n    file_format="parquet",'
    else:
        imports = "from feast import Entity, FeatureService, FeatureView, Field, FileSource"
        source_class, source_format = "FileSource", ""
    return template("features.py.tmpl").substitute(
        imports=imports,
        source_class=source_class,
        source_format=source_format,
        project=names.project,
        source_name=source_name,
        types=", ".join(used),
        entity_var=names.entity_var,
        entity_name=names.entity,
        entity=entity_column,
        value_type=data.entity_type,
        source=names.source,
        view=names.view,
        service=names.service,
        age_days=age_days,
        margin_days=TTL_MARGIN_DAYS,
        ttl_days=age_days + TTL_MARGIN_DAYS,
        schema=_schema_lines(data.feature_types),
    )


def _yaml_map(values: Mapping[str, Any], indent: int) -> str:
    """A YAML block mapping whose scalars are JSON-quoted (valid YAML, never pasted raw)."""
    pad = " " * indent
    return "\n".join(f"{pad}{key}: {json.dumps(value)}" for key, value in values.items())


def render_store_yaml(
    project: str,
    engine: Engine = "duckdb",
    spark: SparkSettings | None = None,
    namespace: str = "crispops",
) -> dict[str, str]:
    """The repo's feature_store.yaml and feature_store.cluster.yaml for an engine."""
    if engine == "duckdb":
        return {
            "feature_store.yaml": template("feature_store.yaml.tmpl").substitute(project=project),
            "feature_store.cluster.yaml": template("feature_store.cluster.yaml.tmpl").substitute(
                project=project
            ),
        }
    spark = spark or SparkSettings()
    local_conf = _yaml_map(spark.session_conf(), 4)
    cluster_conf = spark.cluster_conf(namespace)
    if spark.cluster_engine == "spark_application":
        engine_conf: dict[str, Any] = {
            "type": "spark_application",
            "image": spark.image,
            "namespace": namespace,
            "service_account": spark.service_account,
            "driver_memory": spark.driver_memory,
            "executor_memory": spark.executor_memory,
        }
        batch_engine = (
            _yaml_map(engine_conf, 2)
            + "\n  spark_conf:\n"
            + _yaml_map({"spark.sql.shuffle.partitions": str(spark.shuffle_partitions)}, 4)
        )
    else:
        batch_engine = (
            _yaml_map({"type": "spark.engine", "partitions": spark.shuffle_partitions}, 2)
            + "\n  spark_conf:\n"
            + _yaml_map(cluster_conf, 4)
        )
    return {
        "feature_store.yaml": template("feature_store.spark.yaml.tmpl").substitute(
            project=project,
            master=spark.master,
            spark_conf=local_conf,
            partitions=spark.shuffle_partitions,
        ),
        "feature_store.cluster.yaml": template("feature_store.cluster.spark.yaml.tmpl").substitute(
            project=project,
            master=spark.cluster_master,
            engine=spark.cluster_engine,
            spark_conf=_yaml_map(cluster_conf, 4),
            batch_engine=batch_engine,
        ),
    }


def render_settings(
    *,
    project: str,
    source_name: str,
    entity: str | list[str],
    timestamp: str,
    label: str,
    task: str,
    rows: int,
    feature_service: str,
    label_source: str = "feature_repo/data/labels.parquet",
    repo_path: str = "feature_repo",
    request_features: Mapping[str, str] | None = None,
    left_out: dict[str, str] | None = None,
    engine: Engine = "duckdb",
    spark: SparkSettings | None = None,
) -> str:
    blocks = []
    for cand in CANDIDATES[task]:
        body = "\n".join(f"{k} = {_toml(v)}" for k, v in cand.items())
        blocks.append(f"\n[[training.candidates]]\n{body}\n")
    serving = ServingSettings()
    # A Spark project's tasks need Java and pyspark: the components' -spark image.
    spark_image = {"component_image": SPARK_COMPONENT_IMAGE} if engine == "spark" else {}
    cluster = ClusterSettings(**spark_image)
    serving_keys = ("port", "workers", "max_batch_size", "missing_entity")
    cluster_lines = [
        f"{k} = {_toml(getattr(cluster, k))}" for k in ("namespace", "registry", "component_image")
    ]
    cluster_lines.append('# kfp_host = "https://kubeflow.example.com/pipeline"')
    return template("crispops.toml.tmpl").substitute(
        project=safe_text(project),
        source_name=source_name,
        label_source=_toml(label_source),
        repo_path=_toml(repo_path),
        entity=_toml(entity),
        timestamp=_toml(timestamp),
        label=_toml(label),
        task=_toml(task),
        min_rows=min(DEFAULT_MIN_ROWS, rows),
        request_features=_request_block(request_features, left_out),
        feature_service=_toml(feature_service),
        engine=engine_block(engine, spark),
        selection_metric=_toml(SELECTION_METRIC[task]),
        candidates="".join(blocks),
        serving="\n".join(f"{k} = {_toml(getattr(serving, k))}" for k in serving_keys) + "\n",
        cluster="\n".join(cluster_lines),
    )


def engine_block(engine: Engine, spark: SparkSettings | None) -> str:
    lines = [f"engine = {_toml(engine)}"]
    if engine == "spark":
        spark = spark or SparkSettings()
        keys = ("master", "driver_memory", "shuffle_partitions", "cluster_master", "cluster_engine")
        lines += [
            "",
            "# Written into feature_repo/feature_store.yaml (master) and",
            "# feature_store.cluster.yaml (cluster_master) by `crispops init --engine spark`.",
            "[feature_store.spark]",
            *(f"{k} = {_toml(getattr(spark, k))}" for k in keys),
        ]
    return "\n".join(lines)


def _request_block(request: Mapping[str, str] | None, left_out: Mapping[str, str] | None) -> str:
    """``[data.request_features]``: label-table columns the model takes with a request."""
    if request is None:
        return ""
    lines = [
        "",
        "# Label-table columns the model takes as request-time features (name = kind: float,",
        "# int, string or bool). Remove a line to leave a column out; add one to take it in.",
    ]
    for column, why in (left_out or {}).items():
        lines.append(f"# left out: {safe_text(column)}: {why}")
    lines.append("[data.request_features]")
    lines += [f"{_key(name)} = {_toml(kind)}" for name, kind in request.items()]
    return "\n".join(lines) + "\n"


def _key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name)
