"""Reliability benchmark (issue 7): try every fault the platform must survive, one table.

Run it from the repository root (about 6 minutes on 2 cores; Redis on 127.0.0.1:6379)::

    .venv/bin/python -m bench reliability [--load-seconds 60] [--quick] [--only data,load]

It builds its own small demo project in a temporary directory (200 customers, 150 days,
seed 11: the integration tests' data), applies and materializes its features and trains
a first champion with the tests' fast candidates; every case then works on a private copy.
The table has one row per case: what was tried, what happened, the figures measured
(requests sent, 5xx seen, p99 latency, rows compared, seconds) and whether the row holds.
The exit code is 0 iff every row holds. Case groups (``--only`` takes a comma list):

``data``
    The 13 variants of the bad-data corpus (``support/corpus.py``). Each must stop the run
    at ``validate`` (``ingest`` for an empty file), the report must name the column and
    the rule, no Bento may be built and the champion must stay as it was. "rows
    compared" is the number of label rows the validation report judged.
``promotion``
    A worse challenger (a one-iteration stump), a tie (the same candidates on the same
    data) and a challenger better by less than the margin (the champion swapped for a
    constant model, promotion_margin 0.5) never replace the champion, nor do candidates
    at chance (the label shuffled: none beats the trivial baseline); a crash in
    ``package``, after ``select-champion`` promoted, leaves the previous champion.
``fuzz``
    schemathesis over the served OpenAPI schema, 1,020 generated requests per endpoint
    (``/predict``, ``/predict_entity``): no 5xx, every 4xx names the problem, no traceback.
``load``
    The champion's Bento under a real ``bentoml serve``: capacity measured with ``hey -c
    16`` for 8 s, then ``--load-seconds`` (``--quick``: 10) at 80% of it. hey's ``-q`` is
    per connection and its pacing drops the ticks a slow answer overlaps, so a 5 s probe
    at the target rate scales ``-q`` until the achieved rate is the target. Holds with
    zero non-2xx answers, zero transport failures and an achieved rate of 70-90% of
    capacity; p50/p99 come from hey's per-request CSV. That CSV lists answered requests
    only, so BentoML's own request counter must equal the answers hey recorded. Then
    ``hey -c 400``
    for 5 s against a server limited to 32 requests in flight: it must shed with 503s
    and no other 5xx, then answer 20 calm requests with 200 and still be running.
``materialization``
    On SQLite and on Redis: materialization SIGKILLed three times (between the views, at
    0.05 s, at 0.3 s), then run to completion, must leave online values equal to the
    offline latest (``crispops features check``); materializing again, incrementally and
    as an explicit replay of the whole window, must change no online value.
``restarts``
    The model server killed with SIGKILL (workers included) answers again once started;
    ``crispops run`` killed as ``train`` starts promotes nothing, and run again completes
    with a champion whose model file, Bento and run agree.

The scenarios are the integration tests' (``tests/integration/test_bad_data.py``,
``test_pipeline.py``, ``test_reliability.py``, ``test_serving_fuzz.py``), with the
helpers both share in ``support/``. Every loop is bounded in count and time, and every
server and subprocess this command starts is stopped at the end, also on errors, Ctrl-C
and SIGTERM.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench._reliability_cases import CASES, GROUPS, Row, Workspace, fmt_ms, setup
from bench._util import consoles, interrupt_on_signals

if TYPE_CHECKING:
    from rich.console import Console

DEFAULT_LOAD_SECONDS = 60.0
QUICK_LOAD_SECONDS = 10.0


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench reliability",
        description="Issue 7's reliability cases: bad data, promotion, fuzzing, load, "
        "materialization and restarts, with figures, in one table.",
    )
    p.add_argument(
        "--load-seconds",
        type=float,
        default=None,
        help=f"seconds of load at 80%% of capacity (default {DEFAULT_LOAD_SECONDS:g})",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"shorten the load phase to {QUICK_LOAD_SECONDS:g} s (nothing else is skipped)",
    )
    p.add_argument(
        "--only",
        default=",".join(GROUPS),
        metavar="CASES",
        help=f"comma list of case groups (default: all): {', '.join(GROUPS)}",
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary projects and logs")
    args = p.parse_args(argv)
    groups = [g.strip() for g in args.only.split(",") if g.strip()]
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown or not groups:
        p.error(f"--only: unknown case group(s) {', '.join(unknown) or '(none)'}")
    args.groups = [g for g in GROUPS if g in groups]
    if args.load_seconds is None:
        args.load_seconds = QUICK_LOAD_SECONDS if args.quick else DEFAULT_LOAD_SECONDS
    elif args.quick:
        args.load_seconds = min(args.load_seconds, QUICK_LOAD_SECONDS)
    if args.load_seconds <= 0:
        p.error("--load-seconds must be positive")
    return args


def _mark(row: Row) -> str:
    return "[green]holds[/]" if row.holds else "[bold red]FAILS[/]"


def _n(x: int | None) -> str:
    return "—" if x is None else f"{x:,}"


def outcome_text(row: Row) -> str:
    text = row.outcome
    if row.error:
        text = f"{text}; " if text else ""
        text += f"[red]error: {row.error}[/]"
    if row.failed:
        text += f"\n[red]not met: {'; '.join(row.failed)}[/]"
    return text


def table(rows: list[Row], seconds: float) -> Any:
    from rich.table import Table

    held = sum(r.holds for r in rows)
    t = Table(
        title=f"crispops reliability: {held} of {len(rows)} rows hold ({seconds:.0f} s)",
        caption="5xx: server errors seen (503s included for overload); rows compared: label "
        "rows judged (data), values compared online vs offline (materialization)",
        show_lines=True,
    )
    t.add_column("case")
    t.add_column("tried", ratio=3)
    t.add_column("outcome", ratio=3)
    t.add_column("requests", justify="right")
    t.add_column("5xx", justify="right")
    t.add_column("p99 ms", justify="right")
    t.add_column("rows compared", justify="right")
    t.add_column("s", justify="right")
    t.add_column("holds", justify="center")
    for r in rows:
        t.add_row(
            f"[bold]{r.group}[/]\n{r.case}",
            r.tried,
            outcome_text(r),
            _n(r.requests),
            _n(r.server_errors),
            fmt_ms(r.p99_ms),
            _n(r.compared),
            f"{r.seconds:.1f}",
            _mark(r),
        )
    return t


def run(args: argparse.Namespace, ws: Workspace, log: Console) -> None:
    log.print("[bold]setup[/]")
    setup(ws, args.groups)
    for group in args.groups:
        log.print(f"[bold]{group}[/]")
        try:
            CASES[group](ws)
        except Exception as exc:  # outside any case: the group's own setup failed
            with ws.case(group, "(setup)", f"set up the {group} cases") as row:
                row.error = f"{type(exc).__name__}: {exc}"


def main(argv: list[str]) -> int:

    args = parse_args(argv)
    out, log = consoles(width=200)
    interrupt_on_signals()

    def progress(row: Row) -> None:
        log.print(f"  {_mark(row)} {row.group} / {row.case} ({row.seconds:.1f} s)")

    tmp = Path(tempfile.mkdtemp(prefix="crispops-reliability-"))
    ws = Workspace(tmp, args.load_seconds, progress)
    log.print(
        f"reliability cases: {', '.join(args.groups)}; load {args.load_seconds:g} s; work dir {tmp}"
    )
    started = time.monotonic()
    interrupted = False
    try:
        run(args, ws, log)
    except KeyboardInterrupt:
        interrupted = True
        log.print("[red]interrupted[/]: servers and subprocesses stopped")
    finally:
        ws.close()
        if args.keep or interrupted:
            log.print(f"work dir kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.monotonic() - started
    out.print(table(ws.rows, elapsed))
    if interrupted:
        return 130
    return 0 if ws.rows and all(r.holds for r in ws.rows) else 1
