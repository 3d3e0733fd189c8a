"""Bad data never reaches a served model: for each variant of the corpus the pipeline
stops before training, names the column and the rule, builds no Bento and leaves the
champion as it was."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from crispops.champion import read_champion
from crispops.config import load_settings
from crispops.orchestration.local import run_training
from crispops.steps.features import apply
from support.corpus import VARIANTS, Variant
from support.projects import bentos, fast_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.parametrize("variant", VARIANTS, ids=[v.name for v in VARIANTS])
def test_bad_data_stops_the_run(variant: Variant, trained_project: Path, tmp_path: Path) -> None:
    project = tmp_path / "p"
    shutil.copytree(trained_project, project, ignore=shutil.ignore_patterns("*.db", "runs"))
    s = load_settings(project)
    before = read_champion(s.champion_file)
    assert before is not None
    built = bentos(project)
    variant.apply(project)
    apply(project / "feature_repo")
    result = run_training(fast_settings(project))

    assert not result.ok, f"{variant.name}: the run went through"
    assert result.failed_step == variant.stops_at, (result.failed_step, result.error[-500:])
    done = result.completed()
    assert "train" not in done and "package" not in done
    if variant.stops_at == "validate":
        report = result.artifact("validate", "report")
        assert report is not None
        text = report.read_text()
        row = [
            ln
            for ln in text.splitlines()
            if ln.startswith(f"| {variant.column} |") and variant.rule in ln
        ]
        assert row, f"{variant.name}: no row naming {variant.column} / {variant.rule}:\n{text}"
    else:
        log = result.log.read_text()
        assert variant.column in log and variant.rule in log
    assert read_champion(s.champion_file) == before
    assert bentos(project) == built
