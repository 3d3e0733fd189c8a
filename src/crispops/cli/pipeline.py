"""`crispops compile|run|champion|models|submit`: the pipelines, locally or on a Kubeflow
cluster, and the champion they produce."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from crispops.cli.common import (
    EXIT_FAILED,
    EXIT_NOT_WORTH_SERVING,
    ProjectOpt,
    UserError,
    console,
    err,
    handle_errors,
    settings,
)
from crispops.config import Settings
from crispops.steps import Step
from crispops.steps.select_champion import NOT_WORTH_SERVING

if TYPE_CHECKING:
    from crispops.champion import Champion
    from crispops.orchestration.local import RunResult


@handle_errors
def compile_(
    out: Annotated[Path, typer.Option(help="Directory for the IR YAML files.")] = Path(
        "build/pipelines"
    ),
    project: ProjectOpt = None,
) -> None:
    """Write each pipeline's IR YAML (for a Kubeflow Pipelines cluster)."""
    from crispops.orchestration.compile import compile_all

    s = settings(project)
    for name, path in compile_all(s, out).items():
        console.print(f"{name}: {path}")


@handle_errors
def run(
    project: ProjectOpt = None,
    runner: Annotated[str, typer.Option(help="subprocess (default) or docker.")] = "subprocess",
    run_id: Annotated[str | None, typer.Option(help="Run id (default: a timestamp).")] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Run every step, even unchanged ones.")
    ] = False,
    pipeline: Annotated[
        str,
        typer.Option(
            help="training (default) or materialization: each view's window in chunks of "
            "feature_store.materialize_chunk, read in parallel, written oldest first."
        ),
    ] = "training",
) -> None:
    """Run the training pipeline (or --pipeline materialization) on this machine through
    KFP's local runner.

    Unchanged steps come from the step cache (see `crispops cache`) unless --no-cache.

    Exit codes:
    0 the run completed: a new champion, or the current one kept (at least as good);
    1 the pipeline failed (bad data stops it at validate), or an internal error;
    2 bad input (arguments, settings);
    3 the run completed but no candidate was worth serving: the best did not beat the
    trivial baseline by training.baseline_margin, or missed training.min_score.
    Nothing was packaged; the previous champion, if any, still serves.
    """
    if runner not in {"subprocess", "docker"}:
        raise UserError(f"--runner {runner!r}: choose subprocess or docker")
    if pipeline == "materialization":
        run_materialization_pipeline(settings(project), runner, run_id)
        return
    if pipeline != "training":
        raise UserError(f"--pipeline {pipeline!r}: choose training or materialization")
    run_pipeline(settings(project), runner, run_id, cache=False if no_cache else None)


def _live_events() -> Callable[[str, str, str], None]:
    # KFP's output is captured into the run log while the pipeline runs; progress goes
    # to the terminal through a console bound to the real stdout, never into that capture.
    live = Console(file=sys.stdout)

    def on_event(kind: str, task: str, status: str) -> None:
        if kind == "start":
            live.print(f"  [cyan]>[/] {task}", highlight=False)
        elif kind == "cached":
            live.print(f"  [green]cached[/] {task} ({status} s saved)", highlight=False)
        else:
            mark = "[green]ok[/]" if status == "SUCCESS" else f"[red]{status}[/]"
            live.print(f"  {mark} {task}", highlight=False)

    return on_event


def run_materialization_pipeline(s: Settings, runner: str, run_id: str | None) -> None:
    """Run the materialization pipeline; print what each view got, or which chunk failed
    and that a rerun redoes only the chunks that did not finish."""
    from crispops.orchestration.local import run_materialization
    from crispops.steps.chunks import RECORDS

    chunk = s.feature_store.materialize_chunk or "one chunk per view"
    console.print(
        f"[bold]materialization pipeline[/] ({runner} runner, chunks: {chunk}), "
        f"project {s.project_dir}"
    )
    result = run_materialization(s, on_event=_live_events(), runner=runner, run_id=run_id)
    console.print(f"log: {result.log}")
    if not result.ok:
        err.print(
            f"[bold red]the pipeline failed at {result.failed_step or '?'}[/]: "
            f"{_last_error(result)}\nnothing of an unfinished view was written online; the "
            f"chunks that were read are kept in {s.state_path / RECORDS}: run it again to "
            "read only the chunks that did not finish",
            highlight=False,
        )
        raise typer.Exit(EXIT_FAILED)
    summary = result.output("write-chunks")
    views = (summary or {}).get("views", {})
    if not views:
        console.print("nothing to materialize: every view is up to date")
    for name, v in views.items():
        console.print(
            f"  {name}: {v['start']} -> {v['end']}, chunks: {v['chunks']} "
            f"({v.get('reused', 0)} reused from an earlier run), rows: {v['rows']:,}",
            highlight=False,
        )


