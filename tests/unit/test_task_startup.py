"""A pipeline task is a fresh process: it imports only what its step uses, and exits
without the garbage collector walking every imported object (lifecycle.task_started).

Each check runs in a fresh interpreter, since this test process has imported them all."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("pandas", "sklearn", "scipy", "matplotlib", "pandera", "feast", "bentoml")


def fresh(code: str) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter; it prints one JSON line, returned."""
    env = {"PYTHONPATH": f"{ROOT / 'src'}:{ROOT}", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def imported_by(module: str) -> set[str]:
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    loaded = set(fresh(code))  # type: ignore[arg-type]
    return {h for h in HEAVY if h in loaded}


@pytest.mark.parametrize(
    ("module", "allowed"),
    [
        # what every component imports first: nothing heavy, each task pays for its own
        ("crispops.lifecycle", set()),
        ("crispops.step_settings", set()),
        ("crispops.registry", set()),  # the package task: no pandas
        ("crispops.serving.packaging", set()),
        ("crispops.steps.split", {"pandas"}),
        ("crispops.steps.ingest", {"pandas"}),  # Feast when the task opens the store
        ("crispops.steps.validate", {"pandas"}),  # pandera when it builds the schema
        ("crispops.monitoring.drift", {"pandas", "scipy"}),  # select-champion: no pandera
        ("crispops.steps.select_champion", set()),
        ("crispops.steps.train", {"pandas", "sklearn", "scipy"}),
        ("crispops.steps.evaluate", {"pandas", "sklearn", "scipy"}),
        ("crispops.steps.select_features", {"pandas", "sklearn", "scipy"}),
        ("crispops.steps.explore", {"pandas", "sklearn", "scipy", "matplotlib"}),
    ],
)
def test_a_step_module_imports_only_what_its_task_uses(module: str, allowed: set[str]) -> None:
    heavy = imported_by(module)
    assert heavy <= allowed, f"{module} imports {sorted(heavy - allowed)} at import time"


def test_task_started_freezes_the_collector_now_and_at_exit() -> None:
    data = fresh(
        "import atexit, gc, json\n"
        "from crispops.lifecycle import task_started\n"
        "before = gc.get_freeze_count()\n"
        "task_started()\n"
        "now = gc.get_freeze_count()\n"
        "late = [[i] for i in range(1000)]  # objects made after: frozen at exit\n"
        "atexit._run_exitfuncs()\n"
        "print(json.dumps({'before': before, 'now': now, 'exit': gc.get_freeze_count()}))\n"
    )
    assert data["before"] == 0
    assert data["now"] > 0  # type: ignore[operator]
    assert data["exit"] >= data["now"] + 1000  # type: ignore[operator]


def test_a_task_that_reads_feast_imports_it_without_typeguard_instrumentation() -> None:
    code = (
        "import json, sys\n"
        "from crispops.lifecycle import task_started\n"
        "task_started(reads_feast={reads})\n"
        "from feast.feature_view import FeatureView\n"
        "names = FeatureView.__init__.__code__.co_names\n"
        "print(json.dumps({{'checked': 'check_argument_types_internal' in names}}))\n"
    )
    assert fresh(code.format(reads=True)) == {"checked": False}
    assert fresh(code.format(reads=False)) == {"checked": True}  # other tasks: untouched


FEAST_STEPS = {"ingest", "plan_chunks", "read_chunk", "write_chunks"}


@pytest.mark.parametrize(
    "component", sorted(p.stem for p in (ROOT / "components").glob("*.py") if p.stem[0] != "_")
)
def test_every_component_starts_its_task_with_task_started(component: str) -> None:
    """Each component's first statement after its imports is task_started(), with
    reads_feast exactly for the steps that read Feast."""
    import ast

    tree = ast.parse((ROOT / "components" / f"{component}.py").read_text())
    func = next(n for n in tree.body if isinstance(n, ast.FunctionDef))
    body = [n for n in func.body if not isinstance(n, ast.Import | ast.ImportFrom)]
    body = [n for n in body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
    first = body[0]
    assert isinstance(first, ast.Expr) and isinstance(first.value, ast.Call), component
    call = first.value
    assert isinstance(call.func, ast.Name) and call.func.id == "task_started", component
    feast = any(k.arg == "reads_feast" and getattr(k.value, "value", False) for k in call.keywords)
    assert feast == (component in FEAST_STEPS), component
