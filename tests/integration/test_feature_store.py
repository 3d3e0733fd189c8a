"""The feature store for real: DuckDB offline, SQLite and Redis online, SQL registry."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crispops.config import load_settings
from crispops.contract import feature_store, load_contract
from crispops.steps.features import apply, check, materialize
from crispops.steps.ingest import ingest
from tests.conftest import service_available

pytestmark = pytest.mark.integration

VIEWS = {  # view -> (file, ttl)
    "customer_profile_fv": ("customer_profiles.parquet", pd.Timedelta(days=45)),
    "account_activity_fv": ("account_activity.parquet", pd.Timedelta(days=7)),
}


def as_of(
    source: pd.DataFrame, entity: object, ts: pd.Timestamp, ttl: pd.Timedelta
) -> pd.Series | None:
    rows = source[
        (source["customer_id"] == entity)
        & (source["event_timestamp"] <= ts)
        & (source["event_timestamp"] >= ts - ttl)
    ]
    if rows.empty:
        return None
    return rows.sort_values(["event_timestamp", "created"]).iloc[-1]


def test_training_set_is_point_in_time_correct(demo_project: Path) -> None:
    s = load_settings(demo_project)
    store = feature_store(s)
    contract = load_contract(s, store)
    df, result = ingest(store, contract, s.label_source_path, s.data.timestamp, s.data.label)
    labels = pd.read_parquet(s.label_source_path)
    assert result.rows == len(labels) == len(df)
    data = s.repo_path / "data"
    rng = np.random.default_rng(0)
    sample = df.iloc[rng.choice(len(df), size=60, replace=False)]
    checked = 0
    for view, (file, ttl) in VIEWS.items():
        source = pd.read_parquet(data / file)
        names = [f.name for f in contract.features if f.source == view]
        for _, row in sample.iterrows():
            expected = as_of(source, row["customer_id"], row[s.data.timestamp], ttl)
            for name in names:
                got = row[name]
                if expected is None:
                    assert pd.isna(got), (view, name, row["customer_id"])
                else:
                    assert got == expected[name], (view, name, row["customer_id"])
                checked += 1
    assert checked >= 60 * 10
    # the on-demand feature is computed from the as-of income and the request value
    ratio = df["requested_amount"] / df["annual_income"]
    assert np.allclose(df["loan_to_income"], ratio, equal_nan=True)


def test_latest_value_join_differs_and_leaks(demo_project: Path) -> None:
    """A naive join on each customer's latest values gives other values and a rosier metric."""
    s = load_settings(demo_project)
    store = feature_store(s)
    df, _ = ingest(
        store, load_contract(s, store), s.label_source_path, s.data.timestamp, s.data.label
    )
    profiles = pd.read_parquet(s.repo_path / "data" / "customer_profiles.parquet")
    latest = profiles.sort_values("event_timestamp").groupby("customer_id").last()
    naive = df[["customer_id", "defaulted"]].join(latest["credit_score"], on="customer_id")
    differs = (naive["credit_score"] != df["credit_score"]).mean()
    assert differs > 0.5
    # leakage: the latest score separates defaulters better than the as-of score does
    from sklearn.metrics import roc_auc_score

    pit = roc_auc_score(df["defaulted"], -df["credit_score"].fillna(700))
    leaky = roc_auc_score(naive["defaulted"], -naive["credit_score"])
    assert leaky > pit + 0.02


def test_materialize_then_online_equals_offline_on_sqlite(fresh_project: Path) -> None:
    repo = fresh_project / "feature_repo"
    result = check(repo, "credit_default_v1", sample=40)
    assert result.ok, result.mismatches[:5]
    assert result.compared == 40 * 10
    # a second run over the same window changes nothing
    materialize(repo)
    again = check(repo, "credit_default_v1", sample=40)
    assert again.ok and again.compared == result.compared


def test_check_reports_a_tampered_online_value(fresh_project: Path) -> None:
    import sqlite3

    repo = fresh_project / "feature_repo"
    with sqlite3.connect(repo / "data" / "online_store.db") as db:
        db.execute(
            "DELETE FROM crispops_demo_customer_profile_fv WHERE rowid IN "
            "(SELECT rowid FROM crispops_demo_customer_profile_fv LIMIT 400)"
        )
    result = check(repo, "credit_default_v1", sample=200)
    assert not result.ok
    assert {m.feature.split(":")[0] for m in result.mismatches} == {"customer_profile_fv"}


def _cluster_repo(project: Path, online: str, registry: str | None = None) -> Path:
    repo = project / "feature_repo"
    lines = ["project: crispops_test_" + uuid.uuid4().hex[:8], "provider: local"]
    lines.append(f"registry: {registry}" if registry else "registry: data/registry.db")
    lines += [online, "offline_store:\n  type: duckdb", "entity_key_serialization_version: 3"]
    (repo / "feature_store.yaml").write_text("\n".join(lines) + "\n")
    return repo


def test_redis_online_store(tmp_path: Path, demo_project: Path) -> None:
    service_available("127.0.0.1", 6379, "Redis")
    project = tmp_path / "p"
    shutil.copytree(demo_project, project, ignore=shutil.ignore_patterns("*.db", ".crispops"))
    repo = _cluster_repo(
        project, "online_store:\n  type: redis\n  connection_string: 127.0.0.1:6379"
    )
    apply(repo)
    materialize(repo)
    result = check(repo, "credit_default_v1", sample=40)
    assert result.ok, result.mismatches[:5]
    assert result.compared == 400


def test_sql_registry_on_postgres(tmp_path: Path, demo_project: Path) -> None:
    service_available("127.0.0.1", 5432, "PostgreSQL")
    project = tmp_path / "p"
    shutil.copytree(demo_project, project, ignore=shutil.ignore_patterns("*.db", ".crispops"))
    registry = (
        "\n  registry_type: sql\n  path: postgresql+psycopg://postgres@127.0.0.1:5432/test"
        "\n  cache_ttl_seconds: 60"
    )
    repo = _cluster_repo(project, "online_store:\n  type: sqlite\n  path: data/online.db", registry)
    result = apply(repo)
    assert result.feature_services == ["credit_default_v1"]
    materialize(repo)
    assert check(repo, "credit_default_v1", sample=20).ok
    # a second store object reads the same definitions back from PostgreSQL
    from feast import FeatureStore

    fs = FeatureStore(repo_path=str(repo))
    assert {v.name for v in fs.list_feature_views()} == set(VIEWS)
    fs.teardown()
