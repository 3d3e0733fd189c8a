"""Run the pipelines through KFP's local runner, with a progress display."""

from __future__ import annotations

import concurrent.futures
import contextlib
import io
import logging
import re
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from crispops.config import Settings
from crispops.io import read_json
from crispops.steps import Step

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_START = re.compile(r"Executing task '([^']+)'")
_END = re.compile(r"Task '([^']+)' finished with status (\w+)")


class _ProgressTee(io.TextIOBase):
    """Write KFP's log to a file and report task starts and ends as they stream by."""

    def __init__(self, log: TextIO, on_event: Callable[[str, str, str], None]) -> None:
        self.log = log
        self.on_event = on_event
        self.buffer_ = ""
        self.lock = threading.RLock()  # parallel tasks log from several threads

    def write(self, s: str) -> int:
        with self.lock:
            return self._write(s)

    def _write(self, s: str) -> int:
        if self.log.closed:  # a handler kept after the run: nothing left to record
            return len(s)
        self.log.write(s)
        self.buffer_ += s
        while "\n" in self.buffer_:
            line, self.buffer_ = self.buffer_.split("\n", 1)
            plain = _ANSI.sub("", line)
            if m := _START.search(plain):
                self.on_event("start", m.group(1), "")
            elif m := _END.search(plain):
                self.on_event("end", m.group(1), m.group(2))
        return len(s)

    def flush(self) -> None:
        self.log.flush()


@dataclass
class RunResult:
    run_id: str
    root: Path
    log: Path
    ok: bool
    seconds: float
    steps: list[tuple[str, str, float]] = field(default_factory=list)  # name, status, seconds
    starts: dict[str, list[float]] = field(default_factory=dict)  # task -> wall-clock starts
    failed_step: str | None = None
    error: str = ""
    cached: list[tuple[str, float]] = field(default_factory=list)  # task, seconds saved

    def artifact(self, task: str, name: str) -> Path | None:
        hits = sorted(self.root.glob(f"*/{task}/{name}"))
        return hits[0] if hits else None

    def artifacts(self, task_prefix: str, name: str) -> list[Path]:
        return sorted(self.root.glob(f"*/**/{task_prefix}*/{name}"))

    def spans(self) -> dict[str, list[tuple[float, float]]]:
        """(start, end) wall-clock times per step name, one per instance: each from its
        start in the log to its executor output's write, since the log can drop a
        'finished' line."""
        ends: dict[str, list[float]] = {}
        for p in self.root.glob("*/**/executor_output.json"):
            ends.setdefault(p.parent.name, []).append(p.stat().st_mtime)
        return {
            task: list(zip(sorted(self.starts.get(task, [])), sorted(finished), strict=False))
            for task, finished in ends.items()
        }

    def task_seconds(self) -> dict[str, float]:
        """Seconds per step name, summed over instances (:meth:`spans`)."""
        return {
            task: sum(max(end - start, 0.0) for start, end in spans)
            for task, spans in self.spans().items()
        }

    def output(self, task: str, name: str = "Output") -> Any:
        """A task's output parameter (a component's return value is ``Output``), parsed
        as JSON when it is JSON (None: the task did not finish)."""
        import json

        hits = sorted(self.root.glob(f"*/{task}/executor_output.json"))
        if not hits:
            return None
        value = read_json(hits[0]).get("parameterValues", {}).get(name)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return json.loads(value)
        return value

    def chunk_reads(self) -> list[dict[str, Any]]:
        """The materialization pipeline's read-chunk outputs: each chunk's metadata."""
        out = []
        for p in sorted(self.root.glob("*/**/read-chunk/executor_output.json")):
            for art in read_json(p).get("artifacts", {}).get("rows", {}).get("artifacts", []):
                out.append(dict(art.get("metadata", {})))
        return out

    def completed(self) -> list[str]:
        """Tasks that wrote their executor output (KFP's log can drop a parallel task's
        'finished' line, so the outputs on disk are the record)."""
        return sorted(p.parent.name for p in self.root.glob("*/**/executor_output.json"))

    @property
    def findings(self) -> dict[str, Any] | None:
        """validate's findings: warnings, features left out, ingest's row accounting."""
        path = self.artifact(Step.VALIDATE, "findings")
        return read_json(path) if path else None

    @property
    def decision(self) -> dict[str, Any] | None:
        path = self.artifact(Step.SELECT_CHAMPION, "decision")
        return read_json(path) if path else None