def run_pipeline(
    s: Settings, runner: str, run_id: str | None, *, cache: bool | None = None
) -> None:
    """Run the training pipeline with live progress; print its summary, or why it failed."""
    from crispops.champion import read_champion
    from crispops.orchestration.local import run_training

    on_event = _live_events()
    console.print(f"[bold]training pipeline[/] ({runner} runner), project {s.project_dir}")
    result = run_training(s, on_event=on_event, runner=runner, run_id=run_id, cache=cache)
    console.print(f"log: {result.log}")
    if not result.ok:
        step = result.failed_step or "?"
        report = result.artifact(Step.VALIDATE, "report")
        if step == Step.VALIDATE and report and report.is_file():
            console.print(report.read_text())
            err.print(
                f"[bold red]stopped at validate[/]: bad data, nothing trained or packaged. "
                f"Report: {report}"
            )
        else:
            err.print(f"[bold red]the pipeline failed at {step}[/]: {_last_error(result)}")
        raise typer.Exit(EXIT_FAILED)
    champion = read_champion(s.champion_file)
    _print_summary(s, result, champion)
    decision = result.decision or {}
    if decision.get("verdict") in NOT_WORTH_SERVING:
        serving = (
            f"the champion {champion.model_tag} still serves"
            if champion
            else "there is no champion"
        )
        err.print(
            f"[bold red]no candidate worth serving[/]: nothing packaged, {serving} "
            f"(exit {EXIT_NOT_WORTH_SERVING})",
            highlight=False,
        )
        raise typer.Exit(EXIT_NOT_WORTH_SERVING)


@handle_errors
def champion(
    project: ProjectOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the champion pointer as one JSON object.")
    ] = False,
) -> None:
    """Show the serving champion: its tags, metric and score, and data window.

    Model and Bento tags, metric, score and the baseline's, candidate, training data
    window, when and by which run it was promoted. Exit 1 when there is none yet,
    2 when the champion pointer cannot be read.
    """
    import json

    from crispops.champion import read_champion

    s = settings(project)
    current = read_champion(s.champion_file)  # a bad file: ChampionError, exit 2
    if current is None:
        err.print(
            f"[bold red]no champion[/] in {s.project_dir}: no run has promoted one yet "
            "(`crispops run`; a run with no candidate worth serving promotes nothing)",
            highlight=False,
        )
        raise typer.Exit(EXIT_FAILED)
    if as_json:
        sys.stdout.write(json.dumps(current.to_dict(), indent=2, sort_keys=True) + "\n")
        return
    table = Table(title="champion", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    window = current.training_window
    rows = [
        ("model tag", current.model_tag),
        ("Bento tag", current.bento_tag),
        ("metric", current.metric),
        ("score", f"{current.score:.4f} (holdout)"),
        (
            "baseline",
            "-" if current.baseline_score is None else f"{current.baseline_score:.4f}",
        ),
        ("candidate", current.candidate),
        (
            "data window",
            f"{window['start']} to {window['end']}" if {"start", "end"} <= set(window) else "-",
        ),
        ("promoted at", current.promoted_at or "-"),
        ("run id", current.run_id or "-"),
    ]
    others = {k: v for k, v in current.metrics.items() if k != current.metric}
    if others:
        rows.append(("other metrics", ", ".join(f"{k} {v:.4f}" for k, v in others.items())))
    for name, value in rows:
        table.add_row(name, escape(str(value)))
    console.print(table)


@handle_errors
def models(
    project: ProjectOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the registry as one JSON list of objects.")
    ] = False,
) -> None:
    """List the project's packaged models: champion, challengers, retired and rejected.

    Each with its model and Bento tags, status, metric and score, the run that
    packaged it and when, and why it has its status. Exit 2 when the registry
    cannot be read.
    """
    import json

    from crispops.registry import read_models

    s = settings(project)
    entries = read_models(s.models_file)
    if as_json:
        sys.stdout.write(json.dumps([e.to_dict() for e in entries], indent=2) + "\n")
        return
    if not entries:
        console.print(f"no packaged models in {s.project_dir} yet (`crispops run`)")
        return
    table = Table(title=f"models ({s.models_file})")
    for col in ("status", "model tag", "Bento tag", "metric", "score", "run", "when", "why"):
        table.add_column(col, justify="right" if col == "score" else "left")
    styles = {"champion": "bold green", "challenger": "yellow", "rejected": "red"}
    for e in reversed(entries):
        table.add_row(
            e.status,
            e.model_tag,
            e.bento_tag,
            e.metric,
            f"{e.score:.4f}",
            e.run_id or "-",
            e.updated_at or e.created_at or "-",
            escape(e.reason or e.verdict or "-"),
            style=styles.get(e.status),
        )
    console.print(table)


