"""scaffold: `crispops init` writes a loadable project, or fails naming the column."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from crispops.config import load_settings
from crispops.errors import DataFileError
from crispops.project.scaffold import (
    CANDIDATES,
    ScaffoldError,
    ScaffoldResult,
    feast_type,
    prepare,
    project_name,
    read_data,
    scaffold,
)

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
ROLES = {"entity": "shop_id", "timestamp": "seen_at", "label": "churned"}


def frame(n: int = 40, **columns: Any) -> pd.DataFrame:
    """A small valid table (int entity, string timestamps, binary label), plus ``columns``."""
    rng = np.random.default_rng(3)
    start = NOW - timedelta(days=20)
    df = pd.DataFrame(
        {
            "shop_id": np.arange(n) % 10 + 1,
            "seen_at": [(start + timedelta(hours=7 * i)).isoformat() for i in range(n)],
            "revenue": rng.normal(100, 10, n),
            "region": rng.choice(["north", "south"], n),
            "churned": np.arange(n) % 2,
        }
    )
    for name, values in columns.items():
        df[name] = values
    return df


def write(tmp_path: Path, df: pd.DataFrame, name: str = "shops.parquet") -> Path:
    path = tmp_path / name
    if name.endswith(".csv"):
        df.to_csv(path, index=False)
    else:
        df.to_parquet(path, index=False)
    return path


def run(tmp_path: Path, data: Path, task: str = "binary", **kw: Any) -> ScaffoldResult:
    roles = {**ROLES, **{k: kw.pop(k) for k in list(kw) if k in ROLES}}
    target = kw.pop("target", tmp_path / "proj")
    return scaffold(target, data=data, task=task, now=NOW, **roles, **kw)


def left_behind(tmp_path: Path) -> list[str]:
    """Anything in tmp_path besides the input files: a failed run must leave nothing."""
    return sorted(p.name for p in tmp_path.iterdir() if p.suffix not in {".parquet", ".csv"})


# A good project --------------------------------------------------------------------------
def test_writes_a_project_that_loads(tmp_path: Path) -> None:
    result = run(tmp_path, write(tmp_path, frame()), target=tmp_path / "My Shops-2025")
    proj = tmp_path / "My Shops-2025"
    assert result == ScaffoldResult(proj.resolve(), ["revenue", "region"], "my_shops_2025_v1", 40)
    s = load_settings(proj)
    assert (s.data.join_keys, s.data.timestamp, s.data.label, s.data.task) == (
        ["shop_id"],
        "seen_at",
        "churned",
        "binary",
    )
    assert s.feature_store.feature_service == "my_shops_2025_v1"
    assert s.training.selection_metric == "roc_auc"
    assert [c.estimator for c in s.training.candidates] == [
        "logistic_regression",
        "random_forest",
        "hist_gradient_boosting",
    ]
    assert s.data.min_rows == 40  # the data has fewer rows than the default 200
    repo = s.repo_path
    yaml = (repo / "feature_store.yaml").read_text()
    assert "project: my_shops_2025\n" in yaml
    assert "path: data/online_store.db" in yaml and "registry: data/registry.db" in yaml
    assert "type: duckdb" in yaml and "entity_key_serialization_version: 3" in yaml
    assert "data/" in (repo / ".feastignore").read_text().splitlines()
    assert "project: my_shops_2025\n" in (repo / "feature_store.cluster.yaml").read_text()
    assert not list(tmp_path.glob(".*crispops-init*"))


def test_data_files_split_features_from_labels(tmp_path: Path) -> None:
    run(tmp_path, write(tmp_path, frame(), "shops.csv"))
    s = load_settings(tmp_path / "proj")
    feats = pd.read_parquet(s.repo_path / "data" / "features.parquet")
    labels = pd.read_parquet(s.label_source_path)
    assert list(feats.columns) == ["shop_id", "event_timestamp", "revenue", "region"]
    assert list(labels.columns) == ["shop_id", "seen_at", "churned"]
    assert str(feats["event_timestamp"].dt.tz) == "UTC"
    assert str(labels["seen_at"].dt.tz) == "UTC"
    assert len(feats) == len(labels) == 40
    assert feats["event_timestamp"].is_monotonic_increasing


def test_definitions_module_follows_the_template_order_and_holds_no_data(tmp_path: Path) -> None:
    df = frame(secret_code=[f"zq-{i:03d}" for i in range(40)])
    run(tmp_path, write(tmp_path, df))
    text = (tmp_path / "proj" / "feature_repo" / "proj_features.py").read_text()
    order = [text.index(s) for s in ("Entity(", "FileSource(", "FeatureView(", "FeatureService(")]
    assert order == sorted(order)
    assert 'join_keys=["shop_id"]' in text and "value_type=ValueType.INT64" in text
    assert 'Field(name="revenue", dtype=Float64)' in text
    assert 'Field(name="region", dtype=String)' in text
    assert 'Field(name="secret_code", dtype=String)' in text
    assert 'name="proj_v1"' in text
    assert "zq-0" not in text and "north" not in text  # names and types only
    assert "ttl=timedelta(days=50)" in text  # oldest row 20 days old + 30 days margin
    compile(text, "proj_features.py", "exec")


@pytest.mark.parametrize(
    ("task", "label", "metric", "first"),
    [
        ("multiclass", np.arange(40) % 3, "macro_f1", "logistic_regression"),
        ("regression", np.linspace(0, 1, 40), "rmse", "ridge"),
    ],
)
def test_candidates_fit_the_task(
    tmp_path: Path, task: str, label: Any, metric: str, first: str
) -> None:
    run(tmp_path, write(tmp_path, frame(churned=label)), task=task)
    s = load_settings(tmp_path / "proj")
    assert s.training.selection_metric == metric
    assert s.training.candidates[0].estimator == first
    assert [c.name for c in s.training.candidates] == [c["name"] for c in CANDIDATES[task]]


def test_string_entity_and_timestamp_named_event_timestamp(tmp_path: Path) -> None:
    df = frame().rename(columns={"seen_at": "event_timestamp"})
    df["shop_id"] = "shop-" + df["shop_id"].astype(str)
    run(tmp_path, write(tmp_path, df), timestamp="event_timestamp")
    repo = tmp_path / "proj" / "feature_repo"
    assert "value_type=ValueType.STRING" in (repo / "proj_features.py").read_text()
    labels = pd.read_parquet(load_settings(tmp_path / "proj").label_source_path)
    assert list(labels.columns) == ["shop_id", "event_timestamp", "churned"]


def test_existing_directory_needs_force_and_force_keeps_other_files(tmp_path: Path) -> None:
    data = write(tmp_path, frame())
    target = tmp_path / "proj"
    target.mkdir()
    (target / "notes.md").write_text("mine")
    with pytest.raises(ScaffoldError, match=r"not empty.*--force"):
        run(tmp_path, data)
    assert sorted(p.name for p in target.iterdir()) == ["notes.md"]
    (target / "feature_repo").mkdir()
    (target / "feature_repo" / "old.py").write_text("stale = 1\n")
    run(tmp_path, data, force=True)
    assert (target / "notes.md").read_text() == "mine"
    assert not (target / "feature_repo" / "old.py").exists()
    assert load_settings(target).feature_store.feature_service == "proj_v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["proj", "shops.parquet"]


def test_empty_existing_directory_and_missing_parents_are_fine(tmp_path: Path) -> None:
    data = write(tmp_path, frame())
    (tmp_path / "empty").mkdir()
    inode = (tmp_path / "empty").stat().st_ino
    run(tmp_path, data, target=tmp_path / "empty")
    assert (tmp_path / "empty").stat().st_ino == inode  # filled in, not replaced
    run(tmp_path, data, target=tmp_path / "a" / "b" / "proj")
    load_settings(tmp_path / "empty")
    load_settings(tmp_path / "a" / "b" / "proj")


def test_init_in_place_with_the_data_inside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cd shops && crispops init . --data shops.csv --force`, then again."""
    proj = tmp_path / "shops"
    proj.mkdir()
    write(proj, frame(), "shops.csv")
    monkeypatch.chdir(proj)
    first = scaffold(".", data="shops.csv", task="binary", force=True, now=NOW, **ROLES)
    assert first.directory == proj.resolve() and first.feature_service == "shops_v1"
    again = scaffold(".", data="shops.csv", task="binary", force=True, now=NOW, **ROLES)
    assert again == first
    assert sorted(p.name for p in proj.iterdir()) == ["crispops.toml", "feature_repo", "shops.csv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shops"]