def new_run_id() -> str:
    return datetime.now(UTC).strftime("run-%Y%m%d-%H%M%S")


@contextlib.contextmanager
def _redirect(stream: io.TextIOBase) -> Iterator[None]:
    old_out, old_err = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = stream
    try:
        yield
    finally:
        sys.stdout, sys.stderr = old_out, old_err


def run_training(
    settings: Settings,
    *,
    run_id: str | None = None,
    on_event: Callable[[str, str, str], None] | None = None,
    runner: str = "subprocess",
    cache: bool | None = None,
) -> RunResult:
    """Run pipelines/training.py on this machine; never raises for a failed step.

    ``cache`` (default: ``settings.cache.enabled``) serves unchanged steps from the
    step cache (orchestration/cache.py) instead of running them."""
    from crispops.orchestration.compile import pipeline_arguments
    from pipelines.training import training_pipeline

    run_id = run_id or new_run_id()
    arguments = {**pipeline_arguments(settings, "training"), "run_id": run_id}
    return _run(settings, training_pipeline, arguments, run_id, on_event, runner, cache)


def run_materialization(
    settings: Settings,
    *,
    run_id: str | None = None,
    on_event: Callable[[str, str, str], None] | None = None,
    runner: str = "subprocess",
    end: datetime | None = None,
) -> RunResult:
    """Run pipelines/materialization.py on this machine, against the local
    feature_store.yaml, up to ``end`` (default: now); never raises for a failed task.
    Its tasks are never served from the step cache (orchestration/cache.py, UNCACHED):
    a read chunk is reused only through its own record (crispops.steps.chunks)."""
    from crispops.orchestration.compile import pipeline_arguments
    from pipelines.materialization import materialization_pipeline

    run_id = run_id or new_run_id()
    arguments = {
        **pipeline_arguments(settings, "materialization"),
        "config_file": "",  # this machine's feature_store.yaml, not the cluster's
        "end": end.isoformat() if end else "",
    }
    return _run(settings, materialization_pipeline, arguments, run_id, on_event, runner, None)


def _run(
    settings: Settings,
    pipeline: Any,
    arguments: dict[str, Any],
    run_id: str,
    on_event: Callable[[str, str, str], None] | None,
    runner: str,
    cache: bool | None,
) -> RunResult:
    from kfp import local

    root = settings.state_path / "runs" / run_id
    root.mkdir(parents=True, exist_ok=True)
    log_path = root / "pipeline.log"
    starts: dict[str, float] = {}
    result = RunResult(run_id, root, log_path, ok=False, seconds=0.0)

    def event(kind: str, task: str, status: str) -> None:
        now = time.perf_counter()
        if kind == "start":
            starts[task] = now
            result.starts.setdefault(task, []).append(time.time())
        else:
            took = now - starts.get(task, now)
            result.steps.append((task, status, took))
            if status != "SUCCESS" and result.failed_step is None:
                result.failed_step = task
        if on_event:
            on_event(kind, task, status)

    step_cache = None
    if settings.cache.enabled if cache is None else cache:
        from crispops.orchestration.cache import Hit, StepCache

        def hit(found: Hit) -> None:
            result.cached.append((found.task, found.seconds_saved))
            if on_event:
                on_event("cached", found.task, f"{found.seconds_saved:.1f}")

        step_cache = StepCache(settings, root, on_hit=hit)

    containers = contextlib.ExitStack()
    if runner == "docker":
        # Every step in the components' image; raises ContainerError before the run when
        # no Docker API answers or the image is not built.
        from crispops.orchestration.docker import docker_api

        runner_args = containers.enter_context(docker_api(settings, run_id))
        kfp_runner: Any = local.DockerRunner(**runner_args)
    else:
        kfp_runner = local.SubprocessRunner(use_venv=False)
    started = time.perf_counter()
    with containers, log_path.open("w", encoding="utf-8") as log, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tee = _ProgressTee(log, event)
        with _redirect(tee):
            try:
                local.init(
                    runner=kfp_runner,
                    pipeline_root=str(root),
                    raise_on_error=True,
                    enable_caching=step_cache is not None,
                    cache_root=str(step_cache.entries) if step_cache else None,
                )
                if step_cache is not None:
                    _install(step_cache)
                with _print_indented_per_thread(), _side_tasks_beside():
                    pipeline(**arguments)
                result.ok = True
            except Exception as exc:  # a failed task: reported, never a traceback
                result.error = _ANSI.sub("", str(exc)).strip()
    _drop_handlers_on(tee)
    result.seconds = time.perf_counter() - started
    if not result.ok and result.failed_step is None:
        result.failed_step = _failed_task(result.error)
    return result


