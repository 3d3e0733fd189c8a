"""One typed settings object for crispops.

Settings come from ``crispops.toml`` in the project directory, overridden by
``CRISPOPS_*`` environment variables (nested keys joined with ``__``, e.g.
``CRISPOPS_TRAINING__PROMOTION_MARGIN=0.01``). This module is the only place
that reads environment variables, and it reads nothing at import time.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from crispops import __version__
from crispops.errors import SettingsError
from crispops.rules import RULES, Override, Policy, RuleName, Severity

CONFIG_FILE = "crispops.toml"
ENV_PREFIX = "CRISPOPS_"

#: The image every pipeline component runs in (its ``base_image``), built from the
#: project's Dockerfile with this tag; ``cluster.component_image`` overrides it.
COMPONENT_REPOSITORY = "ghcr.io/crispops/crispops-components"
COMPONENT_IMAGE = f"{COMPONENT_REPOSITORY}:{__version__}"
#: The same image with Java 17 and pyspark (the Dockerfile's ``spark`` stage): what the
#: pipeline's tasks and the materialization job run in when ``feature_store.engine =
#: "spark"``.
SPARK_COMPONENT_IMAGE = f"{COMPONENT_IMAGE}-spark"

TaskType = Literal["binary", "multiclass", "regression"]
#: The kind of a feature or request field, as the contract and the request models see it.
Kind = Literal["float", "int", "string", "bool"]
EstimatorName = Literal[
    "logistic_regression",
    "ridge",
    "random_forest",
    "hist_gradient_boosting",
]

#: Metrics each task reports, and whether a larger value is better.
TASK_METRICS: dict[str, dict[str, bool]] = {
    "binary": {"roc_auc": True, "pr_auc": True, "f1": True, "log_loss": False, "brier": False},
    "multiclass": {"macro_f1": True, "accuracy": True, "log_loss": False},
    "regression": {"rmse": False, "mae": False, "r2": True},
}

#: Which estimators make sense for which task.
TASK_ESTIMATORS: dict[str, set[str]] = {
    "binary": {"logistic_regression", "random_forest", "hist_gradient_boosting"},
    "multiclass": {"logistic_regression", "random_forest", "hist_gradient_boosting"},
    "regression": {"ridge", "random_forest", "hist_gradient_boosting"},
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _key_list(value: Any) -> Any:
    """``"customer_id"`` or ``"zipcode,dob_ssn"`` (an environment variable) -> a list."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class DataSettings(_Section):
    label_source: Path = Field(
        description="Parquet or CSV file of label rows: entity keys, timestamp, label and "
        "request-time fields. Relative paths are relative to the project directory."
    )
    entity: Annotated[list[str], NoDecode, BeforeValidator(_key_list)] = Field(
        min_length=1,
        description="Entity join key column(s) of the label rows, e.g. customer_id, or "
        "every join key of the FeatureService's views (a list).",
    )
    timestamp: str = Field(min_length=1, description="Event timestamp column of the label rows.")
    label: str = Field(min_length=1, description="Label column.")
    task: TaskType = Field(description="binary, multiclass or regression.")
    request_features: dict[str, Kind] = Field(
        default_factory=dict,
        description="Label-table columns the model takes as request-time features, with "
        "their kind (float, int, string, bool): known when a request arrives, not in Feast.",
    )
    min_rows: int = Field(default=200, ge=10, description="Fewest label rows a run accepts.")

    @field_validator("entity")
    @classmethod
    def _distinct_keys(cls, v: list[str]) -> list[str]:
        if any(not k for k in v):
            raise ValueError("an entity key is empty")
        if len(set(v)) != len(v):
            raise ValueError(f"entity keys repeat: {', '.join(v)}")
        return v

    @property
    def join_keys(self) -> list[str]:
        return list(self.entity)


class RuleOverride(_Section):
    severity: Severity | None = Field(default=None, description="error, warn or off.")
    threshold: float | None = Field(default=None, ge=0.0, description="The rule's limit.")


def _override(value: Any) -> Any:
    return {"severity": value} if isinstance(value, str) else value


Overrides = dict[RuleName, Annotated[RuleOverride, BeforeValidator(_override)]]


