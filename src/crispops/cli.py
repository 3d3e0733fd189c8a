"""The crispops command line: thin commands that load Settings and call the steps."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from crispops.config import SettingsError, bundled_demo_dir, env, load_settings

app = typer.Typer(
    name="crispops",
    help="The CRISP-DM cycle as Kubeflow pipelines over a Feast feature store, served by BentoML.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
features_app = typer.Typer(
    help="The Feast feature store: apply, materialize, check.", no_args_is_help=True
)
app.add_typer(features_app, name="features")

console = Console()
err = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

ProjectOpt = Annotated[
    Path | None,
    typer.Option(
        "--project",
        "-p",
        help="Project directory (crispops.toml). Default: the current directory, "
        "else the bundled demo.",
        show_default=False,
    ),
]


class UserError(Exception):
    """An error the user can fix: shown as one clear message, exit code 2."""


def _known_errors() -> tuple[type[BaseException], ...]:
    from crispops.containers import ContainerError
    from crispops.io import DataFileError
    from crispops.steps.validate import DataValidationError
    from crispops.submit import SubmitError

    known: list[type[BaseException]] = [
        SettingsError,
        DataFileError,
        DataValidationError,
        UserError,
        SubmitError,
        ContainerError,
        FileNotFoundError,
        LookupError,
        ValueError,
    ]
    try:
        from crispops.deploy import DeployError

        known.append(DeployError)
    except ImportError:
        pass
    return tuple(known)


def handle_errors(fn: F) -> F:
    """Turn exceptions into a readable message and a non-zero exit, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/]")
            raise typer.Exit(130) from None
        except _known_errors() as exc:
            if env("CRISPOPS_DEBUG"):
                raise
            err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
            raise typer.Exit(2) from None
        except Exception as exc:
            if env("CRISPOPS_DEBUG"):
                raise
            err.print(
                f"[bold red]internal error:[/] {type(exc).__name__}: "
                f"{escape(str(exc))}\n"
                "Run again with CRISPOPS_DEBUG=1 for the traceback.",
                highlight=False,
            )
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _settings(project: Path | None) -> Any:
    if project is not None and not project.is_dir():
        raise UserError(f"--project {project}: not a directory")
    return load_settings(project)


# demo-data ----------------------------------------------------------------------------
@app.command("demo-data")
@handle_errors
def demo_data(
    out: Annotated[
        Path | None,
        typer.Option(help="Output directory. Default: the demo feature repo's data/ folder."),
    ] = None,
    customers: Annotated[int, typer.Option(min=20, help="Number of customers.")] = 2000,
    days: Annotated[int, typer.Option(min=90, help="Days of history.")] = 365,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
    project: ProjectOpt = None,
) -> None:
    """Write the seeded credit-default demo data set (Parquet)."""
    from crispops.demo_data import generate

    if out is None:
        out = _settings(project).repo_path / "data"
    result = generate(out, customers=customers, days=days, seed=seed)
    table = Table(title=f"demo data in {result.out_dir}")
    table.add_column("file")
    table.add_column("rows", justify="right")
    table.add_row("customer_profiles.parquet", f"{result.profiles:,}")
    table.add_row("account_activity.parquet", f"{result.activity:,}")
    table.add_row("loan_applications.parquet (labels)", f"{result.applications:,}")
    console.print(table)
    console.print(
        f"{result.customers:,} customers, {result.start:%Y-%m-%d} to "
        f"{result.end:%Y-%m-%d}, default rate {result.default_rate:.1%}"
    )


# features ------------------------------------------------------------------------------
@features_app.command("apply")
@handle_errors
def features_apply(project: ProjectOpt = None) -> None:
    """Register the feature repo's definitions (as `feast apply`)."""
    from crispops.steps.features import apply

    s = _settings(project)
    with console.status("applying feature definitions"):
        r = apply(s.repo_path)
    console.print(
        f"[green]applied[/] project {r.project}: feature views "
        f"{', '.join(r.feature_views)}; on-demand {', '.join(r.on_demand_views) or '-'};"
        f" services {', '.join(r.feature_services)}"
    )


