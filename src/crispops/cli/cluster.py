"""`crispops images [build]|deploy|rollback`: images, and the model service on Kubernetes
(with a challenger: a shadow or canary rollout, see :mod:`crispops.cli.rollout`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from crispops.cli.common import (
    ProjectOpt,
    UserError,
    console,
    find_overlay,
    handle_errors,
    settings,
)
from crispops.config import Settings

images_app = typer.Typer(
    help="Container images: the components' image and the champion's Bento image.",
    invoke_without_command=True,
)

KubeconfigOpt = Annotated[
    Path | None, typer.Option(help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config).")
]
ContextOpt = Annotated[str | None, typer.Option(help="kubeconfig context.")]
OverlayOpt = Annotated[str, typer.Option(help="Overlay under manifests/overlays (dev, prod).")]


@images_app.callback()
@handle_errors
def images(
    ctx: typer.Context,
    project: ProjectOpt = None,
    registry: Annotated[
        str | None, typer.Option(help="Registry to push to (default: cluster.registry).")
    ] = None,
) -> None:
    """Print the exact commands that build and push the images for a registry."""
    from crispops.cluster.build import image_plan

    if ctx.invoked_subcommand is not None:
        return
    for what, commands in image_plan(settings(project), registry):
        console.print(f"# {what}", style="bold", highlight=False)
        for command in commands:
            console.print(command, highlight=False, soft_wrap=True)


@images_app.command("build")
@handle_errors
def images_build(
    project: ProjectOpt = None,
    base_image: Annotated[
        str | None,
        typer.Option(
            help="Base of the components' image. Default: localhost/debian-py:bookworm "
            "when present (scripts/prepare-containers.sh), else python:3.11-slim-bookworm."
        ),
    ] = None,
) -> None:
    """Build the components' image and the champion's Bento image, with docker or podman.

    A Spark project (feature_store.engine = "spark") gets the components' Spark variant,
    <image>-spark: the same image with Java 17 and pyspark."""
    import shlex

    from crispops.champion import read_champion
    from crispops.cluster import build

    s = settings(project)
    engine = build.detect_engine()
    console.print(f"engine: {engine.name} ({engine.path})", highlight=False)
    with console.status("building") as status:

        def log(message: str) -> None:
            status.update(message)
            console.print(f"  [cyan]>[/] {message}", highlight=False)

        spark = s.feature_store.engine == "spark"
        component = build.build_component_image(
            engine, base_image=base_image, tag=s.task_image if spark else None, spark=spark, log=log
        )
        console.print(f"[green]built[/] {component}", highlight=False)
        if read_champion(s.champion_file) is None:
            console.print(
                "[yellow]no champion yet[/]: run `crispops run --runner docker`, then this "
                "again for the Bento image"
            )
            return
        bento = build.build_bento_image(s, engine, log=log)
    console.print(f"[green]built[/] {bento}", highlight=False)
    serve = shlex.join(build.bento_run_args(s, bento, port=s.serving.port))
    console.print(f"serve it: {engine.name} {serve}", highlight=False, soft_wrap=True)


@handle_errors
def deploy(
    overlay: OverlayOpt,
    bento: Annotated[
        str | None, typer.Option(help="Bento tag to deploy (default: the champion's).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would be applied; apply nothing.")
    ] = False,
    registry: Annotated[
        str | None, typer.Option(help="Image registry (default: cluster.registry).")
    ] = None,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds to wait for the rollout.")] = 300.0,
    challenger: Annotated[
        str | None,
        typer.Option(help="A challenger's Bento tag: roll it out beside the champion."),
    ] = None,
    strategy: Annotated[str, typer.Option(help="With --challenger: shadow or canary.")] = "canary",
    steps: Annotated[
        str | None,
        typer.Option(
            help="With --challenger: weights in percent, e.g. 10,50,100 (default rollout.steps)."
        ),
    ] = None,
    wait: Annotated[
        float,
        typer.Option(
            min=0,
            help="With --challenger: seconds to keep re-analysing while the "
            "analysis says 'wait' (then it stays at its step: `rollout resume`).",
        ),
    ] = 0.0,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    project: ProjectOpt = None,
) -> None:
    """Render the overlay with the Bento's image, server-side apply it, wait for the
    rollout, and roll back to the previous revision if it fails.

    With --challenger, a shadow or canary rollout: the challenger runs beside the
    champion at the first step's weight, steps on after each passing analysis,
    is promoted at 100% (pointer, registry and image together), or is rolled back
    and rejected on a failing one.
    """
    from crispops.champion import read_champion
    from crispops.cluster.deploy import deploy as deploy_bento
    from crispops.cluster.kube import api_client

    s = settings(project)
    path = find_overlay(s, overlay)
    tag = bento
    if tag is None:
        champion = read_champion(s.champion_file)
        if champion is None:
            raise UserError("no --bento TAG and no champion yet (run `crispops run`)")
        tag = champion.bento_tag
    if challenger is not None:
        _progressive(
            s, path, tag, challenger, strategy, steps, registry, dry_run, wait, kubeconfig, context
        )
        return
    api = None if dry_run else api_client(kubeconfig, context)
    result = deploy_bento(
        path, tag, registry or s.cluster.registry, api, timeout_s=timeout, dry_run=dry_run
    )
    if dry_run:
        sys.stdout.write(result.manifests)
        return
    for r in result.results:
        console.print(f"  {r}", highlight=False)
    console.print(
        f"[green]rolled out[/] {result.deployment} -n {result.namespace} with "
        f"{result.image} (revision {result.revision})",
        highlight=False,
    )


def _parse_steps(text: str | None, default: list[int]) -> list[int]:
    if text is None:
        return list(default)
    try:
        steps = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise UserError(f"--steps {text!r}: comma-separated percentages, e.g. 10,50,100") from None
    if (
        not steps
        or steps[-1] != 100
        or any(not 0 < w <= 100 for w in steps)
        or sorted(set(steps)) != steps
    ):
        raise UserError(f"--steps {text!r}: increasing percentages in 1..100 ending at 100")
    return steps


def _progressive(
    s: Settings,
    path: Path,
    champion: str,
    challenger: str,
    strategy: str,
    steps_text: str | None,
    registry: str | None,
    dry_run: bool,
    wait: float,
    kubeconfig: Path | None,
    context: str | None,
) -> None:
    from crispops.cli.rollout import controller, model_tag, report
    from crispops.cluster.kube import api_client

    if strategy not in ("shadow", "canary"):
        raise UserError(f"--strategy {strategy!r}: choose shadow or canary")
    steps = _parse_steps(steps_text, s.rollout.steps)
    model_tag(s, challenger)  # a packaged model: in the registry (RegistryError otherwise)
    api = None if dry_run else api_client(kubeconfig, context)
    ctl = controller(s, path, registry, api, wait)
    if dry_run:
        sys.stdout.write(ctl.plan(champion, challenger, strategy, steps))
        return
    console.print(
        f"[bold]{strategy}[/] {challenger} beside {champion}, steps {steps}", highlight=False
    )
    report(ctl.start(champion, challenger, strategy, steps))


@handle_errors
def rollback(
    overlay: OverlayOpt,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    project: ProjectOpt = None,
) -> None:
    """Put the model service back on its previous revision."""
    from crispops.cluster.deploy import rollback as rollback_service
    from crispops.cluster.kube import api_client

    s = settings(project)
    image = rollback_service(find_overlay(s, overlay), api_client(kubeconfig, context))
    console.print(f"[green]rolled back[/] to {image}", highlight=False)