class ValidationSettings(_Section):
    """Severities and thresholds of the data rules (crispops.rules lists them)."""

    rules: Overrides = Field(
        default_factory=dict,
        description='Per rule: "error", "warn", "off" or { severity = ..., threshold = ... }.',
    )
    columns: dict[str, Overrides] = Field(
        default_factory=dict, description="Per column, the same as rules: wins over rules."
    )

    @model_validator(mode="after")
    def _fixed_rules(self) -> ValidationSettings:
        where = [(f"validation.rules.{r}", r, o) for r, o in self.rules.items()]
        for column, overrides in self.columns.items():
            where += [(f"validation.columns.{column}.{r}", r, o) for r, o in overrides.items()]
        for key, rule, override in where:
            spec = RULES[rule]
            if spec.fixed and override.severity not in (None, "error"):
                raise ValueError(
                    f"{key}: {rule} cannot be relaxed to {override.severity!r}: a run cannot "
                    "train without it"
                )
            if override.threshold is not None and spec.threshold is None:
                raise ValueError(f"{key}: {rule} takes no threshold")
        return self

    def policy(self) -> Policy:
        def plain(o: RuleOverride) -> Override:
            return Override(o.severity, o.threshold)

        return Policy(
            {r: plain(o) for r, o in self.rules.items()},
            {c: {r: plain(o) for r, o in rs.items()} for c, rs in self.columns.items()},
        )


#: Spark on Kubernetes (client mode), as manifests/components/spark wires it: the driver's
#: RPC and block-manager ports (its NetworkPolicies open exactly these), where it mounts
#: the executor pod template, and the executors' ServiceAccount (no token).
SPARK_DRIVER_PORT = 7078
SPARK_BLOCK_MANAGER_PORT = 7079
SPARK_EXECUTOR_TEMPLATE = "/etc/spark/executor-pod-template.yaml"
SPARK_EXECUTOR_SERVICE_ACCOUNT = "crispops-spark-executor"
_SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"

#: The feature store's compute engine: the offline store and the materialization engine.
Engine = Literal["duckdb", "spark"]
_SPARK_SIZE = r"^\d+[kmgt]$"