@features_app.command("materialize")
@handle_errors
def features_materialize(project: ProjectOpt = None) -> None:
    """Load the latest feature values into the online store, incrementally."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from crispops.steps.features import materialize

    s = _settings(project)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} views"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        bar = progress.add_task("materializing", total=None)

        def on_view(name: str, i: int, n: int) -> None:
            progress.update(
                bar,
                total=n,
                completed=i,
                description=f"materializing {name}" if name else "materialized",
            )

        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            result = materialize(s.repo_path, on_view=on_view)
    for name, (start, end) in result.views.items():
        since = f"{start:%Y-%m-%d %H:%M}" if start else "the start of its TTL"
        console.print(f"  {name}: {since} -> {end:%Y-%m-%d %H:%M} UTC")


@features_app.command("check")
@handle_errors
def features_check(
    project: ProjectOpt = None,
    sample: Annotated[int | None, typer.Option(min=1, help="Entities to compare.")] = None,
) -> None:
    """Check that online values equal the latest offline values for a sample of entities."""
    from crispops.steps.features import check

    s = _settings(project)
    n = sample or s.feature_store.check_sample
    with console.status("comparing online and offline values"):
        r = check(s.repo_path, s.feature_store.feature_service, s.data.entity, sample=n)
    if r.ok:
        console.print(
            f"[green]ok[/]: {r.compared:,} values of {r.entities} entities x "
            f"{r.features} features match (online == latest offline)"
        )
        return
    table = Table(title="online differs from offline", show_lines=False)
    for col in (s.data.entity, "feature", "offline (latest)", "online"):
        table.add_column(col)
    for m in r.mismatches[:50]:
        table.add_row(str(m.entity), m.feature, repr(m.offline), repr(m.online))
    console.print(table)
    err.print(f"[bold red]{len(r.mismatches)} of {r.compared} values differ[/]")
    raise typer.Exit(1)


# pipeline ------------------------------------------------------------------------------
@app.command("compile")
@handle_errors
def compile_(
    out: Annotated[Path, typer.Option(help="Directory for the IR YAML files.")] = Path(
        "build/pipelines"
    ),
    project: ProjectOpt = None,
) -> None:
    """Write each pipeline's IR YAML (for a Kubeflow Pipelines cluster)."""
    from crispops.compile import compile_all

    s = _settings(project)
    for name, path in compile_all(s, out).items():
        console.print(f"{name}: {path}")


@app.command("run")
@handle_errors
def run(
    project: ProjectOpt = None,
    runner: Annotated[str, typer.Option(help="subprocess (default) or docker.")] = "subprocess",
    run_id: Annotated[str | None, typer.Option(help="Run id (default: a timestamp).")] = None,
) -> None:
    """Run the training pipeline on this machine through KFP's local runner."""
    if runner not in {"subprocess", "docker"}:
        raise UserError(f"--runner {runner!r}: choose subprocess or docker")
    s = _settings(project)
    _run_pipeline(s, runner, run_id)


def _run_pipeline(s: Any, runner: str, run_id: str | None) -> None:
    from crispops.champion import read_champion
    from crispops.runner import run_training

    # KFP's output is captured into the run log while the pipeline runs; progress goes
    # to the terminal through a console bound to the real stdout, never into that capture.
    live = Console(file=sys.stdout)

    def on_event(kind: str, task: str, status: str) -> None:
        if kind == "start":
            live.print(f"  [cyan]>[/] {task}", highlight=False)
        else:
            mark = "[green]ok[/]" if status == "SUCCESS" else f"[red]{status}[/]"
            live.print(f"  {mark} {task}", highlight=False)

    console.print(f"[bold]training pipeline[/] ({runner} runner), project {s.project_dir}")
    result = run_training(s, on_event=on_event, runner=runner, run_id=run_id)
    console.print(f"log: {result.log}")
    if not result.ok:
        step = result.failed_step or "?"
        report = result.artifact("validate", "report")
        if step == "validate" and report and report.is_file():
            console.print(report.read_text())
            err.print(
                f"[bold red]stopped at validate[/]: bad data, nothing trained or packaged. "
                f"Report: {report}"
            )
        else:
            err.print(f"[bold red]the pipeline failed at {step}[/]: {_last_error(result)}")
        raise typer.Exit(1)
    _print_summary(s, result, read_champion(s.champion_file))


def _last_error(result: Any) -> str:
    text = result.log.read_text(encoding="utf-8", errors="replace")
    lines = [ln.strip() for ln in text.splitlines() if "Error" in ln or "error" in ln]
    return lines[-1] if lines else (result.error.splitlines()[-1] if result.error else "")


