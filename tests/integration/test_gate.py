"""The promotion gate on a real kfp.local run: candidates at chance are never promoted.

The label is shuffled, so it is independent of every feature: the best candidate can
do no better than the trivial baseline. Such a run packages nothing, leaves the
champion (if any) as it was, and `crispops run` exits 3.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from crispops.champion import read_champion
from crispops.cli.common import EXIT_FAILED, EXIT_NOT_WORTH_SERVING
from crispops.config import load_settings
from crispops.orchestration.local import run_training
from crispops.steps.features import apply, materialize
from support.corpus import shuffle_label
from support.projects import FAST_CANDIDATES

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLI = [sys.executable, "-m", "crispops.cli"]


def crispops(*args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def fast_candidates_toml(project: Path) -> None:
    """The project's crispops.toml with the fast candidates in place of the demo's."""
    toml = project / "crispops.toml"
    text = toml.read_text()
    head, rest = text.split("[[training.candidates]]", 1)
    tail = rest[rest.index("[serving]") :]
    blocks = []
    for c in FAST_CANDIDATES:
        grid = ", ".join(f"{k} = {json.dumps(v)}" for k, v in dict(c["search"]).items())
        blocks.append(
            f'[[training.candidates]]\nname = "{c["name"]}"\n'
            f'estimator = "{c["estimator"]}"\nsearch = {{ {grid} }}\n'
        )
    toml.write_text(head + "\n".join(blocks) + "\n" + tail)


def bentos(project: Path) -> set[str]:
    root = load_settings(project).bentoml_home / "bentos"
    return {str(p.relative_to(root)) for p in root.glob("*/*")} if root.is_dir() else set()


def test_a_chance_level_run_promotes_nothing_and_exits_3(fresh_project: Path) -> None:
    shuffle_label(fresh_project)
    fast_candidates_toml(fresh_project)
    result = crispops("run", "-p", str(fresh_project))
    out = result.stdout + result.stderr
    assert result.returncode == EXIT_NOT_WORTH_SERVING, out[-3000:]
    assert "Traceback" not in out
    assert "ok select-champion" in out and "ok package" not in out
    # the leaderboard, its marked baseline row, and the reason with the numbers
    assert "leaderboard" in result.stdout and "baseline (prior)" in result.stdout
    reason = " ".join(result.stdout.split())
    assert re.search(r"not promoted: the best candidate, \w+, is .*trivial baseline", reason)
    assert "vs baseline 0.5000" in reason and "baseline margin 0.01" in reason
    assert "no candidate worth serving" in result.stderr
    assert "there is no champion" in result.stderr
    s = load_settings(fresh_project)
    assert read_champion(s.champion_file) is None
    assert bentos(fresh_project) == set()
    decision_files = sorted((s.state_path / "runs").glob("*/*/select-champion/decision"))
    decision = json.loads(decision_files[-1].read_text())
    assert decision["verdict"] == "below_baseline" and decision["promote"] is False
    assert decision["challenger"] in {c["name"] for c in FAST_CANDIDATES}
    base = [r for r in decision["leaderboard"] if r["baseline"]]
    assert [r["candidate"] for r in base] == ["baseline (prior)"] and base[0]["rank"] is None
    leaderboard = sorted((s.state_path / "runs").glob("*/*/select-champion/leaderboard"))
    assert "_baseline (prior)_" in leaderboard[-1].read_text()
    # and there is still no champion to show
    shown = crispops("champion", "-p", str(fresh_project), "--json", timeout=60)
    assert shown.returncode == EXIT_FAILED and "no champion" in shown.stderr


def test_a_chance_level_run_leaves_the_champion_unchanged(
    trained_project: Path, tmp_path: Path
) -> None:
    project = tmp_path / "p"
    shutil.copytree(trained_project, project, ignore=shutil.ignore_patterns("*.db", "runs"))
    apply(project / "feature_repo")
    materialize(project / "feature_repo")
    s = load_settings(project)
    before = read_champion(s.champion_file)
    assert before is not None
    built = bentos(project)
    shuffle_label(project)
    training = {**s.training.model_dump(), "candidates": FAST_CANDIDATES}
    result = run_training(load_settings(project, training=training))
    assert result.ok, result.error
    assert "package" not in result.completed()
    decision = result.decision
    assert decision is not None and decision["verdict"] == "below_baseline"
    assert decision["reason"].startswith("champion unchanged:")
    assert f"{before.model_tag} still serves" in decision["reason"]
    assert read_champion(s.champion_file) == before
    assert bentos(project) == built

    # `crispops champion --json` shows the one that still serves
    shown = crispops("champion", "-p", str(project), "--json", timeout=60)
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert {"model_tag", "bento_tag", "metric", "score"} <= set(data)
    assert data["model_tag"] == before.model_tag and data["bento_tag"] == before.bento_tag
    assert data["metric"] == "roc_auc" and data["score"] == before.score
    assert set(data["training_window"]) == {"start", "end"}
    assert data["baseline_score"] == 0.5