class SparkSettings(_Section):
    """Feast's Spark offline store and Spark materialization engine (``engine = "spark"``).

    ``crispops init --engine spark`` writes these into the repo's feature_store.yaml (the
    local one) and feature_store.cluster.yaml; Feast reads them from there.
    """

    master: str = Field(
        default="local[2]",
        min_length=1,
        description="Spark master on one machine: local[N] runs Spark inside the process "
        "with N worker threads.",
    )
    cluster_master: str = Field(
        default="k8s://https://kubernetes.default.svc:443",
        min_length=1,
        description="Spark master on the cluster: k8s://... (Spark on Kubernetes, executors "
        "as pods) or spark://host:7077 (a standalone Spark cluster).",
    )
    cluster_engine: Literal["spark.engine", "spark_application"] = Field(
        default="spark.engine",
        description="Cluster materialization: spark.engine (a Spark session on "
        "cluster_master) or spark_application (a SparkApplication per job, run by the "
        "Kubeflow Spark Operator).",
    )
    driver_memory: str = Field(
        default="3g", pattern=_SPARK_SIZE, description="spark.driver.memory (e.g. 3g)."
    )
    executor_memory: str = Field(
        default="4g", pattern=_SPARK_SIZE, description="spark.executor.memory on a cluster."
    )
    executor_instances: int = Field(
        default=2, ge=1, description="spark.executor.instances: executor pods on a cluster."
    )
    executor_cores: int = Field(
        default=1, ge=1, description="spark.executor.cores: task slots (and CPU) per executor."
    )
    shuffle_partitions: int = Field(
        default=16, ge=1, description="spark.sql.shuffle.partitions: the join's partitions."
    )
    image: str = Field(
        default=SPARK_COMPONENT_IMAGE,
        description="Image of the Spark driver and executors on a cluster (pinned tag): the "
        "components' image with Java 17 and pyspark.",
    )
    service_account: str = Field(
        default="crispops-spark", description="ServiceAccount of the Spark driver on a cluster."
    )

    @field_validator("image")
    @classmethod
    def _pinned(cls, v: str) -> str:
        if v.endswith(":latest") or (":" not in v.rsplit("/", 1)[-1] and "@" not in v):
            raise ValueError(f"{v!r} must pin a tag or digest (never :latest)")
        return v

    @field_validator("master")
    @classmethod
    def _local(cls, v: str) -> str:
        if not re.fullmatch(r"local(\[(\d+|\*)(,\d+)?\])?|(spark|k8s)://\S+|yarn", v):
            raise ValueError(f"{v!r} is not a Spark master: local[N], spark://..., k8s://...")
        return v

    def session_conf(self, master: str | None = None) -> dict[str, str]:
        """The spark_conf Feast gives its Spark session."""
        return {
            "spark.master": master or self.master,
            "spark.driver.memory": self.driver_memory,
            "spark.sql.shuffle.partitions": str(self.shuffle_partitions),
            "spark.sql.session.timeZone": "UTC",
            "spark.sql.execution.arrow.pyspark.enabled": "true",
            "spark.sql.parquet.datetimeRebaseModeInRead": "CORRECTED",
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
            "spark.log.level": "ERROR",
        }

    def cluster_conf(self, namespace: str) -> dict[str, str]:
        """The spark_conf of feature_store.cluster.yaml: ``cluster_master``; on ``k8s://``
        the driver is the pod Feast runs in (client mode) and its executors are pods of
        ``namespace`` made from the pod template manifests/components/spark mounts."""
        conf = self.session_conf(self.cluster_master) | {
            "spark.executor.memory": self.executor_memory,
            "spark.executor.instances": str(self.executor_instances),
            "spark.executor.cores": str(self.executor_cores),
        }
        if not self.cluster_master.startswith("k8s://"):
            return conf
        return conf | {
            "spark.submit.deployMode": "client",
            "spark.kubernetes.namespace": namespace,
            "spark.kubernetes.container.image": self.image,
            "spark.kubernetes.authenticate.caCertFile": f"{_SA_DIR}/ca.crt",
            "spark.kubernetes.authenticate.oauthTokenFile": f"{_SA_DIR}/token",
            "spark.kubernetes.authenticate.driver.serviceAccountName": self.service_account,
            "spark.kubernetes.authenticate.executor.serviceAccountName": (
                SPARK_EXECUTOR_SERVICE_ACCOUNT
            ),
            "spark.kubernetes.executor.podTemplateFile": SPARK_EXECUTOR_TEMPLATE,
            "spark.kubernetes.executor.podTemplateContainerName": "executor",
            "spark.kubernetes.executor.request.cores": f"{self.executor_cores * 500}m",
            "spark.kubernetes.executor.limit.cores": str(self.executor_cores),
            "spark.kubernetes.executor.volumes.emptyDir.spark-local-dir-1.mount.path": (
                "/var/data/spark-local"
            ),
            "spark.kubernetes.executor.volumes.emptyDir.spark-local-dir-1.options.sizeLimit": (
                "8Gi"
            ),
            "spark.driver.port": str(SPARK_DRIVER_PORT),
            "spark.driver.blockManager.port": str(SPARK_BLOCK_MANAGER_PORT),
            "spark.blockManager.port": str(SPARK_BLOCK_MANAGER_PORT),
        }


class FeatureStoreSettings(_Section):
    engine: Engine = Field(
        default="duckdb",
        description="duckdb: Feast's DuckDB offline store in this process (the default); "
        "spark: Feast's Spark offline store and Spark materialization engine (see "
        "feature_store.spark).",
    )
    spark: SparkSettings = SparkSettings()
    repo_path: Path = Field(
        default=Path("feature_repo"), description="Feast repository (feature_store.yaml)."
    )
    feature_service: str = Field(min_length=1, description="FeatureService: the model contract.")
    cluster_config: str = Field(
        default="feature_store.cluster.yaml",
        description="The cluster's feature_store.yaml, inside the repo.",
    )
    check_sample: int = Field(default=50, ge=1, description="Entities compared by features check.")
    materialize_chunk: str | None = Field(
        default=None,
        pattern=r"^\d+(\.\d+)?[smhdw]$",
        description="Materialize long windows in chunks of this length (e.g. 7d), oldest "
        "first, each recorded as the view's watermark: memory stays bounded by one "
        "chunk, and a run killed part-way resumes at the first unfinished chunk.",
    )

    @property
    def chunk(self) -> timedelta | None:
        if self.materialize_chunk is None:
            return None
        return timedelta(seconds=duration_seconds(self.materialize_chunk))