def _print_summary(s: Any, result: Any, champion: Any) -> None:
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
            table.add_row(*[f"{v:.4f}" if isinstance(v, float) else str(v) for v in cells])
        console.print(table)
    steps = Table(title=f"steps ({result.seconds:.1f} s in all)")
    steps.add_column("step")
    steps.add_column("tasks", justify="right")
    steps.add_column("seconds", justify="right")
    done = result.completed()
    for name, took in sorted(
        result.task_seconds().items(), key=lambda kv: min(result.starts.get(kv[0], [0.0]))
    ):
        steps.add_row(name, str(done.count(name)), f"{took:.1f}")
    console.print(steps)
    reason = decision.get("reason", "")
    if decision.get("promote"):
        console.print(f"[bold green]{reason}[/]")
    else:
        console.print(f"[bold yellow]{reason}[/]")
    if champion:
        console.print(
            f"champion: model [bold]{champion.model_tag}[/], Bento "
            f"[bold]{champion.bento_tag}[/] ({champion.metric} {champion.score:.4f})"
        )
    for label, task, name in (
        ("EDA report", "explore", "report"),
        ("EDA summary", "explore", "summary"),
        ("validation", "validate", "report"),
        ("leaderboard", "select-champion", "leaderboard"),
    ):
        path = result.artifact(task, name)
        if path:
            console.print(f"{label}: {path}")


@app.command("submit")
@handle_errors
def submit(
    host: Annotated[
        str | None, typer.Option(help="Kubeflow Pipelines API URL (default: cluster.kfp_host).")
    ] = None,
    experiment: Annotated[str, typer.Option(help="Experiment name.")] = "crispops",
    schedule: Annotated[
        str | None, typer.Option(help="Cron expression: make a recurring run instead of one run.")
    ] = None,
    pipeline: Annotated[str, typer.Option(help="training or materialization.")] = "training",
    namespace: Annotated[
        str | None, typer.Option(help="Kubeflow profile (multi-user KFP).")
    ] = None,
    project: ProjectOpt = None,
) -> None:
    """Compile a pipeline and submit it to a Kubeflow Pipelines cluster (token from the
    environment variable named by cluster.kfp_token_env)."""
    from crispops.compile import PIPELINES
    from crispops.submit import submit as submit_pipeline

    s = _settings(project)
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
        if value not in (None, ""):
            console.print(f"{key}: {value}", highlight=False)


# deploy ----------------------------------------------------------------------------------
def _overlay(s: Any, overlay: str) -> Path:
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


def _kube_client(kubeconfig: Path | None, context: str | None) -> Any:
    from kubernetes import config as kube_config

    try:
        if kubeconfig is None and context is None and env("KUBERNETES_SERVICE_HOST"):
            kube_config.load_incluster_config()
            from kubernetes import client

            return client.ApiClient()
        return kube_config.new_client_from_config(
            config_file=str(kubeconfig) if kubeconfig else None, context=context
        )
    except (kube_config.ConfigException, OSError, TypeError) as exc:
        raise UserError(
            f"no usable Kubernetes configuration ({exc}); pass --kubeconfig or set KUBECONFIG"
        ) from None


KubeconfigOpt = Annotated[
    Path | None, typer.Option(help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config).")
]
ContextOpt = Annotated[str | None, typer.Option(help="kubeconfig context.")]