@contextlib.contextmanager
def _print_indented_per_thread() -> Iterator[None]:
    """kfp.local's ``indented_print`` (around each task, for its log) made safe for
    tasks that run at once: the ParallelFor's iterations and the side tasks.

    Its own replaces ``builtins.print`` with a wrapper of whatever print was there, and
    puts that back at its end: two tasks that overlap leave one of their wrappers
    installed for good, and each wrapper calls the print under it twice (the indent,
    then the text). In one process that ran many pipelines (the test suite; a notebook)
    the layers piled up: after ~16 of them every line a task logged cost 2^16 calls,
    and a training run that takes 80 s took 9 minutes. Here one wrapper is installed
    for the run, and each thread keeps its own indent."""
    import builtins

    from kfp.local import logging_utils

    indent = threading.local()
    printing, kfp_indented = builtins.print, logging_utils.indented_print

    def print_(*args: Any, **kwargs: Any) -> None:
        spaces = getattr(indent, "spaces", 0)
        if spaces:
            printing(" " * spaces, end="", file=kwargs.get("file"))
        printing(*args, **kwargs)

    @contextlib.contextmanager
    def indented(num_spaces: int = 4) -> Iterator[None]:
        before = getattr(indent, "spaces", 0)
        indent.spaces = before + num_spaces
        try:
            yield
        finally:
            indent.spaces = before

    builtins.print, logging_utils.indented_print = print_, indented
    try:
        yield
    finally:
        builtins.print, logging_utils.indented_print = printing, kfp_indented


