"""A run whose best candidate beats the trivial baseline but not the champion is packaged
as a challenger: one fast kfp.local run (one candidate), the pointer left as it was."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier
from sklearn.pipeline import Pipeline
from typer.testing import CliRunner

from crispops.champion import Champion, read_champion, write_champion
from crispops.cli import app
from crispops.config import load_settings
from crispops.orchestration.local import run_training
from crispops.registry import read_models
from support.projects import FAST_CANDIDATES, bentos, fast_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_run_kept_out_by_the_gate_packages_a_challenger(fresh_project: Path) -> None:
    s = load_settings(fresh_project)
    # A constant champion (AUC 0.5) with a promotion margin no candidate can clear:
    # the best candidate beats the baseline, not the gate.
    labels = pd.read_parquet(s.label_source_path)
    weak = fresh_project.parent / "constant.joblib"
    constant = Pipeline([("prep", ColumnTransformer([])), ("model", DummyClassifier())])
    joblib.dump(constant.fit(pd.DataFrame(index=labels.index), labels[s.data.label]), weak)
    champion = Champion(
        model_tag="demo:constant",
        bento_tag="demo:constant",
        model_file=str(weak),
        candidate="constant",
        metric=s.training.selection_metric,
        score=0.5,
    )
    write_champion(s.champion_file, champion)

    settings = fast_settings(fresh_project, candidates=FAST_CANDIDATES[:1], promotion_margin=0.9)
    result = run_training(settings)
    assert result.ok, result.error
    assert result.decision is not None and result.decision["verdict"] == "kept_champion"
    assert "package" in result.completed()
    assert read_champion(s.champion_file) == champion  # the pointer did not move

    [entry] = read_models(s.models_file)
    assert entry.status == "challenger" and entry.verdict == "kept_champion"
    assert entry.run_id == result.run_id and entry.bento_tag in bentos(fresh_project)
    assert "less than the promotion margin" in entry.reason
    # what promotion will write as the pointer: this model's, in the project's store
    assert entry.record["model_tag"] == entry.model_tag
    assert Path(entry.record["model_file"]).is_file() and entry.record["inputs"]

    out = CliRunner().invoke(app, ["models", "-p", str(fresh_project), "--json"])
    assert out.exit_code == 0, out.output
    listed = json.loads(out.stdout)
    assert [(m["model_tag"], m["bento_tag"], m["status"]) for m in listed] == [
        (entry.model_tag, entry.bento_tag, "challenger")
    ]


def test_a_rerun_with_the_same_model_reuses_its_bento(fresh_project: Path) -> None:
    """The same kept-out run twice: the second's model is the challenger's, byte for
    byte (train is served from the step cache), so no second model or Bento is built."""
    from crispops.cli.common import console
    from crispops.cli.pipeline import _print_summary

    s = load_settings(fresh_project)
    labels = pd.read_parquet(s.label_source_path)
    weak = fresh_project.parent / "constant.joblib"
    constant = Pipeline([("prep", ColumnTransformer([])), ("model", DummyClassifier())])
    joblib.dump(constant.fit(pd.DataFrame(index=labels.index), labels[s.data.label]), weak)
    write_champion(
        s.champion_file,
        Champion(
            model_tag="demo:constant",
            bento_tag="demo:constant",
            model_file=str(weak),
            candidate="constant",
            metric=s.training.selection_metric,
            score=0.5,
        ),
    )
    settings = fast_settings(fresh_project, candidates=FAST_CANDIDATES[:1], promotion_margin=0.9)
    first = run_training(settings, cache=True)
    assert first.ok, first.error
    [entry] = read_models(s.models_file)
    assert entry.model_digest.startswith("sha256:")
    built = bentos(fresh_project)

    second = run_training(settings, cache=True)
    assert second.ok, second.error
    assert second.decision is not None and second.decision["verdict"] == "kept_champion"
    assert "package" in second.completed()  # package ran (never cached) ...
    assert read_models(s.models_file) == [entry]  # ... and registered nothing new
    assert bentos(fresh_project) == built
    assert second.output("package") == entry.bento_tag
    assert f"reused Bento {entry.bento_tag}" in second.log.read_text()
    with console.capture() as captured:
        _print_summary(s, second, None)
    assert f"reused Bento {entry.bento_tag}" in captured.get()
    assert f"packaged by run {first.run_id}" in captured.get()
