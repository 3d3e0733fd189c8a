"""A team's own Feast repo and label table, end to end (support/loan_repo.py, after
Feast's credit-score tutorial): two entities of different key types, a sparse view,
an on-demand view with a request field, a string column of thousands of values, a
constant column, an ID column, and application fields in the label table.

`crispops init --feature-repo` -> features apply -> run -> materialize -> serve ->
/predict_entity with both keys; the champion is as good as a plain scikit-learn
pipeline on the same joined columns, and every column left out is named.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from crispops.champion import read_champion
from crispops.config import load_settings
from crispops.orchestration.local import RunResult, run_training
from crispops.steps import Step
from crispops.steps.features import apply, check, materialize
from support.loan_repo import CONSTANT, FEATURE_SERVICE, HIGH_CARDINALITY, SPARSE_VIEW, generate
from support.projects import fast_settings
from support.servers import serve_bento

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLI = [sys.executable, "-m", "crispops.cli"]


def init(project: Path, repo: Path, labels: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *CLI,
            "init",
            str(project),
            "--feature-repo",
            str(repo),
            "--feature-service",
            FEATURE_SERVICE,
            "--data",
            str(labels),
            "--timestamp",
            "event_timestamp",
            "--label",
            "loan_status",
            "--task",
            "binary",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def adopted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("team")
    team = generate(base / "team", rows=6000, zipcodes=5500)
    project = base / "project"
    before = _tree(team.repo)
    done = init(project, team.repo, team.labels)
    untouched = _tree(team.repo) == before
    assert done.returncode == 0, done.stdout + done.stderr
    apply(team.repo)
    result = run_training(fast_settings(project))
    assert result.ok, result.error[-2000:]
    return {
        "team": team,
        "project": project,
        "init": done.stdout,
        "run": result,
        "untouched": untouched,
    }


def _tree(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.stat().st_mtime for p in root.rglob("*") if p.is_file()}


def test_init_points_at_the_repo_and_names_what_it_left_out(adopted: dict) -> None:
    s = load_settings(adopted["project"])
    team = adopted["team"]
    assert s.repo_path.resolve() == team.repo.resolve()
    assert s.data.join_keys == ["zipcode", "dob_ssn"]  # from both views, int and string
    assert s.data.request_features == {
        "person_age": "int",
        "person_income": "float",
        "person_home_ownership": "string",
        "person_emp_length": "float",
        "loan_intent": "string",
        "loan_int_rate": "float",
    }  # loan_amnt is the on-demand view's request field: in the contract already
    out = adopted["init"]
    assert "loan_id" in out and "ID-like" in out
    assert "created_timestamp" in out and "datetime" in out
    assert adopted["untouched"]  # init read the repo and wrote nothing into it
    assert sorted(p.name for p in adopted["project"].iterdir()) == [".crispops", "crispops.toml"]


def _frames(run: RunResult) -> tuple[pd.DataFrame, pd.DataFrame]:
    train, test = run.artifact(Step.SPLIT, "train"), run.artifact(Step.SPLIT, "test")
    assert train is not None and test is not None
    return pd.read_parquet(train), pd.read_parquet(test)


def test_the_champion_matches_a_plain_pipeline_on_the_same_columns(adopted: dict) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler, TargetEncoder

    run: RunResult = adopted["run"]
    champion = read_champion(load_settings(adopted["project"]).champion_file)
    assert champion is not None
    findings = run.findings or {}
    dropped = set(findings["dropped"])
    # the constant column and the sparse view's columns are left out, with a warning
    assert CONSTANT in dropped
    assert {"credit_card_due", "missed_payments_1y"} <= dropped
    summary = {(p["column"], p["severity"]) for p in findings["problems"]}
    assert (CONSTANT, "warn") in summary
    coverage = {c["view"]: c for c in findings["ingest"]["coverage"]}
    assert coverage[SPARSE_VIEW]["share"] > 0.5 and coverage["zipcode_features"]["share"] == 0
    # the application's own fields reached the model
    assert {"loan_int_rate", "person_income", "loan_amnt", "loan_to_mean_wage"} <= set(
        champion.inputs
    )
    assert not dropped & set(champion.inputs)

    joined = run.artifact(Step.INGEST, "dataset")
    assert joined is not None and pd.read_parquet(joined)[HIGH_CARDINALITY].nunique() > 5000
    train, test = _frames(run)
    columns = champion.inputs
    text = [c for c in columns if train[c].dtype == object]
    low = [c for c in text if train[c].nunique() <= 30]
    high = [c for c in text if c not in low]
    numeric = [c for c in columns if c not in text]

    def prepare(df: pd.DataFrame) -> pd.DataFrame:
        return df[columns].assign(**{c: df[c].fillna("__missing__") for c in text})

    # plain scikit-learn, as a data scientist would write it: a boosted model and a
    # linear one on the same joined columns; crispops must match the better of the two
    boosted = make_pipeline(
        ColumnTransformer(
            [
                ("low", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1), low),
                ("high", TargetEncoder(), high),
            ],
            remainder="passthrough",
        ),
        HistGradientBoostingClassifier(random_state=0),
    )
    linear = make_pipeline(
        ColumnTransformer(
            [
                ("num", make_pipeline(SimpleImputer(), StandardScaler()), numeric),
                ("low", OneHotEncoder(handle_unknown="ignore"), low),
                ("high", TargetEncoder(), high),
            ]
        ),
        LogisticRegression(max_iter=2000),
    )
    plain_auc = 0.0
    for plain in (boosted, linear):
        plain.fit(prepare(train), train["loan_status"])
        proba = plain.predict_proba(prepare(test))[:, 1]
        plain_auc = max(plain_auc, roc_auc_score(test["loan_status"], proba))
    assert champion.metric == "roc_auc"
    assert champion.score > 0.75, champion
    assert abs(champion.score - plain_auc) <= 0.01, (champion.score, plain_auc)


def test_materialize_check_serve_and_predict_with_both_keys(adopted: dict, tmp_path: Path) -> None:
    team, project = adopted["team"], adopted["project"]
    materialize(team.repo)
    assert check(team.repo, FEATURE_SERVICE, sample=30).ok
    labels = pd.read_parquet(team.labels)
    row = labels.iloc[-1]
    record = {
        "zipcode": int(row["zipcode"]),
        "dob_ssn": str(row["dob_ssn"]),
        "person_age": int(row["person_age"]),
        "person_income": float(row["person_income"]),
        "person_home_ownership": str(row["person_home_ownership"]),
        "person_emp_length": float(np.nan_to_num(row["person_emp_length"], nan=1.0)),
        "loan_intent": str(row["loan_intent"]),
        "loan_amnt": int(row["loan_amnt"]),
        "loan_int_rate": float(row["loan_int_rate"]),
    }
    server = serve_bento(project, tmp_path)
    try:
        ok = httpx.post(server.url + "/predict_entity", json={"records": [record]}, timeout=30)
        assert ok.status_code == 200, ok.text
        answer = ok.json()[0]
        assert answer["error"] is None and set(answer["probabilities"]) == {"0", "1"}
        no_key = {k: v for k, v in record.items() if k != "dob_ssn"}
        bad = httpx.post(server.url + "/predict_entity", json={"records": [no_key]}, timeout=30)
        assert bad.status_code == 400 and "dob_ssn" in bad.text
        no_field = {k: v for k, v in record.items() if k != "loan_int_rate"}
        bad = httpx.post(server.url + "/predict_entity", json={"records": [no_field]}, timeout=30)
        assert bad.status_code == 400 and "loan_int_rate" in bad.text
        unknown = {**record, "zipcode": 1, "dob_ssn": "nobody"}
        miss = httpx.post(server.url + "/predict_entity", json={"records": [unknown]}, timeout=30)
        assert miss.status_code == 200
        assert (
            "zipcode=1" in miss.json()[0]["error"]
            and "dob_ssn='nobody'" in (miss.json()[0]["error"])
        )
    finally:
        server.stop()


def test_a_missing_join_key_is_named_with_its_view(adopted: dict, tmp_path: Path) -> None:
    team = adopted["team"]
    labels = pd.read_parquet(team.labels).drop(columns=["dob_ssn"])
    path = tmp_path / "loans.parquet"
    labels.to_parquet(path)
    done = init(tmp_path / "p", team.repo, path)
    assert done.returncode == 2
    assert "'dob_ssn' (the join key of feature view credit_history)" in " ".join(
        done.stderr.split()
    )
    assert "Traceback" not in done.stderr


def test_a_store_that_drops_rows_stops_ingest_naming_the_views(tmp_path: Path) -> None:
    """Feast's file offline store drops label rows with no feature row inside a view's
    TTL: ingest counts them and stops, naming the views and their TTLs."""
    team = generate(tmp_path / "team", rows=800, zipcodes=600, offline_store="file")
    project = tmp_path / "project"
    assert init(project, team.repo, team.labels).returncode == 0
    apply(team.repo)
    result = run_training(fast_settings(project))
    assert not result.ok and result.failed_step == Step.INGEST
    log = " ".join(result.log.read_text().split())
    assert "the offline store returned" in log and "credit_history (TTL 90 days)" in log
