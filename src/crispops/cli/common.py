"""What every command shares: the consoles, the --project option, settings loading and
the one place errors become messages and exit codes."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from crispops.config import Settings, bundled_demo_dir, env, load_settings
from crispops.errors import CrispopsError, UserError

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_FAILED",
    "EXIT_NOT_WORTH_SERVING",
    "EXIT_OK",
    "ProjectOpt",
    "UserError",
    "console",
    "err",
    "find_overlay",
    "handle_errors",
    "settings",
]

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

#: Exit codes, the same for every command (the README's run section lists them):
#: 0 success; 1 a failed run or check, nothing to show (`crispops champion` with no
#: champion) or an internal error; 2 bad input (arguments, settings, files); 3 a
#: training run that completed but had no candidate worth serving (none beat the
#: trivial baseline by training.baseline_margin, or reached training.min_score).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_NOT_WORTH_SERVING = 3


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
        except CrispopsError as exc:
            if env("CRISPOPS_DEBUG"):
                raise
            err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
            raise typer.Exit(EXIT_BAD_INPUT) from None
        except Exception as exc:
            if env("CRISPOPS_DEBUG"):
                raise
            err.print(
                f"[bold red]internal error:[/] {type(exc).__name__}: "
                f"{escape(str(exc))}\n"
                "Run again with CRISPOPS_DEBUG=1 for the traceback.",
                highlight=False,
            )
            raise typer.Exit(EXIT_FAILED) from None

    return wrapper  # type: ignore[return-value]


def settings(project: Path | None) -> Settings:
    """The project's Settings (the current directory's, else the bundled demo's)."""
    if project is not None and not project.is_dir():
        raise UserError(f"--project {project}: not a directory")
    return load_settings(project)


def find_overlay(s: Settings, overlay: str) -> Path:
    """The kustomize overlay named ``overlay``: the project's, else the bundled demo's."""
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
