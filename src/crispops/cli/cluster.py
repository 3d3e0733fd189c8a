"""`crispops images [build]|deploy|rollback`: images, and the model service on Kubernetes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from crispops.cli.common import ProjectOpt, UserError, console, handle_errors, settings
from crispops.config import Settings, bundled_demo_dir

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
    """Build the components' image and the champion's Bento image, with docker or podman."""
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

        component = build.build_component_image(engine, base_image=base_image, log=log)
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


def _overlay(s: Settings, overlay: str) -> Path:
    roots = [s.project_dir / "manifests"]
    demo = bundled_demo_dir()
    if demo is not None:
        roots.append(demo / "manifests")
    for root in roots:
        path = root / "overlays" / overlay
        if (path / "kustomization.yaml").is_file():
            return path
    known = sorted({p.name for r in roots for p in (r / "overlays").glob("*") if p.is_dir()})
    raise UserError(f"--overlay {overlay!r}: no such overlay (known: {', '.join(known)})")


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
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    project: ProjectOpt = None,
) -> None:
    """Render the overlay with the Bento's image, server-side apply it, wait for the
    rollout, and roll back to the previous revision if it fails."""
    from crispops.champion import read_champion
    from crispops.cluster.deploy import deploy as deploy_bento
    from crispops.cluster.kube import api_client

    s = settings(project)
    path = _overlay(s, overlay)
    tag = bento
    if tag is None:
        champion = read_champion(s.champion_file)
        if champion is None:
            raise UserError("no --bento TAG and no champion yet (run `crispops run`)")
        tag = champion.bento_tag
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
    image = rollback_service(_overlay(s, overlay), api_client(kubeconfig, context))
    console.print(f"[green]rolled back[/] to {image}", highlight=False)