def _last_error(result: RunResult) -> str:
    text = result.log.read_text(encoding="utf-8", errors="replace")
    lines = [ln.strip() for ln in text.splitlines() if "Error" in ln or "error" in ln]
    return lines[-1] if lines else (result.error.splitlines()[-1] if result.error else "")


def _print_findings(result: RunResult) -> None:
    """What the data looked like: rows per view at ingest, warnings, features left out."""
    findings = result.findings or {}
    ingest = findings.get("ingest") or {}
    if ingest.get("coverage"):
        parts = [
            f"{c['view']} {int(c['rows_without_values']):,} ({c['share']:.0%})"
            for c in ingest["coverage"]
        ]
        console.print(
            f"rows: {int(ingest['label_rows']):,} label rows, {int(ingest['returned']):,} "
            f"returned; without any value from a view: {', '.join(parts)}",
            highlight=False,
        )
    for p in findings.get("problems", []):
        if p.get("severity") == "warn":
            console.print(
                f"[yellow]warning[/] {p['column']}: {p['rule']} ({p['detail']})", highlight=False
            )
    if findings.get("dropped"):
        console.print(
            f"[yellow]left out of training[/]: {', '.join(findings['dropped'])}", highlight=False
        )


def _print_summary(s: Settings, result: RunResult, champion: Champion | None) -> None:
    _print_findings(result)
    decision = result.decision or {}
    board = decision.get("leaderboard", [])
    metric = s.training.selection_metric
    if board:
        from crispops.config import TASK_METRICS

        table = Table(title=f"leaderboard (holdout, by {metric})")
        cols = ["rank", "candidate", *TASK_METRICS[s.data.task]]
        for c in cols:
            table.add_column(c, justify="left" if c == "candidate" else "right")
        for row in board:
            cells = [row.get(c) for c in cols]
            text = [f"{v:.4f}" if isinstance(v, float) else str(v) for v in cells]
            if row.get("baseline"):  # the bar, not a candidate: marked and unranked
                table.add_row("–", *text[1:], style="dim italic")
            else:
                table.add_row(*text)
        console.print(table)
        if any(row.get("baseline") for row in board):
            console.print(
                f"[dim]the baseline predicts the training split's "
                f"{'mean' if s.data.task == 'regression' else 'class prior'}: a candidate "
                f"must beat it by {s.training.baseline_margin:g} to be promoted[/]"
            )
    steps = Table(title=f"steps ({result.seconds:.1f} s in all)")
    steps.add_column("step")
    steps.add_column("tasks", justify="right")
    steps.add_column("seconds", justify="right")
    done = result.completed()
    for name, took in sorted(
        result.task_seconds().items(), key=lambda kv: min(result.starts.get(kv[0], [0.0]))
    ):
        steps.add_row(name, str(done.count(name)), f"{took:.1f}")
    saved: dict[str, list[float]] = {}
    for name, seconds in result.cached:
        saved.setdefault(name, []).append(seconds)
    for name, seconds_saved in saved.items():
        steps.add_row(name, str(len(seconds_saved)), f"cached ({sum(seconds_saved):.1f} s saved)")
    console.print(steps)
    reason = escape(decision.get("reason", ""))
    if decision.get("promote"):
        console.print(f"[bold green]{reason}[/]")
    elif decision.get("verdict") in NOT_WORTH_SERVING:
        console.print(f"[bold red]{reason}[/]")
    else:
        console.print(f"[bold yellow]{reason}[/]")
    if champion:
        console.print(
            f"champion: model [bold]{champion.model_tag}[/], Bento "
            f"[bold]{champion.bento_tag}[/] ({champion.metric} {champion.score:.4f})"
        )
    if Step.PACKAGE in result.completed():
        from crispops.registry import read_models

        models = read_models(s.models_file)
        ran = [e for e in models if e.run_id == result.run_id]
        bento = result.output(Step.PACKAGE)
        reused = [e for e in models if e.bento_tag == bento and e.run_id != result.run_id]
        for e in reused:  # the model is the one already packaged: no second Bento
            console.print(
                f"package: [bold]reused[/] Bento [bold]{e.bento_tag}[/], the same model as "
                f"the {e.status} packaged by run {e.run_id}; nothing built",
                highlight=False,
            )
        if not reused and bento and champion and champion.bento_tag == bento and not ran:
            console.print(
                f"package: [bold]reused[/] Bento [bold]{bento}[/], the same model as the "
                "champion; nothing built",
                highlight=False,
            )
        for e in [] if decision.get("promote") else ran:
            console.print(
                f"challenger: model [bold]{e.model_tag}[/], Bento [bold]{e.bento_tag}[/] "
                f"packaged, not promoted ({e.metric} {e.score:.4f}); shadow or canary it "
                "with `crispops deploy --challenger`, list models with `crispops models`"
            )
    for label, task, name in (
        ("EDA report", Step.EXPLORE, "report"),
        ("EDA summary", Step.EXPLORE, "summary"),
        ("validation", Step.VALIDATE, "report"),
        ("leaderboard", Step.SELECT_CHAMPION, "leaderboard"),
    ):
        path = result.artifact(task, name)
        if path:
            console.print(f"{label}: {path}")


