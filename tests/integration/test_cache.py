"""The step cache through whole kfp.local runs: reruns come from the cache with the same
results, and a change of setting or of data under an unchanged path reruns what it
touches. (Keys, damaged entries, concurrency: tests/unit/test_step_cache.py.)"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from crispops.champion import read_champion
from crispops.io import read_json
from crispops.orchestration.local import RunResult, run_training
from support.projects import fast_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CACHEABLE = {
    "ingest",
    "validate",
    "explore",
    "split",
    "select-features",
    "train",
    "evaluate",
    "select-champion",
}


def evaluations(result: RunResult) -> dict[str, dict]:
    found = [read_json(p) for p in result.artifacts("evaluate", "evaluation")]
    return {e["candidate"]: e["metrics"] for e in found}


def test_reruns_come_from_the_cache_and_changes_rerun_what_they_touch(
    fresh_project: Path,
) -> None:
    s = fast_settings(fresh_project)
    cold = run_training(s)
    assert cold.ok, cold.error
    assert cold.cached == []
    champion = read_champion(s.champion_file)
    assert champion is not None

    # The first rerun compares with the champion the cold run made: validate and
    # select-champion (which read it) rerun; the second has nothing left to rerun.
    first = run_training(s)
    assert first.ok, first.error
    assert {"ingest", "split", "train"} <= {t for t, _ in first.cached}
    again = run_training(s)
    assert again.ok, again.error
    assert {t for t, _ in again.cached} == CACHEABLE
    # No task process started but package's: the gate kept the champion, and a kept
    # run's best candidate is packaged as a challenger (never cached: it writes the
    # model store and the registry).
    assert again.completed() == ["package"]
    assert all(saved > 0 for _, saved in again.cached)
    assert again.seconds < cold.seconds / 2
    assert again.decision == first.decision
    assert evaluations(again) == evaluations(cold) != {}
    assert read_champion(s.champion_file) == champion

    # One training setting: the steps before training come from the cache.
    changed = run_training(fast_settings(fresh_project, cv_folds=4))
    assert changed.ok, changed.error
    ran = set(changed.completed())
    assert {"train", "evaluate"} <= ran
    assert not ran & {"ingest", "validate", "explore", "split", "select-features"}

    # The source Parquet edited in place (same path): ingest reads the new data.
    source = s.repo_path / "data" / "account_activity.parquet"
    df = pd.read_parquet(source)
    df["avg_balance"] = df["avg_balance"] * 1.5
    df.to_parquet(source)
    edited = run_training(s)
    assert edited.ok, edited.error
    assert "ingest" in edited.completed()
    assert "ingest" not in {t for t, _ in edited.cached}
