"""Compile the pipelines to KFP IR YAML for a cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from crispops.config import COMPONENT_IMAGE, Settings

PIPELINES = ("training", "materialization", "monitoring")


#: Tasks whose result depends on more than their inputs: ingest reads the warehouse and
#: the feature repo, validate and select-champion the current champion, monitor the
#: prediction log and the clock, plan-chunks the registry's watermarks and the clock,
#: read-chunk the offline store; package and write-chunks write outside their outputs.
#: KFP's cache on a cluster keys only on a task's inputs, so it must never serve these
#: (locally, crispops' step cache fingerprints the data and the champion instead).
UNCACHED_ON_CLUSTER = frozenset(
    {
        "ingest",
        "validate",
        "select-champion",
        "package",
        "monitor",
        "plan-chunks",
        "read-chunk",
        "write-chunks",
    }
)


def _finish(path: Path, image: str) -> None:
    """Point every executor at the configured component image (same tag policy) and turn
    KFP's cache off for the tasks in ``UNCACHED_ON_CLUSTER``."""
    text = path.read_text()
    header = "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))
    docs = list(yaml.safe_load_all(text))
    for doc in docs:
        executors = (doc or {}).get("deploymentSpec", {}).get("executors", {})
        for spec in executors.values():
            container = spec.get("container")
            if container and image != COMPONENT_IMAGE and container.get("image") == COMPONENT_IMAGE:
                container["image"] = image
        dags = [(doc or {}).get("root", {}).get("dag", {})]
        dags += [c["dag"] for c in (doc or {}).get("components", {}).values() if "dag" in c]
        for dag in dags:  # the root, and the bodies of conditions and loops
            for task_name, task in dag.get("tasks", {}).items():
                if task_name in UNCACHED_ON_CLUSTER:
                    task["cachingOptions"] = {}  # enableCache absent: false
    # the comment header (# PIPELINE DEFINITION, its inputs) is what KFP's UI shows
    path.write_text(header + yaml.safe_dump_all(docs, sort_keys=False))


def pipeline_arguments(settings: Settings, name: str) -> dict[str, Any]:
    from crispops.lifecycle import candidate_items
    from crispops.step_settings import STEP_SETTINGS, pipeline_settings

    if name == "training":
        steps = [s for s in STEP_SETTINGS if s != "materialize"]
        return {**pipeline_settings(settings, steps), "candidates": candidate_items(settings)}
    if name == "materialization":
        return {
            **pipeline_settings(settings, ["materialize"]),
            "config_file": settings.feature_store.cluster_config,
        }
    if name == "monitoring":
        # The whole settings: with act, the monitor starts a training run, which reads
        # them all. A schedule acts on its decisions (once per model and window).
        return {"config": settings.to_json(), "window": settings.monitoring.window, "act": True}
    raise KeyError(f"unknown pipeline {name!r}; known: {', '.join(PIPELINES)}")


def pipeline_function(name: str) -> Any:
    if name == "training":
        from pipelines.training import training_pipeline

        return training_pipeline
    if name == "materialization":
        from pipelines.materialization import materialization_pipeline

        return materialization_pipeline
    if name == "monitoring":
        from pipelines.monitoring import monitoring_pipeline

        return monitoring_pipeline
    raise KeyError(f"unknown pipeline {name!r}; known: {', '.join(PIPELINES)}")


def compile_pipeline(settings: Settings, name: str, out_dir: Path) -> Path:
    from kfp import compiler

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.yaml"
    compiler.Compiler().compile(
        pipeline_function(name),
        package_path=str(path),
        pipeline_parameters=pipeline_arguments(settings, name),
    )
    _finish(path, settings.task_image)
    return path


def compile_all(settings: Settings, out_dir: Path) -> dict[str, Path]:
    return {name: compile_pipeline(settings, name, out_dir) for name in PIPELINES}