@handle_errors
def submit(
    host: Annotated[
        str | None, typer.Option(help="Kubeflow Pipelines API URL (default: cluster.kfp_host).")
    ] = None,
    experiment: Annotated[str, typer.Option(help="Experiment name.")] = "crispops",
    schedule: Annotated[
        str | None,
        typer.Option(
            help="Cron expression: make a recurring run instead of one run (replacing the "
            "one of the same pipeline and schedule)."
        ),
    ] = None,
    pipeline: Annotated[
        str, typer.Option(help="training, materialization or monitoring.")
    ] = "training",
    namespace: Annotated[
        str | None, typer.Option(help="Kubeflow profile (multi-user KFP).")
    ] = None,
    project: ProjectOpt = None,
) -> None:
    """Compile a pipeline and submit it to a Kubeflow Pipelines cluster (token from the
    environment variable named by cluster.kfp_token_env)."""
    from crispops.orchestration.compile import PIPELINES
    from crispops.orchestration.submit import submit as submit_pipeline

    s = settings(project)
    url = host or s.cluster.kfp_host
    if not url:
        raise UserError("no KFP host: pass --host URL or set cluster.kfp_host")
    if pipeline not in PIPELINES:
        raise UserError(f"--pipeline {pipeline!r}: choose one of {', '.join(PIPELINES)}")
    with console.status(f"submitting {pipeline} to {url}"):
        result = submit_pipeline(
            s,
            host=url,
            pipeline=pipeline,
            experiment=experiment,
            schedule=schedule,
            namespace=namespace,
        )
    for key, value in result.as_dict().items():
        if isinstance(value, tuple):
            value = ", ".join(value)
        if value not in (None, ""):
            console.print(f"{key}: {value}", highlight=False)
