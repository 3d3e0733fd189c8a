"""`crispops init --feature-repo`: reading a team's repo, choosing request-time features,
and the errors a user meets (each names the column, key, view or setting)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crispops.config import load_settings
from crispops.errors import DataFileError, ScaffoldError
from crispops.project.adopt import adopt, read_repo, request_candidates
from support.loan_repo import FEATURE_SERVICE, generate


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory):
    return generate(tmp_path_factory.mktemp("team"), rows=300, zipcodes=200)


def _adopt(team, dest: Path, **kw):
    args = dict(
        feature_repo=team.repo,
        feature_service=FEATURE_SERVICE,
        data=team.labels,
        timestamp="event_timestamp",
        label="loan_status",
        task="binary",
    )
    return adopt(dest, **{**args, **kw})


def test_the_contract_comes_from_the_definitions_without_a_registry(team) -> None:
    contract = read_repo(team.repo, FEATURE_SERVICE)
    assert not (team.repo / "data" / "registry.db").exists()  # nothing applied
    assert {k.name: k.kind for k in contract.entity_keys} == {"zipcode": "int", "dob_ssn": "string"}
    assert contract.view_keys == {"zipcode_features": ("zipcode",), "credit_history": ("dob_ssn",)}
    assert [f.name for f in contract.request_fields] == ["loan_amnt"]
    assert contract.view_ttls["credit_history"] == 90 * 86400


def test_request_features_leave_out_ids_times_provided_and_excluded(team) -> None:
    contract = read_repo(team.repo, FEATURE_SERVICE)
    labels = pd.read_parquet(team.labels).assign(
        city="x",  # the FeatureService provides city
        code=lambda d: [f"c{i}" for i in range(len(d))],  # text ID
        score=lambda d: np.linspace(0, 1, len(d)),  # distinct floats are not an ID
        empty=np.nan,
    )
    request, left_out = request_candidates(
        labels, contract, timestamp="event_timestamp", label="loan_status", exclude=["person_age"]
    )
    assert "score" in request and request["person_income"] == "float"
    assert "loan_amnt" not in request and "loan_amnt" not in left_out
    assert left_out["person_age"] == "--exclude"
    assert "ID-like" in left_out["loan_id"] and "ID-like" in left_out["code"]
    assert "datetime" in left_out["created_timestamp"]
    assert "provides it" in left_out["city"]
    assert left_out["empty"] == "holds no values"


def test_adopt_writes_settings_that_load_and_only_those(team, tmp_path: Path) -> None:
    result = _adopt(team, tmp_path / "p", exclude=["loan_intent"])
    s = load_settings(tmp_path / "p")
    assert s.data.join_keys == ["zipcode", "dob_ssn"] == result.join_keys
    assert "loan_intent" not in s.data.request_features
    assert s.repo_path.resolve() == team.repo.resolve()
    assert s.label_source_path.resolve() == team.labels.resolve()
    text = (tmp_path / "p" / "crispops.toml").read_text()
    assert "# left out: loan_id: ID-like" in text and "# left out: loan_intent: --exclude" in text
    assert [p.name for p in (tmp_path / "p").iterdir()] == ["crispops.toml"]
    with pytest.raises(ScaffoldError, match="exists; pass --force"):
        _adopt(team, tmp_path / "p")
    _adopt(team, tmp_path / "p", force=True)


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"feature_service": "nope"}, ScaffoldError, "it defines: credit_scoring_v1"),
        ({"exclude": ["no_such"]}, ScaffoldError, "--exclude no_such: no such column"),
        ({"timestamp": "applied_at"}, DataFileError, "'applied_at' (--timestamp)"),
        ({"task": "ranking"}, ScaffoldError, "--task 'ranking'"),
        ({"task": "regression", "label": "loan_intent"}, DataFileError, "needs numbers"),
    ],
)
def test_bad_options_are_named(team, tmp_path: Path, change, error, message) -> None:
    with pytest.raises(error, match=re.escape(message)):
        _adopt(team, tmp_path / "p", **change)
    assert not (tmp_path / "p" / "crispops.toml").exists()


def test_a_missing_join_key_names_its_view(team, tmp_path: Path) -> None:
    path = tmp_path / "loans.parquet"
    pd.read_parquet(team.labels).drop(columns=["zipcode"]).to_parquet(path)
    with pytest.raises(DataFileError, match=r"'zipcode' \(the join key of feature view zipcode"):
        _adopt(team, tmp_path / "p", data=path)


def test_a_feature_store_yaml_feast_cannot_use_is_named(team, tmp_path: Path) -> None:
    import shutil

    repo = tmp_path / "repo"
    shutil.copytree(team.repo, repo)
    (repo / "feature_store.yaml").write_text("project: x\nprovider: local\nonline_store: 3\n")
    with pytest.raises(ScaffoldError, match=r"feature_store\.yaml: Feast cannot use it"):
        _adopt(team, tmp_path / "p", feature_repo=repo)
    (repo / "feature_store.yaml").unlink()
    with pytest.raises(ScaffoldError, match=r"no feature_store\.yaml"):
        _adopt(team, tmp_path / "p", feature_repo=repo)
