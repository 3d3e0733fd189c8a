"""`crispops cache ls|clear`: the step cache of local runs (orchestration/cache.py)."""

from __future__ import annotations

import datetime as dt

import typer
from rich.table import Table

from crispops.cli.common import ProjectOpt, console, handle_errors, settings

app = typer.Typer(help="The step cache of `crispops run`: list, clear.", no_args_is_help=True)


@app.command("ls")
@handle_errors
def cache_ls(project: ProjectOpt = None) -> None:
    """List the cached steps, most recently used first."""
    from crispops.orchestration.cache import entries

    s = settings(project)
    listed = entries(s.cache_path)
    table = Table(title=f"step cache {s.cache_path} (limit {s.cache.max_mb} MB)")
    for column in ("key", "step", "MB", "run took s", "last used"):
        table.add_column(column, justify="right" if column in ("MB", "run took s") else "left")
    for e in listed:
        used = dt.datetime.fromtimestamp(e.used).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(
            e.key[:12],
            e.task if e.ok else f"{e.task} (unreadable: a miss)",
            f"{e.bytes / 1e6:.2f}",
            f"{e.seconds:.1f}",
            used,
        )
    console.print(table)
    total = sum(e.bytes for e in listed)
    console.print(f"{len(listed)} entries, {total / 1e6:.2f} MB", highlight=False)


@app.command("clear")
@handle_errors
def cache_clear(project: ProjectOpt = None) -> None:
    """Delete every cached step."""
    from crispops.orchestration.cache import clear

    s = settings(project)
    console.print(f"deleted {clear(s.cache_path)} entries from {s.cache_path}", highlight=False)