@app.command("deploy")
@handle_errors
def deploy_cmd(
    overlay: Annotated[str, typer.Option(help="Overlay under manifests/overlays (dev, prod).")],
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
    from crispops.deploy import deploy

    s = _settings(project)
    path = _overlay(s, overlay)
    tag = bento
    if tag is None:
        champion = read_champion(s.champion_file)
        if champion is None:
            raise UserError("no --bento TAG and no champion yet (run `crispops run`)")
        tag = champion.bento_tag
    api = None if dry_run else _kube_client(kubeconfig, context)
    result = deploy(
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


@app.command("rollback")
@handle_errors
def rollback_cmd(
    overlay: Annotated[str, typer.Option(help="Overlay under manifests/overlays (dev, prod).")],
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    project: ProjectOpt = None,
) -> None:
    """Put the model service back on its previous revision."""
    from crispops.deploy import rollback

    s = _settings(project)
    image = rollback(_overlay(s, overlay), _kube_client(kubeconfig, context))
    console.print(f"[green]rolled back[/] to {image}", highlight=False)


# demo ----------------------------------------------------------------------------------
@app.command("demo")
@handle_errors
def demo(
    project: ProjectOpt = None,
    customers: Annotated[int, typer.Option(min=20, help="Number of customers.")] = 2000,
) -> None:
    """The whole cycle on the embedded default: data, features, pipeline, champion."""
    s = _settings(project)
    if s.project_dir != bundled_demo_dir() and project is None:
        console.print(f"project: {s.project_dir}")
    if not s.label_source_path.exists():
        demo_data(out=None, customers=customers, days=365, seed=7, project=s.project_dir)
    features_apply(project=s.project_dir)
    features_materialize(project=s.project_dir)
    features_check(project=s.project_dir, sample=None)
    _run_pipeline(s, "subprocess", None)
    console.print(
        "\nnext: [bold]crispops serve[/] then "
        "[bold]crispops predict --entity 1001 --field requested_amount=12000 "
        "--field term_months=36[/]"
    )


# init -----------------------------------------------------------------------------------
@app.command("init")
@handle_errors
def init(
    directory: Annotated[Path, typer.Argument(help="New project directory.")],
    data: Annotated[
        Path,
        typer.Option(help="Parquet or CSV file with entity, timestamp, label and feature columns."),
    ],
    entity: Annotated[str, typer.Option(help="Entity key column.")],
    timestamp: Annotated[str, typer.Option(help="Event timestamp column.")],
    label: Annotated[str, typer.Option(help="Label column.")],
    task: Annotated[str, typer.Option(help="binary, multiclass or regression.")],
    force: Annotated[
        bool, typer.Option(help="Write into an existing, non-empty directory.")
    ] = False,
) -> None:
    """Scaffold a project (crispops.toml and a Feast repo) for your own tabular data."""
    from crispops.scaffold import scaffold

    if task not in {"binary", "multiclass", "regression"}:
        raise UserError(f"--task {task!r}: choose binary, multiclass or regression")
    result = scaffold(
        directory,
        data=data,
        entity=entity,
        timestamp=timestamp,
        label=label,
        task=task,
        force=force,
    )
    console.print(
        f"[green]created[/] {result.directory}: {len(result.features)} features "
        f"({', '.join(result.features[:8])}{'...' if len(result.features) > 8 else ''})"
    )
    console.print(
        f"next: crispops features apply -p {directory} && "
        f"crispops features materialize -p {directory} && crispops run -p {directory}"
    )


# images ----------------------------------------------------------------------------------
images_app = typer.Typer(
    help="Container images: the components' image and the champion's Bento image.",
    invoke_without_command=True,
)
app.add_typer(images_app, name="images")


def image_plan(s: Any, registry: str | None) -> list[tuple[str, list[str]]]:
    """(what, shell commands) to build and push both images for a registry."""
    from crispops import __version__
    from crispops.champion import read_champion

    reg = (registry or s.cluster.registry).rstrip("/")
    component = (
        s.cluster.component_image
        if registry is None
        else f"{reg}/crispops-components:{__version__}"
    )
    plan = [
        (
            "components image (every pipeline step runs in it)",
            [
                "python -m pip wheel -c constraints.txt --wheel-dir build/wheelhouse . uv",
                f"docker build --build-arg BASE_IMAGE=python:3.11-slim-bookworm -t {component} .",
                f"docker push {component}",
            ],
        )
    ]
    champion = read_champion(s.champion_file)
    if champion is None:
        plan.append(("model service image", ["# no champion yet: run `crispops run` first"]))
    else:
        name, version = champion.bento_tag.split(":", 1)
        image = f"{reg}/{name}:{version}"
        plan.append(
            (
                "model service image (the champion's Bento)",
                [
                    f"BENTOML_HOME={s.bentoml_home} bentoml containerize {champion.bento_tag} "
                    f"--image-tag {image}",
                    f"docker push {image}",
                ],
            )
        )
    return plan


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
    if ctx.invoked_subcommand is not None:
        return
    s = _settings(project)
    for what, commands in image_plan(s, registry):
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

    from crispops import containers
    from crispops.champion import read_champion

    s = _settings(project)
    engine = containers.detect_engine()
    console.print(f"engine: {engine.name} ({engine.path})", highlight=False)
    with console.status("building") as status:

        def log(message: str) -> None:
            status.update(message)
            console.print(f"  [cyan]>[/] {message}", highlight=False)

        component = containers.build_component_image(engine, base_image=base_image, log=log)
        console.print(f"[green]built[/] {component}", highlight=False)
        if read_champion(s.champion_file) is None:
            console.print(
                "[yellow]no champion yet[/]: run `crispops run --runner docker`, then this "
                "again for the Bento image"
            )
            return
        bento = containers.build_bento_image(s, engine, log=log)
    console.print(f"[green]built[/] {bento}", highlight=False)
    serve = shlex.join(containers.bento_run_args(s, bento, port=s.serving.port))
    console.print(f"serve it: {engine.name} {serve}", highlight=False, soft_wrap=True)


# serving ---------------------------------------------------------------------------------
def serving_env(s: Any) -> dict[str, str]:
    """The environment a model server reads (crispops.config.serving_runtime)."""
    sv = s.serving
    envs = {
        "BENTOML_HOME": str(s.bentoml_home),
        "BENTOML_DO_NOT_TRACK": "True",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "CRISPOPS_SERVING__WORKERS": str(sv.workers),
        "CRISPOPS_SERVING__MAX_BATCH_SIZE": str(sv.max_batch_size),
        "CRISPOPS_SERVING__MAX_LATENCY_MS": str(sv.max_latency_ms),
        "CRISPOPS_SERVING__MAX_CONCURRENCY": str(sv.max_concurrency),
        "CRISPOPS_SERVING__MISSING_ENTITY": sv.missing_entity,
        "CRISPOPS_SERVING__FEATURE_REPO": str(s.repo_path),
    }
    if sv.online_store == "cluster":
        envs["CRISPOPS_SERVING__FEATURE_STORE_YAML"] = s.feature_store.cluster_config
    return envs


def serve_argv(bento_tag: str, host: str, port: int) -> list[str]:
    """The `bentoml serve` command line for a Bento."""
    return [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        bento_tag,
        "--host",
        host,
        "--port",
        str(port),
    ]


@app.command("serve")
@handle_errors
def serve(
    project: ProjectOpt = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Port (default: serving.port).")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Address (default: serving.host).")] = None,
) -> None:
    """Serve the current champion's Bento on this machine (`bentoml serve`)."""
    from crispops.champion import read_champion

    s = _settings(project)
    champion = read_champion(s.champion_file)
    if champion is None:
        raise UserError(f"{s.project_dir}: no champion yet; run `crispops run` first")
    envs = {**os.environ, **serving_env(s)}
    argv = serve_argv(champion.bento_tag, host or s.serving.host, port or s.serving.port)
    err.print(
        f"serving {champion.bento_tag} ({champion.metric} {champion.score:.4f}) on "
        f"http://{host or s.serving.host}:{port or s.serving.port}"
    )
    os.execve(sys.executable, argv, envs)