# Bad inputs: the message names the column, and nothing is left behind ----------------------
def _objects(*values: Any, n: int = 40) -> list[Any]:
    return [values[i % len(values)] for i in range(n)]


BAD = {
    "missing entity": (frame(), {"entity": "store"}, "binary", r"'store' \(--entity\).*has:"),
    "missing label": (frame(), {"label": "target"}, "binary", r"'target' \(--label\)"),
    "same column twice": (frame(), {"label": "shop_id"}, "binary", "both name column 'shop_id'"),
    "unparseable timestamp": (
        frame(seen_at=_objects("yesterday", "2025-01-01")),
        {},
        "binary",
        r"'seen_at' holds values that are not timestamps",
    ),
    "no timestamp at all": (frame(seen_at=[None] * 40), {}, "binary", "'seen_at'"),
    "numeric timestamp": (frame(seen_at=np.arange(40) * 1000), {}, "binary", "'seen_at'.*numbers"),
    "null timestamps": (
        frame(seen_at=[None, *frame()["seen_at"][1:]]),
        {},
        "binary",
        r"'seen_at' \(--timestamp\): 1 row\(s\) have no timestamp",
    ),
    "future timestamps": (
        frame(seen_at=_objects("2030-01-01", "2025-01-01")),
        {},
        "binary",
        r"'seen_at' \(--timestamp\): 20 row\(s\) are later than now",
    ),
    "list column": (frame(tags=_objects(["a"], ["b", "c"])), {}, "binary", r"'tags' \(list"),
    "dict column": (frame(meta=_objects({"a": 1})), {}, "binary", r"'meta' \(dict values"),
    "bytes column": (frame(blob=_objects(b"\x00", b"\x01")), {}, "binary", r"'blob' \(bytes"),
    "datetime feature": (
        frame(opened=pd.Timestamp("2024-01-01", tz="UTC")),
        {},
        "binary",
        r"'opened' \(timestamps",
    ),
    "all-null feature": (frame(unused=[None] * 40), {}, "binary", r"'unused' hold no values"),
    "single-class label": (frame(churned=1), {}, "binary", r"'churned' \(--label\) holds a single"),
    "binary with three classes": (
        frame(churned=np.arange(40) % 3),
        {},
        "binary",
        r"'churned'.*3 distinct values.*--task multiclass",
    ),
    "fractional classes": (
        frame(churned=np.linspace(0, 1, 40)),
        {},
        "multiclass",
        r"'churned'.*fractional.*--task regression",
    ),
    "string regression label": (
        frame(churned=_objects("yes", "no")),
        {},
        "regression",
        r"'churned' \(--label\) holds strings; --task regression needs numbers",
    ),
    "null labels": (
        frame(churned=_objects(1.0, 0.0, None)),
        {},
        "binary",
        r"'churned' \(--label\): 13 row\(s\) have no label",
    ),
    "no feature columns": (
        frame()[["shop_id", "seen_at", "churned"]],
        {},
        "binary",
        "no feature columns",
    ),
    "null entity": (
        frame(shop_id=_objects("a", "b", None)),
        {},
        "binary",
        r"'shop_id' \(--entity\): 13 row\(s\) have no entity key",
    ),
    "float entity": (
        frame(shop_id=np.arange(40) + 0.5),
        {},
        "binary",
        r"'shop_id' \(--entity\) must hold integers or strings, but is Float64",
    ),
    "name with a space": (
        frame(**{"unit price": 1.0}),
        {},
        "binary",
        r"'unit price' \(not letters",
    ),
    "keyword name": (frame(**{"class": 1.0}), {}, "binary", r"'class' \(a Python keyword\)"),
    "reserved name": (frame(created=1.0), {}, "binary", r"'created' \(reserved by Feast\)"),
    "repeated entity and time": (
        frame(shop_id=1, seen_at="2025-05-01T00:00:00"),
        {},
        "binary",
        r"40 rows repeat an \(entity, timestamp\) pair of columns 'shop_id', 'seen_at'",
    ),
    "too few rows": (frame(n=6), {}, "binary", r"6 row\(s\); a project needs at least 10"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_input_names_the_column_and_leaves_nothing(tmp_path: Path, case: str) -> None:
    df, roles, task, message = BAD[case]
    data = write(tmp_path, df)
    with pytest.raises(ValueError, match=message):
        run(tmp_path, data, task=task, **roles)
    assert left_behind(tmp_path) == []


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("nothing.parquet", None, "file not found"),
        ("empty.csv", b"", "file is empty"),
        ("broken.parquet", b"not parquet at all", "cannot be read as parquet"),
        ("shops.xlsx", b"PK\x03\x04", "unsupported file type '.xlsx'"),
        ("header-only.csv", b"shop_id,seen_at,churned,revenue\n", "holds no rows"),
    ],
)
def test_unusable_file(tmp_path: Path, name: str, content: bytes | None, message: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataFileError, match=message):
        run(tmp_path, path, target=tmp_path / "proj")
    assert not (tmp_path / "proj").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_failure_after_writing_files_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The written settings are loaded before the rename; when that fails (here an
    environment override makes them invalid), the staging directory and the parent
    directories init created are gone."""
    from crispops.config import SettingsError

    monkeypatch.setenv("CRISPOPS_TRAINING__CV_FOLDS", "1")
    with pytest.raises(SettingsError, match="cv_folds"):
        run(tmp_path, write(tmp_path, frame()), target=tmp_path / "new" / "proj")
    assert left_behind(tmp_path) == []


def test_mixed_object_column_is_rejected_by_name() -> None:
    """Parquet cannot hold a column of mixed types; a DataFrame handed to prepare can."""
    df = frame(code=_objects("x", 1))
    with pytest.raises(DataFileError, match=r"'code' \(values of mixed types \(int, str\)\)"):
        prepare(df, **ROLES, task="binary", where="df", now=NOW)


def test_csv_column_typed_differently_per_chunk_is_read_as_text(tmp_path: Path) -> None:
    """pandas types a large CSV chunk by chunk: 'zip' comes back as ints and strings."""
    n = 300_000
    zips = np.arange(n).astype(str).astype(object)
    zips[-3:] = "0x1"
    path = tmp_path / "big.csv"
    path.write_text("zip,b\n" + "\n".join(f"{z},1" for z in zips) + "\n")
    with pytest.warns(pd.errors.DtypeWarning):
        assert {type(v) for v in pd.read_csv(path)["zip"]} == {int, str}
    df = read_data(path)
    assert {type(v) for v in df["zip"]} == {str}
    assert feast_type(df["zip"]) == "String"


def test_unknown_task_and_file_target(tmp_path: Path) -> None:
    data = write(tmp_path, frame())
    with pytest.raises(ScaffoldError, match="--task 'ranking'"):
        run(tmp_path, data, task="ranking")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ScaffoldError, match="not a directory"):
        run(tmp_path, data, target=tmp_path / "afile")


# Types and names ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (pd.Series([1.5, np.nan]), "Float64"),
        (pd.Series([1.5, 2.0], dtype="float32"), "Float64"),
        (pd.Series([1.5, None], dtype="Float64"), "Float64"),
        (pd.Series([1, 2], dtype="int8"), "Int64"),
        (pd.Series([1, 2], dtype="uint32"), "Int64"),
        (pd.Series([1, None], dtype="Int64"), "Int64"),
        (pd.Series([True, False]), "Bool"),
        (pd.Series([True, None], dtype="boolean"), "Bool"),
        (pd.Series([True, None], dtype=object), "Bool"),
        (pd.Series(["a", None]), "String"),
        (pd.Series(["a", None], dtype="string"), "String"),
        (pd.Series(["a", "b"], dtype="category"), "String"),
        (pd.Series([1, 2.5], dtype=object), "Float64"),
    ],
)
def test_feast_type(values: pd.Series, expected: str) -> None:
    assert feast_type(values) == expected


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (pd.Series(pd.to_datetime(["2024-01-01"])), "timestamps"),
        (pd.Series(pd.to_timedelta(["1h"])), "durations"),
        (pd.Series([[1], [2]]), "list values"),
        (pd.Series([{"a": 1}]), "dict values"),
        (pd.Series([b"x"]), "bytes values"),
        (pd.Series(["a", 1]), r"mixed types \(int, str\)"),
        (pd.Series([None, None], dtype=object), "no values"),
        (pd.Series([2**64 - 1], dtype="uint64"), "64-bit"),
        (pd.Series([1 + 2j]), "complex"),
    ],
)
def test_feast_type_rejects(values: pd.Series, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        feast_type(values)


@pytest.mark.parametrize(
    ("directory", "expected"),
    [
        ("churn", "churn"),
        ("My Project-2", "my_project_2"),
        ("2024__data!!", "project_2024_data"),
        ("---", "project"),
        ("Ünïcode", "n_code"),
    ],
)
def test_project_name(directory: str, expected: str) -> None:
    assert project_name(Path("/x") / directory) == expected


def test_generated_toml_is_plain_toml(tmp_path: Path) -> None:
    run(tmp_path, write(tmp_path, frame()))
    data = tomllib.loads((tmp_path / "proj" / "crispops.toml").read_text())
    assert set(data) == {"data", "feature_store", "training", "serving", "cluster"}
    assert data["data"]["label_source"] == "feature_repo/data/labels.parquet"
    assert data["feature_store"]["repo_path"] == "feature_repo"


# --engine spark -----------------------------------------------------------------------
def _repo_config(path: Path) -> Any:
    """The file as Feast reads it (its own loader, with ${VAR}s set)."""
    import os

    from feast.repo_config import load_repo_config

    env = {"POSTGRES_USER": "u", "POSTGRES_PASSWORD": "p", "POSTGRES_HOST": "h"}
    env |= {"POSTGRES_DB": "d", "REDIS_HOST": "r", "REDIS_PASSWORD": "x"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return load_repo_config(path.parent, path)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_spark_engine_writes_spark_sources_and_stores(tmp_path: Path) -> None:
    from crispops.config import SparkSettings

    spark = SparkSettings(master="local[3]", driver_memory="2g", shuffle_partitions=5)
    result = scaffold(
        tmp_path / "shops",
        data=write(tmp_path, frame()),
        **ROLES,
        task="binary",
        now=NOW,
        engine="spark",
        spark=spark,
    )
    repo = result.directory / "feature_repo"
    local = _repo_config(repo / "feature_store.yaml")
    assert local.offline_store.type == "spark"
    assert local.offline_store.spark_conf["spark.master"] == "local[3]"
    assert local.offline_store.spark_conf["spark.driver.memory"] == "2g"
    assert local.batch_engine.type == "spark.engine"
    assert local.batch_engine.spark_conf["spark.sql.shuffle.partitions"] == "5"
    cluster = _repo_config(repo / "feature_store.cluster.yaml")
    assert cluster.offline_store.spark_conf["spark.master"].startswith("k8s://")
    assert cluster.online_store.type == "redis"
    module = (repo / "shops_features.py").read_text()
    assert "SparkSource(" in module and "FileSource" not in module
    assert 'file_format="parquet"' in module
    s = load_settings(result.directory)
    assert s.feature_store.engine == "spark"
    assert s.feature_store.spark.master == "local[3]"
    assert s.cluster.component_image.endswith("-spark"), "its tasks need Java and pyspark"
    # Spark 4 rejects Parquet nanosecond timestamps: both files are written in microseconds.
    import pyarrow.parquet as pq

    for name in ("features.parquet", "labels.parquet"):
        schema = pq.read_schema(repo / "data" / name)
        stamps = [f.type for f in schema if str(f.type).startswith("timestamp")]
        assert stamps and all(t.unit == "us" for t in stamps), (name, stamps)


def test_spark_application_cluster_engine_is_a_feast_config(tmp_path: Path) -> None:
    from crispops.config import SparkSettings
    from crispops.project.render import render_store_yaml

    files = render_store_yaml(
        "shops", "spark", SparkSettings(cluster_engine="spark_application"), namespace="ml"
    )
    path = tmp_path / "feature_store.cluster.yaml"
    path.write_text(files["feature_store.cluster.yaml"])
    (tmp_path / "feature_store.yaml").write_text(files["feature_store.yaml"])
    config = _repo_config(path)
    assert config.batch_engine.type == "spark_application"
    assert config.batch_engine.namespace == "ml"
    assert config.batch_engine.service_account == "crispops-spark"
    assert ":" in config.batch_engine.image and not config.batch_engine.image.endswith(":latest")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("master", "locale[2]", "not a Spark master"),
        ("driver_memory", "4 GB", "driver_memory"),
        ("image", "spark:latest", "never :latest"),
    ],
)
def test_bad_spark_settings_name_the_key(key: str, value: str, message: str) -> None:
    from pydantic import ValidationError

    from crispops.config import SparkSettings

    with pytest.raises(ValidationError, match=message):
        SparkSettings(**{key: value})
