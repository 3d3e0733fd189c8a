from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from crispops.config import Settings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "crispops.toml", tmp_path / "crispops.toml")
    return tmp_path


def edit(project: Path, old: str, new: str) -> None:
    path = project / "crispops.toml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_demo_settings_load_with_absolute_paths(project: Path) -> None:
    s = load_settings(project)
    assert s.data.task == "binary"
    assert s.label_source_path == project / "feature_repo/data/loan_applications.parquet"
    assert [c.name for c in s.training.candidates] == ["logreg", "forest", "hgb"]
    assert s.higher_is_better is True


def test_env_overrides_nested_keys(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRISPOPS_TRAINING__PROMOTION_MARGIN", "0.02")
    monkeypatch.setenv("CRISPOPS_SERVING__WORKERS", "3")
    s = load_settings(project)
    assert s.training.promotion_margin == 0.02
    assert s.serving.workers == 3


def test_promotion_bar_defaults_and_overrides(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = load_settings(project)
    assert s.training.baseline_margin == 0.01
    assert s.training.min_score is None
    edit(project, "# min_score = 0.7", "min_score = 0.7")
    assert load_settings(project).training.min_score == 0.7
    monkeypatch.setenv("CRISPOPS_TRAINING__MIN_SCORE", "0.65")
    monkeypatch.setenv("CRISPOPS_TRAINING__BASELINE_MARGIN", "0")
    s = load_settings(project)
    assert (s.training.min_score, s.training.baseline_margin) == (0.65, 0.0)
    assert Settings.from_json(s.to_json()) == s


def test_json_round_trip_is_exact(project: Path) -> None:
    s = load_settings(project)
    again = Settings.from_json(s.to_json())
    assert again == s


@pytest.mark.parametrize(
    ("old", "new", "named"),
    [
        ("promotion_margin = 0.005", "promotion_margin = -1", "training.promotion_margin"),
        ("baseline_margin = 0.01", "baseline_margin = -0.1", "training.baseline_margin"),
        ("baseline_margin = 0.01", "baseline_margin = nan", "training.baseline_margin"),
        ("# min_score = 0.7", 'min_score = "high"', "training.min_score"),
        ("# min_score = 0.7", "min_score = inf", "training.min_score"),
        ('selection_metric = "roc_auc"', 'selection_metric = "rmse"', "training.selection_metric"),
        ('task = "binary"', 'task = "ranking"', "data.task"),
        ('estimator = "random_forest"', 'estimator = "ridge"', "training.candidates[1]"),
        ("cv_folds = 3", "cv_folds = 1", "training.cv_folds"),
        ("[serving]", "[serving]\nbogus = 1", "serving.bogus"),
        ('entity = "customer_id"', "", "data.entity"),
        (
            'component_image = "ghcr.io/crispops/crispops-components:0.1.0"',
            'component_image = "ghcr.io/crispops/crispops-components:latest"',
            "cluster.component_image",
        ),
    ],
)
def test_invalid_settings_name_the_key(project: Path, old: str, new: str, named: str) -> None:
    edit(project, old, new)
    with pytest.raises(SettingsError) as info:
        load_settings(project)
    assert named in str(info.value)
    assert "crispops.toml" in str(info.value)


def test_invalid_env_value_names_the_variable(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRISPOPS_SERVING__PORT", "not-a-port")
    with pytest.raises(SettingsError, match="CRISPOPS_SERVING__PORT"):
        load_settings(project)


def test_duplicate_candidate_names_rejected(project: Path) -> None:
    edit(project, 'name = "forest"', 'name = "logreg"')
    with pytest.raises(SettingsError, match="repeated: logreg"):
        load_settings(project)


def test_broken_toml_and_missing_file(project: Path, tmp_path: Path) -> None:
    (project / "crispops.toml").write_text("[data\nentity = ")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(project)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SettingsError, match=r"no crispops\.toml"):
        load_settings(empty)


def test_entity_keys_a_list_a_string_or_an_env_list(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_settings(project).data.join_keys == ["customer_id"]
    edit(project, 'entity = "customer_id"', 'entity = ["zipcode", "dob_ssn"]')
    assert load_settings(project).data.join_keys == ["zipcode", "dob_ssn"]
    monkeypatch.setenv("CRISPOPS_DATA__ENTITY", "a,b")
    assert load_settings(project).data.join_keys == ["a", "b"]
    monkeypatch.setenv("CRISPOPS_DATA__ENTITY", "a,a")
    with pytest.raises(SettingsError, match="entity keys repeat"):
        load_settings(project)


@pytest.mark.parametrize(
    ("added", "named"),
    [
        ('[data.request_features]\nage = "integer"\n', "data.request_features.age"),
        ('[data.request_features]\ncustomer_id = "int"\n', "not request-time features"),
        ('[validation.rules]\nnot_constnt = "warn"\n', "validation.rules.not_constnt"),
        ('[validation.rules]\nrows = "warn"\n', "rows cannot be relaxed"),
        ('[validation.rules]\nnot_constant = "loud"\n', "validation.rules.not_constant"),
        ("[validation.rules]\nnot_constant = { threshold = 3 }\n", "takes no threshold"),
        ("[validation.columns.age]\nnull_rate = { threshold = -1 }\n", "validation.columns"),
    ],
)
def test_bad_data_and_validation_settings_fail_at_load(
    project: Path, added: str, named: str
) -> None:
    path = project / "crispops.toml"
    path.write_text(path.read_text() + "\n" + added)
    with pytest.raises(SettingsError) as info:
        load_settings(project)
    assert named in str(info.value)


def test_rule_settings_per_rule_and_per_column(project: Path) -> None:
    path = project / "crispops.toml"
    path.write_text(
        path.read_text()
        + '\n[validation.rules]\nnot_constant = "error"\ndrift_psi = { threshold = 0.4 }\n'
        + '[validation.columns.age]\ndrift_psi = "off"\n'
    )
    policy = load_settings(project).validation.policy()
    assert policy.severity("not_constant") == "error"
    assert policy.severity("null_rate") == "warn"  # the default
    assert policy.threshold("drift_psi", "income") == 0.4
    assert policy.severity("drift_psi", "age") == "off"
    assert policy.severity("drift_psi", "income") == "error"


def test_max_onehot_categories_default_override_and_bound(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_settings(project).training.max_onehot_categories == 30
    monkeypatch.setenv("CRISPOPS_TRAINING__MAX_ONEHOT_CATEGORIES", "100")
    assert load_settings(project).training.max_onehot_categories == 100
    monkeypatch.delenv("CRISPOPS_TRAINING__MAX_ONEHOT_CATEGORIES")
    edit(project, "max_onehot_categories = 30", "max_onehot_categories = 1")
    with pytest.raises(SettingsError, match=r"training\.max_onehot_categories"):
        load_settings(project)
