"""`crispops rollout analyze|status|resume|abort`: a challenger's live rollout.

`crispops deploy --challenger TAG --strategy shadow|canary` starts one; these
commands judge it from the prediction log and drive what the cluster records.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from crispops.cli.common import (
    EXIT_FAILED,
    ProjectOpt,
    UserError,
    console,
    err,
    find_overlay,
    handle_errors,
    settings,
)
from crispops.config import Settings

if TYPE_CHECKING:
    from crispops.cluster.progressive import Outcome, Rollout, RolloutState
    from crispops.monitoring.analysis import Verdict

app = typer.Typer(help="A challenger's shadow or canary rollout: analyse, status, resume, abort.")

KubeconfigOpt = Annotated[
    Path | None, typer.Option(help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config).")
]
ContextOpt = Annotated[str | None, typer.Option(help="kubeconfig context.")]
OverlayOpt = Annotated[str, typer.Option(help="Overlay under manifests/overlays (dev, prod).")]
#: Exit code of `rollout analyze` when there is too little traffic to judge yet.
EXIT_WAIT = 4


def model_tag(s: Settings, bento_or_model_tag: str) -> str:
    """The model tag the prediction log carries, for a Bento (or model) tag."""
    from crispops.champion import read_champion
    from crispops.registry import find

    champ = read_champion(s.champion_file)
    if champ is not None and bento_or_model_tag in (champ.bento_tag, champ.model_tag):
        return champ.model_tag
    return find(s.models_file, bento_or_model_tag).model_tag


def log_analysis(s: Settings, window: str | None = None) -> Any:
    """The cluster loop's analysis: the project's prediction log over rollout.window (and
    Prometheus, when configured). Prometheus failing to answer is a "wait", not an error:
    the loop asks again, and a rollout is never stepped nor rolled back on no evidence."""
    from crispops.monitoring.analysis import Verdict, analyze, window_from_log
    from crispops.monitoring.prometheus import PrometheusError

    def run(state: RolloutState) -> Verdict:
        try:
            w = window_from_log(
                s,
                model_tag(s, state.champion),
                model_tag(s, state.challenger),
                "shadow" if state.strategy == "shadow" else "canary",
                window,
            )
        except PrometheusError as exc:
            return Verdict("wait", [f"{exc}; asking again"])
        return analyze(w, s.rollout)

    return run


def controller(
    s: Settings,
    overlay: Path,
    registry: str | None,
    api: Any,
    wait: float = 0.0,
    analysis: Any = None,
) -> Rollout:
    """A Rollout whose promotion and rejection move the pointer and the registry."""
    from crispops.cluster.progressive import Rollout
    from crispops.config import duration_seconds
    from crispops.lifecycle import promote_task, reject_task

    def promote(state: RolloutState, verdict: Verdict | None) -> None:
        why = f"{state.strategy} rollout passed: " + (verdict.summary() if verdict else "")
        promote_task(s, state.challenger, why)

    def reject(state: RolloutState, verdict: Verdict | None) -> None:
        reject_task(s, state.challenger, verdict.summary() if verdict else state.reason)

    def step(state: RolloutState, verdict: Verdict | None) -> None:
        console.print(
            f"  [cyan]>[/] {state.strategy} {state.challenger}: weight {state.weight}% "
            f"(step {state.step + 1} of {len(state.steps)})",
            highlight=False,
        )

    return Rollout(
        overlay,
        registry or s.cluster.registry,
        api,
        analyze=analysis or log_analysis(s),
        on_promote=promote,
        on_reject=reject,
        on_step=step,
        step_interval_s=duration_seconds(s.rollout.step_interval),
        wait_s=wait,
    )


def report(outcome: Outcome) -> None:
    st = outcome.state
    for v in outcome.verdicts:
        console.print(f"  analysis: {escape(v.summary())}", highlight=False)
    if st.phase == "promoted":
        console.print(f"[bold green]promoted[/] {st.challenger}: the champion now", highlight=False)
    elif st.phase in ("rolled-back", "aborted"):
        err.print(
            f"[bold red]{st.phase}[/]: weight 0, {st.champion} restored, {st.challenger} "
            f"{'rejected' if st.phase == 'rolled-back' else 'left a challenger'}: "
            f"{escape(st.reason)}",
            highlight=False,
        )
        raise typer.Exit(EXIT_FAILED)
    else:
        console.print(
            f"[yellow]{st.phase}[/] at weight {st.weight}% (step {st.step + 1} of "
            f"{len(st.steps)}): {escape(st.reason)}; `crispops rollout resume` continues",
            highlight=False,
        )


@app.command("analyze")
@handle_errors
def analyze_cmd(
    project: ProjectOpt = None,
    challenger: Annotated[
        str | None, typer.Option(help="Challenger's Bento or model tag (default: the newest).")
    ] = None,
    champion: Annotated[
        str | None, typer.Option(help="Champion's Bento or model tag (default: the pointer's).")
    ] = None,
    mode: Annotated[str, typer.Option(help="shadow or canary.")] = "canary",
    window: Annotated[
        str | None, typer.Option(help="Log window to judge, e.g. 30m (default rollout.window).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdict as JSON.")] = False,
) -> None:
    """Compare the challenger's arm with the champion's over the prediction log.

    Exit 0 pass, 1 fail, 4 wait (too few requests to judge).
    """
    import re

    from crispops.champion import read_champion
    from crispops.config import _DURATION
    from crispops.monitoring.analysis import analyze, window_from_log
    from crispops.registry import read_models

    s = settings(project)
    if mode not in ("shadow", "canary"):
        raise UserError(f"--mode {mode!r}: choose shadow or canary")
    if window is not None and not re.match(_DURATION, window):
        raise UserError(f"--window {window!r}: a duration like 90s, 30m, 6h, 1d")
    if champion is None:
        current = read_champion(s.champion_file)
        if current is None:
            raise UserError("no --champion and no champion pointer yet")
        champion = current.model_tag
    if challenger is None:
        waiting = [e for e in read_models(s.models_file) if e.status == "challenger"]
        if not waiting:
            raise UserError("no --challenger and no challenger in the registry (`crispops models`)")
        challenger = waiting[-1].model_tag
    w = window_from_log(
        s,
        model_tag(s, champion),
        model_tag(s, challenger),
        "shadow" if mode == "shadow" else "canary",
        window,
    )
    verdict = analyze(w, s.rollout)
    if as_json:
        sys.stdout.write(json.dumps(verdict.to_dict(), indent=2, default=str) + "\n")
    else:
        style = {"pass": "green", "fail": "red", "wait": "yellow"}[verdict.status]
        console.print(f"[bold {style}]{verdict.status}[/] {w.challenger} vs {w.champion}")
        for reason in verdict.reasons:
            console.print(f"  {escape(reason)}", highlight=False)
    raise typer.Exit({"pass": 0, "fail": EXIT_FAILED, "wait": EXIT_WAIT}[verdict.status])


@app.command("status")
@handle_errors
def status_cmd(
    overlay: OverlayOpt = "dev",
    as_json: Annotated[bool, typer.Option("--json", help="Print the state as JSON.")] = False,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    project: ProjectOpt = None,
) -> None:
    """What the cluster records of the last rollout (its annotations)."""
    from dataclasses import asdict

    from crispops.cluster.kube import api_client

    s = settings(project)
    ctl = controller(s, find_overlay(s, overlay), None, api_client(kubeconfig, context))
    state = ctl.status()
    if state is None:
        console.print("no rollout recorded on this cluster")
        return
    data = {**asdict(state), "weight": state.weight, "mode": state.mode}
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    for k, v in data.items():
        console.print(f"{k}: {escape(str(v))}", highlight=False)


@app.command("resume")
@handle_errors
def resume_cmd(
    overlay: OverlayOpt = "dev",
    wait: Annotated[
        float, typer.Option(min=0, help="Seconds to keep re-analysing while it says 'wait'.")
    ] = 0.0,
    registry: Annotated[str | None, typer.Option(help="Image registry.")] = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    project: ProjectOpt = None,
) -> None:
    """Continue the rollout in progress from the step the cluster records."""
    from crispops.cluster.kube import api_client

    s = settings(project)
    ctl = controller(s, find_overlay(s, overlay), registry, api_client(kubeconfig, context), wait)
    report(ctl.resume())


@app.command("abort")
@handle_errors
def abort_cmd(
    overlay: OverlayOpt = "dev",
    registry: Annotated[str | None, typer.Option(help="Image registry.")] = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    project: ProjectOpt = None,
) -> None:
    """Weight 0, the champion's objects restored, the challenger's removed."""
    from crispops.cluster.kube import api_client

    s = settings(project)
    ctl = controller(s, find_overlay(s, overlay), registry, api_client(kubeconfig, context))
    report(ctl.abort())
