"""`crispops monitor`: judge a window of the prediction log, and act on the verdict."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from crispops.cli.common import ProjectOpt, console, err, handle_errors, settings


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
    from crispops.monitoring.watch import act as act_on
    from crispops.monitoring.watch import monitor as run_monitor
    from crispops.monitoring.watch import parse_end

    s = settings(project)
    result = run_monitor(s, window=window, end=parse_end(end))
    report = result.report
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2, sort_keys=True) + "\n")
    else:
        _print(report)
        console.print(f"report: {result.html_path}\njson: {result.json_path}")
        console.print(f"gauges: {result.prom_path}")
    if not act:
        return
    from crispops.cli.pipeline import run_pipeline

    out = err if as_json else console

    def train(run_id: str) -> None:
        if not as_json:
            return run_pipeline(s, "subprocess", run_id)
        # --json keeps stdout one JSON document: the run's progress goes to stderr
        with contextlib.redirect_stdout(sys.stderr):
            return run_pipeline(s, "subprocess", run_id)

    outcome = act_on(s, result, train_local=train)
    out.print(("[bold]acted[/]: " if outcome.acted else "") + escape(outcome.message))


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
