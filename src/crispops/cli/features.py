"""`crispops features apply|materialize|check`: the Feast feature store."""

from __future__ import annotations

import contextlib
import os
from datetime import datetime
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.table import Table

from crispops.cli.common import (
    EXIT_FAILED,
    ProjectOpt,
    UserError,
    console,
    err,
    handle_errors,
    settings,
)

app = typer.Typer(help="The Feast feature store: apply, materialize, check.", no_args_is_help=True)


@app.command("apply")
@handle_errors
def features_apply(project: ProjectOpt = None) -> None:
    """Register the feature repo's definitions (as `feast apply`)."""
    from crispops.steps.features import apply

    s = settings(project)
    with console.status("applying feature definitions"):
        r = apply(s.repo_path)
    console.print(
        f"[green]applied[/] project {r.project}: feature views "
        f"{', '.join(r.feature_views)}; on-demand {', '.join(r.on_demand_views) or '-'};"
        f" services {', '.join(r.feature_services)}"
    )


@app.command("materialize")
@handle_errors
def features_materialize(
    project: ProjectOpt = None,
    chunk: Annotated[
        str | None,
        typer.Option(
            help="Materialize in windows of this length (e.g. 7d), oldest first, each "
            "recorded as it finishes: a rerun resumes at the first unfinished one. "
            "Default: feature_store.materialize_chunk (none: one window)."
        ),
    ] = None,
) -> None:
    """Load the latest feature values into the online store, incrementally."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from crispops.config import FeatureStoreSettings
    from crispops.steps.features import materialize

    s = settings(project)
    window = s.feature_store.chunk
    if chunk is not None:
        try:
            window = FeatureStoreSettings(feature_service="-", materialize_chunk=chunk).chunk
        except ValidationError:
            raise UserError(f"--chunk {chunk!r}: a duration such as 90m, 12h, 7d or 2w") from None
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

            def on_chunk(name: str, start: datetime, end: datetime) -> None:
                progress.update(bar, description=f"materializing {name} (done to {end:%Y-%m-%d})")

            result = materialize(s.repo_path, on_view=on_view, chunk=window, on_chunk=on_chunk)
    for name, (start, end) in result.views.items():
        since = f"{start:%Y-%m-%d %H:%M}" if start else "the start of its TTL"
        console.print(f"  {name}: {since} -> {end:%Y-%m-%d %H:%M} UTC")


@app.command("check")
@handle_errors
def features_check(
    project: ProjectOpt = None,
    sample: Annotated[int | None, typer.Option(min=1, help="Entities to compare.")] = None,
) -> None:
    """Check that online values equal the latest offline values for a sample of entities."""
    from crispops.steps.features import check

    s = settings(project)
    n = sample or s.feature_store.check_sample
    with console.status("comparing online and offline values"):
        r = check(s.repo_path, s.feature_store.feature_service, sample=n)
    if r.ok:
        console.print(
            f"[green]ok[/]: {r.compared:,} values of {r.entities} entities x "
            f"{r.features} features match (online == latest offline)"
        )
        return
    table = Table(title="online differs from offline", show_lines=False)
    for col in (", ".join(s.data.join_keys), "feature", "offline (latest)", "online"):
        table.add_column(col)
    for m in r.mismatches[:50]:
        table.add_row(m.key, m.feature, repr(m.offline), repr(m.online))
    console.print(table)
    err.print(f"[bold red]{len(r.mismatches)} of {r.compared} values differ[/]")
    raise typer.Exit(EXIT_FAILED)
