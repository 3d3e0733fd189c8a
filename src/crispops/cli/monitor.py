"""`crispops monitor`: judge a window of the prediction log, and act on the verdict."""

from __future__ import annotations

import contextlib
import json
import sys
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from crispops.cli.common import (
    EXIT_NOT_WORTH_SERVING,
    ProjectOpt,
    console,
    err,
    handle_errors,
    settings,
)
from crispops.config import Settings


@handle_errors
def monitor(
    project: ProjectOpt = None,
    window: Annotated[
        str | None,
        typer.Option(help="How much of the log to judge, ending now (default: monitoring.window)."),
    ] = None,
    end: Annotated[
        str | None,
        typer.Option(help="End of the window, ISO 8601 UTC (default: now)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    act: Annotated[
        bool,
        typer.Option(
            "--act",
            help="Carry out a retrain decision: a training run here, or one submitted to "
            "cluster.kfp_host; once per (model, window).",
        ),
    ] = False,
) -> None:
    """Drift, prediction drift and realized metrics of the served champion over a window
    of its prediction log, and the retraining policy's decision (the monitoring section
    of crispops.toml).

    Writes the report (JSON and HTML) and Prometheus gauges under the project state.
    Exit codes: 0 done (whatever the decision); with --act, those of `crispops run`
    for the training run it starts (1 failed, 3 no candidate worth serving); 2 bad
    input (no champion, settings, an unreadable ledger).
    """
    from crispops.monitoring.watch import parse_end

    s = settings(project)
    _monitor(s, window, parse_end(end), as_json=as_json, act=act)


def _monitor(
    s: Settings, window: str | None, end: datetime | None, *, as_json: bool, act: bool
) -> dict[str, Any]:
    """Judge the window, print the report, act on it when asked; the report."""
    from crispops.monitoring.watch import act as act_on
    from crispops.monitoring.watch import monitor as run_monitor

    result = run_monitor(s, window=window, end=end)
    report = result.report
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2, sort_keys=True) + "\n")
    else:
        _print(report)
        console.print(f"report: {result.html_path}\njson: {result.json_path}")
        console.print(f"gauges: {result.prom_path}")
    if not act:
        return report
    from crispops.cli.pipeline import run_pipeline

    out = err if as_json else console

    def train(run_id: str) -> None:
        if not as_json:
            return run_pipeline(s, "subprocess", run_id)
        # --json keeps stdout one JSON document: the run's progress goes to stderr
        with contextlib.redirect_stdout(sys.stderr):
            return run_pipeline(s, "subprocess", run_id)

    def submit(run_name: str) -> Any:
        from crispops.orchestration.submit import submit as submit_pipeline

        return submit_pipeline(s, host=host or "", pipeline="training", run_name=run_name)

    host = s.cluster.kfp_host
    outcome = act_on(s, result, train_local=train, submit=submit if host else None)
    out.print(("[bold]acted[/]: " if outcome.acted else "") + escape(outcome.message))
    return report


@handle_errors
def demo_cycle(
    project: ProjectOpt = None,
    requests: Annotated[
        int, typer.Option(min=1, max=20_000, help="Applications the moved world sends.")
    ] = 400,
    seed: Annotated[int, typer.Option(help="Seed of the moved world.")] = 11,
) -> None:
    """The loop closing once, on the bundled demo: serve the champion, send traffic from
    a world that moved, return its labels, monitor, act; a new champion or a kept one.

    Needs a champion (`crispops demo` first). Appends the new applications and their
    outcomes to the demo's label table, as the lender's warehouse would.
    """
    from crispops.orchestration.cycle import run_cycle

    s = settings(project)

    def say(text: str) -> None:
        console.print(f"[bold cyan]{escape(text)}[/]" if text[:1].isdigit() else escape(text))

    def judge(s: Settings) -> dict[str, Any]:
        try:
            return _monitor(s, None, None, as_json=False, act=True)
        except typer.Exit as exc:  # the training run's exit: the gate kept nothing new
            if exc.exit_code not in (0, EXIT_NOT_WORTH_SERVING):
                raise
            return {}

    result = run_cycle(s, requests=requests, seed=seed, monitor=judge, say=say)
    if result.replaced:
        say(f"6. new champion {result.champion_after} (was {result.champion_before})")
    else:
        say(f"6. champion kept: {result.champion_before}")


def _print(report: dict) -> None:
    table = Table(
        title=f"feature drift ({report['window']['length']} to {report['window']['end']})"
    )
    for c in ("feature", "PSI", "distance", "drifted", "rows"):
        table.add_column(c, justify="left" if c == "feature" else "right")
    for name, f in report["features"].items():
        distance = (
            f"W {f['wasserstein']:.3f}"
            if f.get("wasserstein") is not None
            else f"JS {f['js']:.3f}"
            if f.get("js") is not None
            else "-"
        )
        table.add_row(
            escape(name),
            f"{f['psi']:.3f}",
            distance,
            "[red]yes[/]" if f["drifted"] else "no",
            str(f["rows"]),
            style="bold" if f["drifted"] else None,
        )
    console.print(table)
    p = report["predictions"]
    psi = "-" if p.get("psi") is None else f"{p['psi']:.3f}"
    console.print(
        f"predictions: {p['rows']} by {escape(report['model_tag'])} "
        f"({p['other_models']} by other models); score PSI {psi}"
    )
    holdout = report["holdout"]
    realized = ", ".join(
        f"{k} {v:.4f}" + (f" (holdout {holdout[k]:.4f})" if k in holdout else "")
        for k, v in report["realized"].items()
    )
    console.print(f"labels: {report['labels']['joined']}; realized: {realized or '-'}")
    d = report["decision"]
    color, verdict = {
        True: ("red", "retrain"),
        False: ("green", "no retraining"),
        None: ("yellow", "no decision"),
    }[d["retrain"]]
    console.print(f"[bold {color}]decision: {verdict}[/]")
    for r in d["reasons"]:
        console.print(f"  - {escape(r)}", highlight=False)
    if d.get("acted"):
        a = d["acted"]
        console.print(
            f"already acted on this window at {a.get('at')} (run {a.get('run_id')})",
            highlight=False,
        )