@contextlib.contextmanager
def _side_tasks_beside() -> Iterator[None]:
    """Run the pipeline's side tasks beside the others, as a cluster does.

    kfp.local runs a DAG's tasks one after another (only a ParallelFor's iterations run
    at once). In a pipeline with control flow (a loop or a condition, which kfp.local
    runs with its enhanced orchestrator: the training pipeline), a side task is a
    top-level component task that no other task waits for and whose outputs the
    pipeline does not return (the training pipeline's explore: its report is for
    people). Here it starts in a thread of its own as soon as the tasks it depends on
    have succeeded, and the pipeline goes on; the run ends when it ends, and fails when
    it fails, after the rest ran, as on a Kubeflow cluster. On 2 cores that takes
    explore (4-6 s) off the critical path."""
    from kfp.local import status
    from kfp.local.orchestrator import enhanced_dag_orchestrator as dag

    run_dag, execute_task = dag.run_enhanced_dag, dag.execute_task
    side: dict[str, Any] = {}  # name -> task spec, for the top-level DAG's side tasks
    done: set[str] = set()  # top-level tasks that succeeded
    started: dict[str, concurrent.futures.Future[Any]] = {}
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="side-task")

    def run_enhanced_dag(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("parent_io_store") is not None:  # a nested DAG: as kfp.local runs it
            return run_dag(*args, **kwargs)
        side.update(_side_tasks(kwargs["dag_component_spec"], kwargs["components"]))
        try:
            outputs, dag_status = run_dag(*args, **kwargs)
            for task, future in started.items():
                try:
                    _, task_status = future.result()
                except Exception as exc:  # the task's own failure, reported as the others'
                    logging.getLogger(__name__).error("Task %s failed: %s", task, exc)
                    task_status = status.Status.FAILURE
                if task_status != status.Status.SUCCESS:
                    kwargs["fail_stack"].append(task)
                    outputs, dag_status = {}, status.Status.FAILURE
            return outputs, dag_status
        finally:
            side.clear()
            done.clear()
            started.clear()

    def start(name: str, kwargs: dict[str, Any]) -> None:
        if name not in started:
            task = {**kwargs, "task_name": name, "task_spec": side[name]}
            started[name] = pool.submit(execute_task, **task)

    def execute(**kwargs: Any) -> Any:
        name = kwargs["task_name"]
        if getattr(kwargs["io_store"], "_parent", True) is not None or not side:
            return execute_task(**kwargs)  # inside a loop or a nested DAG
        # every task that ran before this one has its outputs stored by now
        for other, spec in side.items():
            if set(spec.dependent_tasks) <= done:
                start(other, kwargs)
        if name in side:
            start(name, kwargs)  # its turn came first (its inputs are stored)
            return {}, status.Status.SUCCESS
        outputs, task_status = execute_task(**kwargs)
        if task_status == status.Status.SUCCESS:
            done.add(name)
        return outputs, task_status

    dag.run_enhanced_dag, dag.execute_task = run_enhanced_dag, execute
    try:
        yield
    finally:
        dag.run_enhanced_dag, dag.execute_task = run_dag, execute_task
        pool.shutdown(wait=True)


def _side_tasks(dag_component_spec: Any, components: Any) -> dict[str, Any]:
    """A DAG's component tasks that no other task depends on, that the DAG's outputs do
    not name and that have no condition or trigger policy: nothing waits for them."""
    dag_spec = dag_component_spec.dag
    needed = {d for spec in dag_spec.tasks.values() for d in spec.dependent_tasks}
    for art in dag_spec.outputs.artifacts.values():
        needed |= {s.producer_subtask for s in art.artifact_selectors}
    for par in dag_spec.outputs.parameters.values():
        needed.add(par.value_from_parameter.producer_subtask)
        needed |= {s.producer_subtask for s in par.value_from_oneof.parameter_selectors}
    return {
        name: spec
        for name, spec in dag_spec.tasks.items()
        if name not in needed
        and not spec.WhichOneof("iterator")
        and not spec.trigger_policy.condition
        and not spec.trigger_policy.strategy
        and components[spec.component_ref.name].WhichOneof("implementation") == "executor_label"
    }


def _install(step_cache: Any) -> None:
    """Make kfp.local's task executor use our cache: it asks ``get_local_cache()``,
    which keeps one cache per cache root in a module-level singleton."""
    from kfp.local import cache as kfp_cache
    from kfp.local import config

    cfg = config.LocalExecutionConfig.instance
    with kfp_cache._cache_singleton_lock:
        kfp_cache._cache_singleton = step_cache
        kfp_cache._cache_singleton_root = cfg.cache_root if cfg else step_cache.cache_root


def _drop_handlers_on(stream: io.TextIOBase) -> None:
    """kfp.local binds logging handlers to the stdout of its run (our tee); remove any
    that outlive the run so later log records do not go to a closed file."""
    import logging

    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        if not isinstance(logger, logging.Logger):
            continue
        for handler in list(logger.handlers):
            if getattr(handler, "stream", None) is stream:
                logger.removeHandler(handler)


def _failed_task(message: str) -> str | None:
    m = re.search(r"[Tt]ask '([^']+)'", message)
    return m.group(1) if m else None
