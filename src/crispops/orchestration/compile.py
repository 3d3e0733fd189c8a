"""Compile the pipelines to KFP IR YAML for a cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from crispops.config import COMPONENT_IMAGE, Settings

PIPELINES = ("training", "materialization")


def _pin_images(path: Path, image: str) -> None:
    """Point every executor at the configured component image (same tag policy)."""
    if image == COMPONENT_IMAGE:
        return
    docs = list(yaml.safe_load_all(path.read_text()))
    for doc in docs:
        executors = (doc or {}).get("deploymentSpec", {}).get("executors", {})
        for spec in executors.values():
            container = spec.get("container")
            if container and container.get("image") == COMPONENT_IMAGE:
                container["image"] = image
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))


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
    raise KeyError(f"unknown pipeline {name!r}; known: {', '.join(PIPELINES)}")


def pipeline_function(name: str) -> Any:
    if name == "training":
        from pipelines.training import training_pipeline

        return training_pipeline
    if name == "materialization":
        from pipelines.materialization import materialization_pipeline

        return materialization_pipeline
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
    _pin_images(path, settings.cluster.component_image)
    return path


def compile_all(settings: Settings, out_dir: Path) -> dict[str, Path]:
    return {name: compile_pipeline(settings, name, out_dir) for name in PIPELINES}
