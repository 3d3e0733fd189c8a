"""Each step's settings slice: what it carries, what it rebuilds, what a task imports."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from crispops.config import Settings, load_settings
from crispops.step_settings import (
    STEP_SETTINGS,
    parameter_name,
    pipeline_settings,
    settings_json,
    settings_slice,
    step_settings,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    project = tmp_path_factory.mktemp("p")
    shutil.copy(ROOT / "crispops.toml", project / "crispops.toml")
    return load_settings(project)


def test_a_slice_carries_only_the_listed_fields(settings: Settings) -> None:
    data = settings_slice(settings, "split")
    assert data == {
        "data": {
            "timestamp": settings.data.timestamp,
            "label": settings.data.label,
            "task": settings.data.task,
        },
        "training": {
            "split": settings.training.split,
            "test_fraction": settings.training.test_fraction,
            "seed": settings.training.seed,
        },
    }


@pytest.mark.parametrize("step", list(STEP_SETTINGS))
def test_every_slice_rebuilds_the_same_values(settings: Settings, step: str) -> None:
    part = step_settings(settings_json(settings, step))
    for section, names in STEP_SETTINGS[step].items():
        for name in names:
            want = getattr(settings if not section else getattr(settings, section), name)
            got = getattr(part if not section else getattr(part, section), name)
            if name == "project_dir":
                want = want.resolve()
            assert got == want, f"{step}: {section}.{name}"


def test_derived_paths_resolve_against_the_project(settings: Settings) -> None:
    ingest = step_settings(settings_json(settings, "ingest"))
    assert ingest.label_source_path == settings.label_source_path
    assert ingest.repo_path == settings.repo_path
    champ = step_settings(settings_json(settings, "select-champion"))
    assert champ.champion_file == settings.champion_file
    assert champ.higher_is_better == settings.higher_is_better


def test_reading_an_unlisted_setting_fails_rather_than_seeing_a_default(
    settings: Settings,
) -> None:
    part = step_settings(settings_json(settings, "split"))
    with pytest.raises(AttributeError):
        _ = part.data.min_rows  # has a default: must not be filled in silently
    with pytest.raises(AttributeError):
        _ = part.serving
    with pytest.raises(AttributeError):
        _ = part.training.candidates


def test_a_bad_value_in_a_slice_is_refused(settings: Settings) -> None:
    data = settings_slice(settings, "split")
    data["training"]["test_fraction"] = "a lot"
    with pytest.raises(ValueError, match="float"):
        step_settings(json.dumps(data))


def test_unknown_step_names_the_known_ones(settings: Settings) -> None:
    with pytest.raises(KeyError, match="ingest"):
        settings_slice(settings, "monitor-typo")


def test_pipeline_parameters_are_named_after_the_steps(settings: Settings) -> None:
    args = pipeline_settings(settings)
    assert set(args) == {parameter_name(s) for s in STEP_SETTINGS}
    assert "select_features_settings" in args


def test_serving_settings_reach_no_step(settings: Settings) -> None:
    changed = settings.model_copy(
        update={"serving": settings.serving.model_copy(update={"port": 3999})}
    )
    assert pipeline_settings(changed) == pipeline_settings(settings)


def test_steps_that_do_not_read_feast_do_not_import_it(settings: Settings) -> None:
    """What a task imports before its work (a fresh process, as kfp.local starts it)."""
    code = (
        "import sys, importlib\n"
        "import kfp.dsl.executor_main\n"
        "from kfp.dsl import *\n"
        "import crispops.lifecycle, crispops.step_settings\n"
        "for m in sys.argv[1:]: importlib.import_module(m)\n"
        "print(sorted(m for m in ('feast', 'bentoml', 'matplotlib') if m in sys.modules))\n"
    )
    modules = [
        "crispops.steps.validate",
        "crispops.steps.split",
        "crispops.steps.select_features",
        "crispops.steps.train",
        "crispops.steps.evaluate",
        "crispops.steps.select_champion",
        "joblib",
    ]
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}", "_KFP_RUNTIME": "true"}
    out = subprocess.run(
        [sys.executable, "-c", code, *modules],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=ROOT,
    ).stdout
    assert out.strip() == "[]"