class Candidate(_Section):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$", description="Candidate name.")
    estimator: EstimatorName
    search: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="Hyperparameter grid: estimator parameter -> candidate values.",
    )

    @field_validator("search")
    @classmethod
    def _non_empty_lists(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in v.items():
            if not values:
                raise ValueError(f"search.{key} lists no values")
        return v


class TrainingSettings(_Section):
    candidates: list[Candidate] = Field(min_length=1)
    selection_metric: str = Field(description="Metric that picks the champion.")
    promotion_margin: float = Field(
        default=0.005, ge=0.0, description="How much a challenger must beat the champion by."
    )
    baseline_margin: float = Field(
        default=0.01,
        ge=0.0,
        allow_inf_nan=False,
        description="How much the best candidate must beat the trivial baseline by "
        "(DummyClassifier prior / DummyRegressor mean on the same holdout), in the "
        "selection metric's units; a candidate that does not is never promoted.",
    )
    min_score: float | None = Field(
        default=None,
        allow_inf_nan=False,
        description="Optional absolute floor on the selection metric, in its direction: "
        "the least a higher-is-better metric may score, the most a lower-is-better one "
        "(e.g. rmse) may. A candidate beyond it is never promoted.",
    )
    split: Literal["time", "random"] = "time"
    test_fraction: float = Field(default=0.25, gt=0.0, lt=0.9)
    cv_folds: int = Field(default=3, ge=2, le=10)
    feature_threshold: float = Field(
        default=0.0,
        ge=0.0,
        description="Features whose mutual information with the label is at or below this "
        "are dropped.",
    )
    max_onehot_categories: int = Field(
        default=30,
        ge=2,
        description="A string feature with at most this many distinct values in the training "
        "data is one-hot encoded; one with more is target-encoded (cross-fitted).",
    )
    seed: int = 42

    @field_validator("candidates")
    @classmethod
    def _unique_names(cls, v: list[Candidate]) -> list[Candidate]:
        names = [c.name for c in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"candidate names must be unique; repeated: {', '.join(dupes)}")
        return v


class ServingSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=3000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    max_batch_size: int = Field(default=1000, ge=1)
    max_latency_ms: int = Field(
        default=500,
        ge=1,
        description="Adaptive batching: a request that would wait longer is shed (503).",
    )
    max_concurrency: int = Field(
        default=256, ge=1, description="Requests in flight per worker before 503s shed load."
    )
    max_batch_wait_ms: float = Field(
        default=0.0,
        ge=0,
        description="Adaptive batching: the longest a request is held for others to join"
        " its batch; 0: a batch takes what queued while the one before it was scored."
        " BentoML's own wait, learned from its queue, held lone requests 10-25 ms after a"
        " burst.",
    )
    missing_entity: Literal["error", "impute"] = Field(
        default="error",
        description="What /predict_entity does for an entity the online store does not know.",
    )
    online_store: Literal["local", "cluster"] = Field(
        default="local", description="local: the repo's feature_store.yaml; cluster: Redis."
    )
    timeout_s: float = Field(default=30.0, gt=0, description="Request timeout, seconds.")
    access_log: bool = Field(
        default=False,
        description="Log every request (BentoML's access log); metrics count them anyway.",
    )
    tracing: bool = Field(
        default=False, description="OpenTelemetry spans for the prediction endpoints."
    )
    # Set for a running server (by `crispops serve` or the Deployment), not in crispops.toml:
    feature_repo: Path | None = Field(
        default=None, description="Feast repo the server reads online features from."
    )
    feature_store_yaml: str | None = Field(
        default=None, description="feature_store.yaml file name inside feature_repo."
    )


_DURATION = r"^\d+(\.\d+)?[smhdw]$"


def duration_seconds(text: str) -> float:
    """``90s``, ``15m``, ``6h``, ``1d``, ``2w`` -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    return float(text[:-1]) * units[text[-1]]


class MonitoringSettings(_Section):
    """The prediction log, the labels returned for it, and the retraining policy."""

    log_predictions: bool = Field(
        default=True,
        description="Log every answered prediction (off: answers still carry request ids, "
        "nothing is written).",
    )
    sink: Literal["parquet", "postgres"] = Field(
        default="parquet",
        description="Where the service logs predictions and labels: parquet files under "
        "the project state, or PostgreSQL (a cluster).",
    )
    path: Path = Field(
        default=Path("monitoring"),
        description="The parquet sink's folder (relative: inside state_dir).",
    )
    dsn_env: str = Field(
        default="CRISPOPS_PREDICTION_LOG_DSN",
        description="Environment variable holding the PostgreSQL DSN (a secret: never in "
        "crispops.toml).",
    )
    table_prefix: str = Field(
        default="crispops", pattern=r"^[a-z_][a-z0-9_]{0,40}$", description="Table names' prefix."
    )
    queue_size: int = Field(
        default=10_000, ge=1, description="Records held for writing; beyond, they are dropped."
    )
    batch_size: int = Field(
        default=1000, ge=1, description="Most records written at once (one file or INSERT)."
    )
    flush_seconds: float = Field(
        default=2.0,
        gt=0,
        description="Longest a record waits before a write (each write is a Parquet file: "
        "shorter waits, more small files).",
    )
    window: str = Field(
        default="1d", pattern=_DURATION, description="Log window a monitor run judges (e.g. 6h)."
    )
    drift_psi: float = Field(default=0.25, gt=0, description="PSI above which a feature drifted.")
    drift_share: float = Field(
        default=0.3, gt=0, le=1, description="Retrain when more than this share drifted."
    )
    prediction_psi: float = Field(
        default=0.25, gt=0, description="Retrain when the score distribution drifts more."
    )
    metric_drop: float = Field(
        default=0.05,
        ge=0,
        description="Retrain when the realized metric is worse than the champion's holdout "
        "metric by more than this (in the metric's units).",
    )
    min_rows: int = Field(default=200, ge=1, description="Fewest predictions to judge drift.")
    min_labels: int = Field(default=100, ge=1, description="Fewest labels to judge the metric.")
    cooldown: str = Field(
        default="1d", pattern=_DURATION, description="Least time between two retrainings."
    )


class RolloutSettings(_Section):
    """Shadow and canary rollouts of a challenger: the steps and the analysis' thresholds.

    The analysis compares the challenger's arm with the champion's over a window of
    the prediction log; each threshold is one reason to fail it.
    """

    steps: list[int] = Field(
        default=[10, 50, 100],
        description="Canary weights (percent of entities to the challenger), in order; "
        "the last must be 100 (promotion).",
    )
    step_interval: str = Field(
        default="10m", pattern=_DURATION, description="Least time a step serves before analysis."
    )
    window: str = Field(
        default="1h", pattern=_DURATION, description="Prediction-log window an analysis judges."
    )
    min_requests: int = Field(
        default=200, ge=1, description="Fewest predictions per arm before judging ('wait')."
    )
    max_error_rate_delta: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="Most the challenger's error rate may exceed the champion's.",
    )
    max_p99_ratio: float = Field(
        default=1.5,
        gt=0,
        description="Most the challenger's p99 latency may be, as a multiple "
        "of the champion's (when latency is logged).",
    )
    max_distance: float = Field(
        default=0.25, gt=0, description="Largest PSI between the arms' score distributions."
    )
    min_agreement: float = Field(
        default=0.9,
        ge=0,
        le=1,
        description="Least share of shadowed records on which both "
        "models agree (same class; regression: within 10% of the champion's spread).",
    )
    max_metric_drop: float = Field(
        default=0.02,
        ge=0,
        description="Most the challenger's realized metric may be worse "
        "than the champion's, when labels came back (in the metric's units).",
    )
    min_labels: int = Field(
        default=50, ge=1, description="Fewest labelled predictions per arm to compare metrics."
    )
    prometheus_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/]+",
        description="Prometheus that scrapes the model services (http://host:9090): when "
        "set, error rate and p99 latency per arm come from its HTTP API, the rest from the "
        "prediction log.",
    )
    prometheus_selector: str = Field(
        default="",
        description='Extra label matchers for every query, e.g. job="crispops-model" or '
        'namespace="crispops" (empty: every series of the service\'s metric names).',
    )
    prometheus_timeout_s: float = Field(
        default=10.0, gt=0, description="Seconds to wait for one Prometheus query."
    )

    @field_validator("steps")
    @classmethod
    def _increasing(cls, v: list[int]) -> list[int]:
        if not v or any(not 0 < w <= 100 for w in v):
            raise ValueError(f"{v}: each step is a percentage in 1..100")
        if any(b <= a for a, b in itertools.pairwise(v)) or v[-1] != 100:
            raise ValueError(f"{v}: steps must increase and end at 100 (promotion)")
        return v


class ClusterSettings(_Section):
    kfp_host: str | None = None
    kfp_token_env: str = Field(default="KFP_TOKEN", description="Env var holding the KFP token.")
    namespace: str = Field(default="crispops", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    registry: str = Field(default="ghcr.io/crispops", description="Image registry to push to.")
    component_image: str = Field(
        default=COMPONENT_IMAGE,
        description="Image every pipeline component runs in (pinned tag, never :latest).",
    )

    @field_validator("component_image")
    @classmethod
    def _pinned(cls, v: str) -> str:
        if v.endswith(":latest") or (":" not in v.rsplit("/", 1)[-1] and "@" not in v):
            raise ValueError(f"{v!r} must pin a tag or digest (never :latest)")
        return v


class CacheSettings(_Section):
    """The step cache of local runs (``crispops run``); see orchestration/cache.py."""

    enabled: bool = Field(default=True, description="Reuse unchanged steps' outputs.")
    max_mb: int = Field(default=2048, ge=1, description="Size limit; least recently used go.")
    path: Path = Field(default=Path("cache"), description="Folder, under state_dir if relative.")


class Settings(BaseSettings):
    """Everything crispops needs, for one project directory."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    project_dir: Path
    state_dir: Path = Field(
        default=Path(".crispops"),
        description="Champion pointer, model store and run outputs.",
    )
    data: DataSettings
    feature_store: FeatureStoreSettings
    training: TrainingSettings
    validation: ValidationSettings = ValidationSettings()
    serving: ServingSettings = ServingSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    rollout: RolloutSettings = RolloutSettings()
    cluster: ClusterSettings = ClusterSettings()
    cache: CacheSettings = CacheSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment variables override the file; the file arrives as init kwargs.
        return (env_settings, init_settings)

    @model_validator(mode="after")
    def _check(self) -> Settings:
        task = self.data.task
        metrics = TASK_METRICS[task]
        if self.training.selection_metric not in metrics:
            raise ValueError(
                f"training.selection_metric {self.training.selection_metric!r} is not a "
                f"{task} metric; choose one of {', '.join(metrics)}"
            )
        d = self.data
        roles = {*d.join_keys, d.timestamp, d.label}
        clash = sorted(roles & set(d.request_features))
        if clash:
            raise ValueError(
                f"data.request_features lists {', '.join(clash)}: the entity keys, the "
                "timestamp and the label are not request-time features"
            )
        allowed = TASK_ESTIMATORS[task]
        for i, cand in enumerate(self.training.candidates):
            if cand.estimator not in allowed:
                raise ValueError(
                    f"training.candidates[{i}] ({cand.name}): estimator {cand.estimator!r} "
                    f"does not fit task {task!r}; choose one of {', '.join(sorted(allowed))}"
                )
        return self

    # Derived paths -----------------------------------------------------------------
    def resolve(self, path: Path) -> Path:
        return path if path.is_absolute() else (self.project_dir / path)

    @property
    def label_source_path(self) -> Path:
        return self.resolve(self.data.label_source)

    @property
    def repo_path(self) -> Path:
        return self.resolve(self.feature_store.repo_path)

    @property
    def state_path(self) -> Path:
        return self.resolve(self.state_dir)

    @property
    def bentoml_home(self) -> Path:
        return self.state_path / "bentoml"

    @property
    def monitoring_path(self) -> Path:
        """The parquet sink's folder (and monitor's reports and actions)."""
        path = self.monitoring.path
        return path if path.is_absolute() else self.state_path / path

    @property
    def cache_path(self) -> Path:
        path = self.cache.path
        return path if path.is_absolute() else self.state_path / path

    @property
    def champion_file(self) -> Path:
        return self.state_path / "champion.json"

    @property
    def models_file(self) -> Path:
        """The registry of the project's packaged models (champion, challengers...)."""
        return self.state_path / "models.json"

    @property
    def task_image(self) -> str:
        """The image the pipeline's tasks run in on a cluster: ``cluster.component_image``,
        except that a Spark project never gets the default image without Java (its tasks
        would fail to start Spark): that one becomes its ``-spark`` variant."""
        image = self.cluster.component_image
        if self.feature_store.engine == "spark" and image == COMPONENT_IMAGE:
            return SPARK_COMPONENT_IMAGE
        return image

    @property
    def higher_is_better(self) -> bool:
        return TASK_METRICS[self.data.task][self.training.selection_metric]

    def to_json(self) -> str:
        """A self-contained JSON form (absolute paths) that pipeline components reload."""
        data = self.model_dump(mode="json")
        data["project_dir"] = str(self.project_dir.resolve())
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Settings:
        return cls.model_validate_json(text)


class _ServingEnv(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="ignore"
    )

    serving: ServingSettings = ServingSettings()


class _MonitoringEnv(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="ignore"
    )

    monitoring: MonitoringSettings = MonitoringSettings()


def monitoring_runtime() -> MonitoringSettings:
    """The monitoring section from CRISPOPS_MONITORING__* alone: how a model server logs
    (the sink, its folder as an absolute path, the DSN's variable, the queue)."""
    try:
        return _MonitoringEnv().monitoring
    except ValidationError as exc:
        lines = [_format_error(dict(e), Path("environment")) for e in exc.errors()]
        raise SettingsError("invalid monitoring settings:\n  " + "\n  ".join(lines)) from None


def prediction_log_dsn(monitoring: MonitoringSettings) -> str | None:
    """The PostgreSQL DSN of the prediction log, from the variable monitoring.dsn_env names."""
    return os.environ.get(monitoring.dsn_env) or None


def serving_runtime() -> ServingSettings:
    """The serving section from CRISPOPS_SERVING__* alone: what a running model server
    reads (set by `crispops serve` or the Deployment; a Bento holds no crispops.toml)."""
    try:
        return _ServingEnv().serving
    except ValidationError as exc:
        lines = [_format_error(dict(e), Path("environment")) for e in exc.errors()]
        raise SettingsError("invalid serving settings:\n  " + "\n  ".join(lines)) from None


def _format_error(err: dict[str, Any], source: Path) -> str:
    loc = ".".join(str(p) for p in err.get("loc", ()) if p != "__root__")
    env = ENV_PREFIX + "__".join(str(p).upper() for p in err.get("loc", ()))
    msg = err.get("msg", "invalid")
    value = err.get("input")
    where = f"{source} (or {env})" if loc else str(source)
    shown = "" if isinstance(value, dict) or value is None else f" (got {value!r})"
    key = f"{loc}: " if loc else ""
    return f"{where}: {key}{msg}{shown}"


def load_settings(project_dir: Path | str | None = None, **overrides: Any) -> Settings:
    """Load settings for a project directory; raise SettingsError naming the bad key."""
    project = Path(project_dir) if project_dir is not None else find_project()
    project = project.expanduser().resolve()
    path = project / CONFIG_FILE
    if not path.is_file():
        raise SettingsError(f"{path}: no {CONFIG_FILE} here (is {project} a crispops project?)")
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML: {exc}") from None
    data["project_dir"] = project
    data.update(overrides)
    try:
        return Settings(**data)
    except ValidationError as exc:
        lines = [_format_error(dict(e), path) for e in exc.errors()]
        raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from None


def bundled_demo_dir() -> Path | None:
    """The demo project shipped beside the package (a source checkout or editable install)."""
    here = Path(__file__).resolve()
    for candidate in (here.parents[2], here.parent / "demo"):
        if (candidate / CONFIG_FILE).is_file():
            return candidate
    return None


def find_project(cwd: Path | None = None) -> Path:
    """The current directory when it holds crispops.toml, else the bundled demo."""
    cwd = cwd or Path.cwd()
    if (cwd / CONFIG_FILE).is_file():
        return cwd
    demo = bundled_demo_dir()
    if demo is None:
        raise SettingsError(
            f"{cwd}: no {CONFIG_FILE} here and no bundled demo; pass --project DIR "
            "or create one with `crispops init`"
        )
    return demo


def env(name: str, default: str | None = None) -> str | None:
    """Read one environment variable (the only sanctioned place to do so)."""
    return os.environ.get(name, default)
