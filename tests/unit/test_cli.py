"""The CLI's exit codes and output for the gate and the champion, with typer's CliRunner:
`crispops run` with a faked pipeline result, `crispops champion` on pointer files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from crispops.champion import Champion, write_champion
from crispops.cli import app
from crispops.cli.common import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_NOT_WORTH_SERVING, EXIT_OK
from crispops.config import load_settings
from crispops.io import write_json
from crispops.orchestration.local import RunResult

ROOT = Path(__file__).resolve().parents[2]
#: Wide enough that rich does not wrap messages; no tracebacks re-raised.
ENV = {"COLUMNS": "300", "CRISPOPS_DEBUG": ""}

CHAMPION = Champion(
    model_tag="credit_default_v1:abc",
    bento_tag="credit_default_v1:def",
    model_file="/nowhere/saved_model.pkl",
    candidate="trees",
    metric="roc_auc",
    score=0.8123,
    metrics={"roc_auc": 0.8123, "pr_auc": 0.41},
    promoted_at="2025-06-01T12:00:00+00:00",
    run_id="run-1",
    training_window={"start": "2025-01-01 00:00:00+00:00", "end": "2025-05-31 00:00:00+00:00"},
    baseline_score=0.5,
)


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "crispops.toml", tmp_path / "crispops.toml")
    return tmp_path


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), env=ENV)


def test_exit_codes_are_distinct() -> None:
    codes = [EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_NOT_WORTH_SERVING]
    assert codes == [0, 1, 2, 3]


# -- crispops champion ----------------------------------------------------------------------
def test_champion_json_has_the_keys(project: Path) -> None:
    write_champion(load_settings(project).champion_file, CHAMPION)
    result = invoke("champion", "-p", str(project), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {"model_tag", "bento_tag", "metric", "score"} <= set(data)
    assert data["model_tag"] == "credit_default_v1:abc" and data["score"] == 0.8123
    assert data["training_window"]["end"].startswith("2025-05-31")
    assert data["candidate"] == "trees" and data["promoted_at"].startswith("2025-06-01")


def test_champion_table(project: Path) -> None:
    write_champion(load_settings(project).champion_file, CHAMPION)
    result = invoke("champion", "-p", str(project))
    assert result.exit_code == 0, result.output
    for text in (
        "credit_default_v1:abc",
        "credit_default_v1:def",
        "roc_auc",
        "0.8123",
        "trees",
        "2025-01-01 00:00:00+00:00 to 2025-05-31",
        "2025-06-01T12:00:00+00:00",
        "baseline",
        "0.5000",
    ):
        assert text in result.stdout


def test_an_old_pointer_without_the_new_fields_still_reads(project: Path) -> None:
    old = {k: v for k, v in CHAMPION.to_dict().items() if k not in {"training_window"}}
    del old["baseline_score"]
    write_json(load_settings(project).champion_file, old)
    result = invoke("champion", "-p", str(project))
    assert result.exit_code == 0, result.output
    assert "credit_default_v1:abc" in result.stdout


@pytest.mark.parametrize("as_json", [False, True])
def test_no_champion_exits_1_with_a_message(project: Path, as_json: bool) -> None:
    result = invoke("champion", "-p", str(project), *(["--json"] if as_json else []))
    assert result.exit_code == EXIT_FAILED
    assert "no champion" in result.stderr and "crispops run" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    "text", ["{not json", "[1, 2]", '{"model_tag": "x"}', '{"model_tag": "x", "bogus": 1}']
)
def test_an_unreadable_champion_file_is_a_clear_error(project: Path, text: str) -> None:
    path = load_settings(project).champion_file
    path.parent.mkdir(parents=True)
    path.write_text(text)
    result = invoke("champion", "-p", str(project))
    assert result.exit_code == EXIT_BAD_INPUT
    assert "unreadable champion pointer" in result.stderr and str(path) in result.stderr
    assert "Traceback" not in result.output


# -- crispops run: the exit code says whether anything was worth serving ---------------------
def fake_run(monkeypatch: pytest.MonkeyPatch, project: Path, decision: dict[str, Any]) -> None:
    def run_training(settings: Any, **_: Any) -> RunResult:
        root = settings.state_path / "runs" / "fake"
        (root / "training" / "select-champion").mkdir(parents=True)
        write_json(root / "training" / "select-champion" / "decision", decision)
        (root / "pipeline.log").write_text("")
        return RunResult("fake", root, root / "pipeline.log", ok=True, seconds=1.0)

    monkeypatch.setattr("crispops.orchestration.local.run_training", run_training)


BOARD = [
    {"rank": 1, "candidate": "trees", "baseline": False, "roc_auc": 0.503, "pr_auc": 0.2},
    {"rank": None, "candidate": "baseline (prior)", "baseline": True, "roc_auc": 0.5},
]


def test_run_with_nothing_worth_serving_exits_3(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reason = "not promoted: the best candidate, trees, is better than ... baseline 0.5000"
    decision = {"promote": False, "verdict": "below_baseline", "reason": reason}
    fake_run(monkeypatch, project, {**decision, "leaderboard": BOARD})
    result = invoke("run", "-p", str(project))
    assert result.exit_code == EXIT_NOT_WORTH_SERVING, result.output
    assert "leaderboard" in result.stdout and "baseline (prior)" in result.stdout
    assert reason in result.stdout
    assert "no candidate worth serving" in result.stderr and "there is no champion" in result.stderr


def test_run_below_the_floor_names_the_champion_that_stays(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_champion(load_settings(project).champion_file, CHAMPION)
    decision = {"promote": False, "verdict": "below_floor", "reason": "champion unchanged: ..."}
    fake_run(monkeypatch, project, {**decision, "leaderboard": BOARD})
    result = invoke("run", "-p", str(project))
    assert result.exit_code == EXIT_NOT_WORTH_SERVING
    assert "credit_default_v1:abc still serves" in result.stderr


@pytest.mark.parametrize("verdict", ["kept_champion", "promoted"])
def test_run_that_keeps_or_promotes_exits_0(
    project: Path, monkeypatch: pytest.MonkeyPatch, verdict: str
) -> None:
    write_champion(load_settings(project).champion_file, CHAMPION)
    decision = {"promote": verdict == "promoted", "verdict": verdict, "reason": "..."}
    fake_run(monkeypatch, project, {**decision, "leaderboard": BOARD})
    result = invoke("run", "-p", str(project))
    assert result.exit_code == EXIT_OK, result.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--engine", "polars"], "--engine 'polars': choose duckdb or spark"),
        (["--spark-master", "local[4]"], "--spark-master goes with --engine spark"),
        (["--engine", "spark", "--spark-master", "locale[2]"], "--spark-master"),
    ],
)
def test_init_engine_choices_are_checked(tmp_path: Path, extra: list[str], message: str) -> None:
    data = tmp_path / "d.csv"
    data.write_text(
        "k,ts,y,x\n" + "".join(f"{i},2025-01-0{i % 9 + 1},{i % 2},{i}\n" for i in range(20))
    )
    args = ["init", str(tmp_path / "p"), "--data", str(data), "--entity", "k"]
    result = invoke(*args, "--timestamp", "ts", "--label", "y", "--task", "binary", *extra)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize(("flag", "sent"), [([], None), (["--no-cache"], False)])
def test_run_passes_no_cache_and_marks_cached_steps(
    project: Path, monkeypatch: pytest.MonkeyPatch, flag: list[str], sent: bool | None
) -> None:
    seen: dict[str, Any] = {}

    def run_training(settings: Any, **kwargs: Any) -> RunResult:
        seen.update(kwargs)
        root = settings.state_path / "runs" / "fake"
        (root / "training" / "select-champion").mkdir(parents=True)
        decision = {"promote": True, "verdict": "promoted", "reason": "...", "leaderboard": BOARD}
        write_json(root / "training" / "select-champion" / "decision", decision)
        (root / "pipeline.log").write_text("")
        result = RunResult("fake", root, root / "pipeline.log", ok=True, seconds=1.0)
        result.cached = [("ingest", 7.0), ("train", 3.0), ("train", 2.5)]
        return result

    monkeypatch.setattr("crispops.orchestration.local.run_training", run_training)
    result = invoke("run", "-p", str(project), *flag)
    assert result.exit_code == EXIT_OK, result.output
    assert seen["cache"] is sent
    assert "cached (7.0 s saved)" in result.stdout
    assert "cached (5.5 s saved)" in result.stdout


def _materialization_result(settings: Any, ok: bool) -> RunResult:
    root = settings.state_path / "runs" / "fake"
    (root / "m" / "write-chunks").mkdir(parents=True)
    (root / "pipeline.log").write_text("RuntimeError: injected failure\n")
    if ok:
        views = {"v_fv": {"start": "a", "end": "b", "chunks": 3, "reused": 2, "rows": 1234}}
        output = {"parameterValues": {"Output": json.dumps({"views": views})}}
        write_json(root / "m" / "write-chunks" / "executor_output.json", output)
    result = RunResult("fake", root, root / "pipeline.log", ok=ok, seconds=1.0)
    result.failed_step = None if ok else "read-chunk"
    return result


@pytest.mark.parametrize("ok", [True, False])
def test_run_materialization_reports_chunks_or_how_a_rerun_resumes(
    project: Path, monkeypatch: pytest.MonkeyPatch, ok: bool
) -> None:
    monkeypatch.setattr(
        "crispops.orchestration.local.run_materialization",
        lambda settings, **_: _materialization_result(settings, ok),
    )
    result = invoke("run", "--pipeline", "materialization", "-p", str(project))
    if ok:
        assert result.exit_code == EXIT_OK, result.output
        line = "v_fv: a -> b, chunks: 3 (2 reused from an earlier run), rows: 1,234"
        assert line in result.output
    else:
        assert result.exit_code == EXIT_FAILED, result.output
        assert "failed at read-chunk" in result.output
        assert "read only the chunks that did not finish" in result.output


def test_run_names_an_unknown_pipeline(project: Path) -> None:
    result = invoke("run", "--pipeline", "monitoring", "-p", str(project))
    assert result.exit_code == EXIT_BAD_INPUT
    assert "--pipeline 'monitoring'" in result.output
