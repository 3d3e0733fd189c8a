"""Each pipeline step's slice of the settings: what its component takes as input.

A component receives one small JSON, ``settings``, holding only the settings its step
reads (``STEP_SETTINGS``), never the whole settings object. So a change to one
candidate's grid or to the serving port leaves the inputs of ingest, validate and
explore unchanged, and KFP's cache on a cluster (and crispops' own locally) keeps
their results. The pipeline takes one parameter per step, ``<step>_settings``, which
the KFP UI shows and lets a run override.

Adding a component: list the fields its step reads under its name in
``STEP_SETTINGS``, give the component a ``settings: str`` parameter and call
``step_settings(settings)`` in its body; pass it ``settings=<step>_settings`` in the
pipeline and add ``<step>_settings: str`` to the pipeline's signature.
``pipeline_settings`` fills every ``<step>_settings`` argument.

``step_settings`` rebuilds a partial Settings: a field the slice does not carry is
missing (AttributeError on access), so a step that starts reading a new setting
fails in the tests until the setting is listed here.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, TypeAdapter

from crispops.config import Settings

#: Top-level fields, then per section the fields each step reads. ``project_dir`` and
#: ``state_dir`` resolve relative paths (the label file, the repo, the champion).
STEP_SETTINGS: dict[str, dict[str, tuple[str, ...]]] = {
    "materialize": {
        "": ("project_dir", "state_dir"),
        "feature_store": ("repo_path", "materialize_chunk"),
    },
    "ingest": {
        "": ("project_dir",),
        "data": ("label_source", "entity", "timestamp", "label", "request_features"),
        "feature_store": ("repo_path", "feature_service"),
        "validation": ("rules", "columns"),
    },
    "validate": {
        "": ("project_dir", "state_dir"),
        "data": ("entity", "timestamp", "label", "task", "min_rows"),
        "validation": ("rules", "columns"),
    },
    "explore": {
        "data": ("entity", "timestamp", "label", "task"),
        "feature_store": ("feature_service",),
    },
    "split": {
        "data": ("timestamp", "label", "task"),
        "training": ("split", "test_fraction", "seed"),
    },
    "select-features": {
        "data": ("label", "task"),
        "training": ("feature_threshold", "seed"),
    },
    "train": {
        "data": ("label", "task"),
        "training": ("selection_metric", "cv_folds", "seed", "max_onehot_categories"),
    },
    "evaluate": {"data": ("label", "task")},
    "select-champion": {
        "": ("project_dir", "state_dir"),
        "data": ("label", "task"),
        "training": ("selection_metric", "promotion_margin", "baseline_margin", "min_score"),
    },
    "package": {
        "": ("project_dir", "state_dir"),
        "data": ("task",),
        "feature_store": ("feature_service",),
    },
}


def parameter_name(step: str) -> str:
    """The pipeline parameter that carries ``step``'s slice: ``select_features_settings``."""
    return f"{step.replace('-', '_')}_settings"


def settings_slice(settings: Settings, step: str) -> dict[str, Any]:
    """The settings ``step`` reads, JSON-able (paths absolute where they resolve)."""
    if step not in STEP_SETTINGS:
        raise KeyError(f"no settings slice for step {step!r}; known: {', '.join(STEP_SETTINGS)}")
    full = json.loads(settings.to_json())
    out: dict[str, Any] = {}
    for section, names in STEP_SETTINGS[step].items():
        source = full if not section else full[section]
        picked = {name: source[name] for name in names}
        if section:
            out[section] = picked
        else:
            out.update(picked)
    return out


def settings_json(settings: Settings, step: str) -> str:
    return json.dumps(settings_slice(settings, step), sort_keys=True)


def pipeline_settings(settings: Settings, steps: list[str] | None = None) -> dict[str, str]:
    """``{<step>_settings: slice JSON}`` for every step (or the ones named)."""
    return {parameter_name(s): settings_json(settings, s) for s in steps or list(STEP_SETTINGS)}


@cache
def _adapter(model: type[BaseModel], name: str) -> TypeAdapter[Any]:
    field = model.model_fields[name]
    kind: Any = field.annotation
    return TypeAdapter(Annotated[(kind, *field.metadata)] if field.metadata else kind)


def _only(obj: BaseModel, names: set[str]) -> Any:
    # model_construct fills defaults: drop them, so reading an unlisted field fails
    # rather than silently seeing a default in place of the project's value.
    for name in type(obj).model_fields:
        if name not in names:
            obj.__dict__.pop(name, None)
    return obj


def _partial(model: type[BaseModel], values: dict[str, Any]) -> Any:
    checked = {k: _adapter(model, k).validate_python(v) for k, v in values.items()}
    return _only(model.model_construct(_fields_set=set(checked), **checked), set(checked))


def step_settings(text: str) -> Settings:
    """A Settings holding only a slice's fields (each checked against its type)."""
    data = json.loads(text)
    top: dict[str, Any] = {}
    for key, value in data.items():
        field = Settings.model_fields[key]
        if (
            isinstance(value, dict)
            and isinstance(field.annotation, type)
            and issubclass(field.annotation, BaseModel)
        ):
            top[key] = _partial(field.annotation, value)
        else:
            top[key] = _adapter(Settings, key).validate_python(value)
    if "project_dir" in top:
        top["project_dir"] = Path(top["project_dir"])
    return _only(Settings.model_construct(_fields_set=set(top), **top), set(top))
