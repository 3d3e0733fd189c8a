"""``python -m bench startup``: each pipeline task's start-up, before its step does work.

A kfp.local task is a fresh ``_KFP_RUNTIME=true python -m kfp.dsl.executor_main``
process that runs the component function's source (copied out of components/). For
each step this starts the same kind of process and times, in it: the interpreter,
kfp's executor, ``kfp.dsl`` (the copied module's first lines), the step's own
imports (lifecycle + the step modules its task function imports first) and reading
its settings slice. Each figure is
the median of ``--repeat`` fresh processes, and so is ``exit``, the interpreter's
shutdown after the last line. The baseline columns are the same process without what
every component calls first (``lifecycle.task_started``: the garbage collector's final
sweeps skip the imported modules; ingest imports Feast without typeguard's
instrumentation), interleaved with it. It also says whether Feast
was imported: only ingest and materialize read Feast.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]

#: step -> the step modules its task function imports first
STEPS: dict[str, tuple[str, ...]] = {
    "ingest": ("crispops.steps.ingest", "crispops.contract", "feast"),  # it reads Feast
    "validate": ("crispops.steps.validate",),
    "explore": ("crispops.steps.explore",),
    "split": ("crispops.steps.split",),
    "select-features": ("crispops.steps.select_features",),
    "train": ("joblib", "crispops.steps.train"),
    "evaluate": ("joblib", "crispops.steps.evaluate"),
    "select-champion": (
        "joblib",
        "crispops.steps.evaluate",
        "crispops.steps.select_champion",
        "crispops.steps.train",
    ),
    "package": ("crispops.serving.packaging",),
}

#: steps whose component calls ``task_started(reads_feast=True)``
READS_FEAST = frozenset({"ingest"})

_PROBE = """
import sys, time, json
t0 = time.perf_counter()
import kfp.dsl.executor_main
t1 = time.perf_counter()
import importlib
from kfp import dsl  # what the ephemeral component module starts with
from kfp.dsl import *
t2 = time.perf_counter()
import crispops.lifecycle
if {freeze!r}:  # what each component calls first
    crispops.lifecycle.task_started(reads_feast={feast!r})
for m in {modules!r}:
    importlib.import_module(m)
t3 = time.perf_counter()
from crispops.step_settings import step_settings
step_settings({settings!r})
t4 = time.perf_counter()
print(json.dumps({{"kfp": t1 - t0, "component": t2 - t1, "step": t3 - t2, "settings": t4 - t3,
                  "feast": "feast" in sys.modules, "done": time.time()}}), flush=True)
"""


def probe(step: str, settings_text: str, *, freeze: bool = True) -> dict[str, float]:
    """One fresh process: its phases' seconds, ``exit`` (from its last line to its end:
    the interpreter's shutdown) and ``total``. ``freeze=False`` skips what components
    call first (``lifecycle.task_started``), to show the exit as it was without it."""
    code = _PROBE.format(
        modules=STEPS[step], settings=settings_text, freeze=freeze, feast=step in READS_FEAST
    )
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={**_env()},
    )
    ended = time.time()
    wall = time.perf_counter() - started
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    exit_s = max(ended - data.pop("done"), 0.0)
    inner = data["kfp"] + data["component"] + data["step"] + data["settings"]
    return {
        **data,
        "interpreter": max(wall - inner - exit_s, 0.0),
        "exit": exit_s,
        "total": wall,
    }


def _env() -> dict[str, str]:
    import os

    # kfp's component command sets _KFP_RUNTIME=true: kfp then skips importing its client.
    return {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}", "_KFP_RUNTIME": "true"}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench startup", description=__doc__)
    parser.add_argument("--repeat", type=int, default=3, help="fresh processes per step")
    args = parser.parse_args(argv)

    from crispops.config import load_settings
    from crispops.step_settings import settings_json

    settings = load_settings(ROOT)
    table = Table(
        title=f"task start-up and exit, seconds (median of {args.repeat} fresh processes)"
    )
    for col in ("step", "interpreter", "kfp executor", "kfp.dsl", "step imports"):
        table.add_column(col, justify="right" if col != "step" else "left")
    for col in ("settings", "exit", "total", "feast imported", "baseline: exit", "total"):
        table.add_column(col, justify="right")
    for step in STEPS:
        text = settings_json(settings, step)
        runs, before = [], []
        for _ in range(args.repeat):  # interleaved, so both see the same machine
            runs.append(probe(step, text))
            before.append(probe(step, text, freeze=False))

        def med(key: str, runs: list[dict[str, float]] = runs) -> str:
            return f"{statistics.median(r[key] for r in runs):.2f}"

        table.add_row(
            step,
            med("interpreter"),
            med("kfp"),
            med("component"),
            med("step"),
            med("settings"),
            med("exit"),
            med("total"),
            "yes" if runs[0]["feast"] else "no",
            med("exit", before),
            med("total", before),
        )
    Console(width=160).print(table)
    return 0