def _value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


@app.command("predict")
@handle_errors
def predict(
    entity: Annotated[
        list[str] | None,
        typer.Option(
            "--entity", "-e", help="Entity key to score by its online features (repeatable)."
        ),
    ] = None,
    field: Annotated[
        list[str] | None,
        typer.Option(
            "--field", "-f", help="NAME=VALUE request-time field, sent with every entity."
        ),
    ] = None,
    records: Annotated[
        Path | None,
        typer.Option(
            "--records", help="JSON file: a list of records holding every feature (POST /predict)."
        ),
    ] = None,
    url: Annotated[str, typer.Option(help="Service address.")] = "http://127.0.0.1:3000",
    project: ProjectOpt = None,
) -> None:
    """Call a running service: by entity key (/predict_entity) or with feature values
    (/predict)."""
    import httpx

    if bool(entity) == bool(records):
        raise UserError("give --entity KEY (with --field NAME=VALUE) or --records FILE")
    if records is not None:
        try:
            body: Any = {"records": json.loads(records.read_text())}
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"--records {records}: {exc}") from None
        path = "/predict"
    else:
        s = _settings(project)
        extra: dict[str, Any] = {}
        for item in field or []:
            name, sep, value = item.partition("=")
            if not sep or not name:
                raise UserError(f"--field {item!r}: expected NAME=VALUE")
            extra[name] = _value(value)
        body = {"records": [{s.data.entity: _value(k), **extra} for k in entity or []]}
        path = "/predict_entity"
    try:
        resp = httpx.post(url.rstrip("/") + path, json=body, timeout=30)
    except httpx.HTTPError as exc:
        raise UserError(
            f"{url}: cannot reach the service ({exc}); is `crispops serve` running?"
        ) from None
    if resp.status_code >= 400:
        err.print(f"[bold red]{resp.status_code}[/] {resp.text}", highlight=False)
        raise typer.Exit(1)
    console.print_json(resp.text)


def main() -> None:
    try:
        app()
    except SystemExit as exc:
        sys.exit(exc.code)


if __name__ == "__main__":
    main()


__all__ = ["app", "json", "main"]
