"""`crispops init|demo|demo-data`: set a project up, or run the bundled demo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.table import Table

from crispops.cli.common import ProjectOpt, UserError, console, handle_errors, settings
from crispops.cli.features import features_apply, features_check, features_materialize
from crispops.cli.pipeline import run_pipeline
from crispops.config import CONFIG_FILE, SparkSettings, bundled_demo_dir, env


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
    from crispops.project.demo_data import generate

    if out is None:
        out = settings(project).repo_path / "data"
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


ENGINES = ("duckdb", "spark")


@handle_errors
def demo(
    project: ProjectOpt = None,
    customers: Annotated[int, typer.Option(min=20, help="Number of customers.")] = 2000,
    engine: Annotated[
        str,
        typer.Option(
            help="duckdb (default) or spark: the demo as a Spark project (Feast's Spark "
            "offline store and materialization engine on local[2]; Java 17 and the "
            "[spark] extra), made in --project (a new or empty directory) or, without "
            "it, in the bundled demo's .crispops/spark-demo."
        ),
    ] = "duckdb",
) -> None:
    """The whole cycle on the embedded default: data, features, pipeline, champion."""
    if engine not in ENGINES:
        raise UserError(f"--engine {engine!r}: choose {' or '.join(ENGINES)}")
    if engine == "spark":
        project = _spark_demo(project)
    s = settings(project)
    if s.feature_store.engine != engine:
        raise UserError(
            f"--engine {engine}: {s.project_dir} is a {s.feature_store.engine} project "
            "(feature_store.engine); give --project a new directory for the Spark demo"
        )
    if s.project_dir != bundled_demo_dir() and project is None:
        console.print(f"project: {s.project_dir}")
    if not s.label_source_path.exists():
        demo_data(out=None, customers=customers, days=365, seed=7, project=s.project_dir)
    features_apply(project=s.project_dir)
    features_materialize(project=s.project_dir)
    features_check(project=s.project_dir, sample=None)
    run_pipeline(s, "subprocess", None)
    console.print(
        "\nnext: [bold]crispops serve[/] then "
        "[bold]crispops predict --entity 1001 --field requested_amount=12000 "
        "--field term_months=36[/]"
    )


@handle_errors
def init(
    directory: Annotated[Path, typer.Argument(help="New project directory.")],
    data: Annotated[
        Path,
        typer.Option(
            help="Parquet or CSV file: the label rows (with --feature-repo), or entity, "
            "timestamp, label and feature columns (without)."
        ),
    ],
    timestamp: Annotated[str, typer.Option(help="Event timestamp column.")],
    label: Annotated[str, typer.Option(help="Label column.")],
    task: Annotated[str, typer.Option(help="binary, multiclass or regression.")],
    entity: Annotated[
        str | None, typer.Option(help="Entity key column (without --feature-repo).")
    ] = None,
    feature_repo: Annotated[
        Path | None,
        typer.Option(help="Your existing Feast repo: read, never written; the project uses it."),
    ] = None,
    feature_service: Annotated[
        str | None, typer.Option(help="The FeatureService of --feature-repo the model uses.")
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option(help="A label-table column not to use as a request-time feature (repeat)."),
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Write into an existing, non-empty directory.")
    ] = False,
    engine: Annotated[
        str,
        typer.Option(
            help="duckdb (default: one process) or spark (Feast's Spark offline store and "
            "materialization engine; needs Java 17 and pyspark, the [spark] extra)."
        ),
    ] = "duckdb",
    spark_master: Annotated[
        str | None,
        typer.Option(help="With --engine spark: the local Spark master (default local[2])."),
    ] = None,
) -> None:
    """Start a project: around your Feast repo (--feature-repo, --feature-service), or with a
    Feast repo generated from one tabular file (--entity)."""
    if task not in {"binary", "multiclass", "regression"}:
        raise UserError(f"--task {task!r}: choose binary, multiclass or regression")
    if engine not in {"duckdb", "spark"}:
        raise UserError(f"--engine {engine!r}: choose duckdb or spark")
    if spark_master is not None and engine != "spark":
        raise UserError("--spark-master goes with --engine spark")
    if feature_repo is not None and engine != "duckdb":
        raise UserError(
            "--engine goes without --feature-repo: your repo's feature_store.yaml chooses "
            "its offline store and materialization engine"
        )
    if feature_repo is not None:
        if feature_service is None:
            raise UserError("--feature-repo needs --feature-service NAME (the model's contract)")
        if entity is not None:
            raise UserError(
                "--entity goes without --feature-repo: the join keys come from the "
                "FeatureService's views"
            )
        _adopt(
            directory, feature_repo, feature_service, data, timestamp, label, task, exclude, force
        )
        return
    if entity is None or feature_service is not None or exclude:
        raise UserError(
            "give --entity COLUMN (a new Feast repo from --data), or --feature-repo PATH "
            "with --feature-service NAME (your own repo)"
        )
    from crispops.project.scaffold import scaffold

    spark = None
    if engine == "spark":
        spark = _spark_settings(spark_master)
        _require_spark()
    result = scaffold(
        directory,
        data=data,
        entity=entity,
        timestamp=timestamp,
        label=label,
        task=task,
        force=force,
        engine="spark" if engine == "spark" else "duckdb",
        spark=spark,
    )
    console.print(
        f"[green]created[/] {result.directory}: {len(result.features)} features "
        f"({', '.join(result.features[:8])}{'...' if len(result.features) > 8 else ''})"
    )
    console.print(
        f"next: crispops features apply -p {directory} && "
        f"crispops features materialize -p {directory} && crispops run -p {directory}"
    )


def _spark_demo(project: Path | None) -> Path:
    """The Spark demo's directory: ``project`` as it is when it holds a project, else the
    demo made there (default: the bundled demo's .crispops/spark-demo)."""
    from crispops.errors import ScaffoldError
    from crispops.project.spark_demo import spark_demo_project

    source = bundled_demo_dir()
    if project is None:
        if source is None:
            raise UserError("--engine spark: no bundled demo here; give --project DIR")
        project = settings(source).state_path / "spark-demo"
    if (project / CONFIG_FILE).is_file():
        return project
    if source is None:
        raise UserError(f"{project}: no {CONFIG_FILE}, and no bundled demo to copy from")
    _require_spark()
    try:
        spark_demo_project(project, source)
    except ScaffoldError as exc:
        raise UserError(f"--project {project}: {exc}") from None
    console.print(f"[green]created[/] the Spark demo project in {project}", highlight=False)
    return project


def _spark_settings(master: str | None) -> SparkSettings:
    try:
        return SparkSettings() if master is None else SparkSettings(master=master)
    except ValidationError as exc:
        raise UserError(f"--spark-master: {exc.errors()[0]['msg']}") from None


def _require_spark() -> None:
    """Spark needs pyspark (the [spark] extra) and a Java runtime: say so before writing."""
    import importlib.util
    import shutil

    if importlib.util.find_spec("pyspark") is None:
        raise UserError(
            "--engine spark needs pyspark: pip install 'crispops[spark]' (feast[spark])"
        )
    if shutil.which("java") is None and env("JAVA_HOME") is None:
        raise UserError(
            "--engine spark needs a Java runtime (17 or later) on PATH or in JAVA_HOME "
            "(Debian: apt-get install openjdk-17-jre-headless)"
        )


def _adopt(
    directory: Path,
    feature_repo: Path,
    feature_service: str,
    data: Path,
    timestamp: str,
    label: str,
    task: str,
    exclude: list[str] | None,
    force: bool,
) -> None:
    from crispops.project.adopt import adopt

    r = adopt(
        directory,
        feature_repo=feature_repo,
        feature_service=feature_service,
        data=data,
        timestamp=timestamp,
        label=label,
        task=task,
        exclude=exclude,
        force=force,
    )
    console.print(
        f"[green]created[/] {r.directory / 'crispops.toml'} for {r.feature_service} in "
        f"{feature_repo} ({r.rows:,} label rows)",
        highlight=False,
    )
    console.print(f"  entity join keys: {', '.join(r.join_keys)}", highlight=False)
    console.print(f"  features from Feast: {len(r.features)}", highlight=False)
    console.print(
        f"  request-time features from {data.name}: "
        + (", ".join(f"{k} ({v})" for k, v in r.request_features.items()) or "none"),
        highlight=False,
    )
    if r.left_out:
        table = Table(title="label-table columns left out")
        table.add_column("column")
        table.add_column("why")
        for column, why in r.left_out.items():
            table.add_row(column, why)
        console.print(table)
    console.print(
        f"next: crispops features apply -p {directory} && "
        f"crispops features materialize -p {directory} && crispops run -p {directory}"
    )
