"""scaffold: a new crispops project around your own tabular data (`crispops init`).

One Parquet or CSV file with an entity key, an event timestamp, a label and feature
columns becomes a project directory::

    crispops.toml                 settings; data.label_source is the labels file below
    feature_repo/
      feature_store.yaml          DuckDB offline, SQLite online, a local registry
      feature_store.cluster.yaml  Redis online, PostgreSQL registry
      .feastignore
      <project>_features.py       entity, source, feature view, FeatureService <project>_v1
      data/features.parquet       entity, event_timestamp (UTC) and every feature column
      data/labels.parquet         entity, timestamp (UTC) and label

Every column but the label is a feature. The training pipeline joins the label rows
with the features point-in-time; the timestamps are identical, so each label row gets
its own row's features.

The project is built in a hidden sibling directory and renamed into place at the end,
so a failure leaves nothing behind. Bad data raises :class:`~crispops.io.DataFileError`
naming the file and the column; an unusable target raises :class:`ScaffoldError`.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import keyword
import math
import os
import re
import secrets
import shutil
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

import numpy as np
import pandas as pd

from crispops.config import CONFIG_FILE, ClusterSettings, ServingSettings, load_settings
from crispops.errors import DataFileError, ScaffoldError
from crispops.io import read_table
from crispops.steps.ingest import FEAST_TS, to_utc

TASKS = ("binary", "multiclass", "regression")
SELECTION_METRIC = {"binary": "roc_auc", "multiclass": "macro_f1", "regression": "rmse"}

_FOREST: dict[str, Any] = {
    "name": "forest",
    "estimator": "random_forest",
    "search": {"n_estimators": [150], "max_depth": [8, 14], "min_samples_leaf": [5]},
}
_HGB: dict[str, Any] = {
    "name": "hgb",
    "estimator": "hist_gradient_boosting",
    "search": {"learning_rate": [0.05, 0.1], "max_iter": [150], "max_leaf_nodes": [15, 31]},
}
_CLASSIFIERS = [
    {"name": "logreg", "estimator": "logistic_regression", "search": {"C": [0.1, 1.0, 10.0]}},
    _FOREST,
    _HGB,
]
#: Default training candidates per task: small grids, quick on a laptop.
CANDIDATES: dict[str, list[dict[str, Any]]] = {
    "binary": _CLASSIFIERS,
    "multiclass": _CLASSIFIERS,
    "regression": [
        {"name": "ridge", "estimator": "ridge", "search": {"alpha": [0.1, 1.0, 10.0]}},
        _FOREST,
        _HGB,
    ],
}

REPO_DIR = "feature_repo"
FEATURES_FILE = "features.parquet"
LABELS_FILE = "labels.parquet"
#: Days added to the age of the oldest row to make the feature view's ttl.
TTL_MARGIN_DAYS = 30
#: Fewest rows a project may start with (Settings accepts data.min_rows >= 10).
MIN_ROWS = 10
DEFAULT_MIN_ROWS = 200
#: Column names Feast uses itself (the timestamp column may be called event_timestamp).
RESERVED_NAMES = frozenset({FEAST_TS, "created", "entity_row_id"})
FEAST_TYPES = ("Bool", "Float64", "Int64", "String")

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Names the generated module binds itself (an entity variable must not shadow them).
_MODULE_NAMES = frozenset({"timedelta", "Path", "DATA", "OWNER"})


@dataclass(frozen=True)
class ScaffoldResult:
    directory: Path
    features: list[str]
    feature_service: str
    rows: int


@dataclass(frozen=True)
class PreparedData:
    """The input split into the feature store's file and the label source."""

    features: pd.DataFrame  # entity, event_timestamp, feature columns
    labels: pd.DataFrame  # entity, timestamp, label
    feature_types: dict[str, str]  # feature -> Feast type name
    entity_type: str  # Feast ValueType member: INT64 or STRING
    oldest: pd.Timestamp

    @property
    def rows(self) -> int:
        return len(self.labels)


# Names ---------------------------------------------------------------------------------
def project_name(directory: Path | str) -> str:
    """A Feast project name from a directory name: lower case, [a-z0-9_], starts with a letter."""
    name = re.sub(r"[^a-z0-9_]+", "_", Path(directory).name.lower())
    name = re.sub(r"_+", "_", name).strip("_") or "project"
    return f"project_{name}" if name[0].isdigit() else name


def _entity_name(column: str) -> str:
    """customer_id -> customer: the Feast entity's name, as in Feast's templates."""
    base = column[:-3] if column.lower().endswith("_id") and len(column) > 3 else column
    return project_name(base) if base.strip("_") else "entity"


def _bad_name(name: str) -> str | None:
    """Why a column name cannot be a Feast field / Python identifier, or None."""
    if not _NAME.match(name):
        return "not letters, digits and underscores starting with a letter"
    if keyword.iskeyword(name):
        return "a Python keyword"
    if name.startswith("__"):
        return "starts with a double underscore"
    return None


# Types ---------------------------------------------------------------------------------
def _py_kind(cls: type) -> str | None:
    """The Feast type of one Python value's class, or None."""
    if issubclass(cls, bool | np.bool_):
        return "Bool"
    if issubclass(cls, int | np.integer):
        return "Int64"
    if issubclass(cls, float | np.floating):
        return "Float64"
    if issubclass(cls, str):
        return "String"
    return None


def _type_word(cls: type) -> str:
    if issubclass(cls, list | tuple | np.ndarray):
        return "list"
    if issubclass(cls, dict):
        return "dict"
    return cls.__name__


def feast_type(series: pd.Series) -> str:
    """The Feast type of a column: Bool, Int64, Float64 or String.

    Raise ValueError saying what the column holds when it is none of these (times,
    durations, lists, dicts, bytes, values of mixed types) or holds no values at all.
    """
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return feast_type(series.astype(object))
    if pd.api.types.is_bool_dtype(dtype):
        return "Bool"
    if pd.api.types.is_integer_dtype(dtype):
        if dtype == np.uint64 and series.notna().any() and int(series.max()) > 2**63 - 1:
            raise ValueError("integers beyond the signed 64-bit range")
        return "Int64"
    if pd.api.types.is_float_dtype(dtype):
        return "Float64"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        raise ValueError(
            "timestamps; only the timestamp column may hold times: derive a "
            "number such as the age in days, or drop it"
        )
    if pd.api.types.is_timedelta64_dtype(dtype):
        raise ValueError("durations; convert them to a number, e.g. seconds")
    if pd.api.types.is_complex_dtype(dtype):
        raise ValueError("complex numbers")
    if not (pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype)):
        # no square brackets: the CLI prints messages as rich markup
        raise ValueError(f"values of type {str(dtype).replace('[', '(').replace(']', ')')}")
    values = series.dropna()
    if values.empty:
        raise ValueError("no values")
    classes = set(map(type, values))
    kinds = {_py_kind(cls) for cls in classes}
    if kinds == {"Int64", "Float64"}:
        return "Float64"
    kind = next(iter(kinds))
    if len(kinds) == 1 and kind is not None:
        return kind
    words = sorted({_type_word(cls) for cls in classes})
    if len(words) == 1:
        raise ValueError(f"{words[0]} values")
    raise ValueError(f"values of mixed types ({', '.join(words)})")


def read_data(path: Path) -> pd.DataFrame:
    """Read the input table (crispops.io.read_table), keeping CSV text columns as text.

    pandas reads a large CSV in chunks and may type one chunk of a column as numbers
    and another as strings; such a column is read again as the strings the file holds.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pd.errors.DtypeWarning)  # handled below
        df = read_table(path)
    if path.suffix.lower() not in {".csv", ".txt"}:
        return df
    mixed = [
        c
        for c in df.columns
        if pd.api.types.is_object_dtype(df[c]) and len(set(map(type, df[c].dropna()))) > 1
    ]
    if not mixed:
        return df
    again = pd.read_csv(path, usecols=mixed, dtype=dict.fromkeys(mixed, str))
    return df.assign(**{c: again[c] for c in mixed})


def _canonical(series: pd.Series, kind: str) -> pd.Series:
    """The column in the one pandas dtype per Feast type that Parquet and Feast agree on."""
    nulls = bool(series.isna().any())
    if kind == "Float64":
        return series.astype("float64")
    if kind == "Int64":
        return series.astype("Int64" if nulls else "int64")
    if kind == "Bool":
        return series.astype("boolean" if nulls else "bool")
    return series.astype(object).where(series.notna(), None)


# Data ----------------------------------------------------------------------------------
def _quote(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names)


def prepare(
    df: pd.DataFrame,
    *,
    entity: str,
    timestamp: str,
    label: str,
    task: str,
    where: str,
    now: datetime | None = None,
) -> PreparedData:
    """Check the table and split it into features and labels; DataFileError names the column."""
    if task not in TASKS:
        raise ScaffoldError(f"--task {task!r}: choose {', '.join(TASKS)}")
    roles = {"--entity": entity, "--timestamp": timestamp, "--label": label}
    for a, b in (("--entity", "--timestamp"), ("--entity", "--label"), ("--timestamp", "--label")):
        if roles[a] == roles[b]:
            raise ScaffoldError(f"{a} and {b} both name column {roles[a]!r}; give each its own")
    columns = [str(c) for c in df.columns]
    dupes = sorted({c for c in columns if columns.count(c) > 1})
    if dupes:
        raise DataFileError(f"{where}: column name(s) repeated: {_quote(dupes)}")
    df = df.set_axis(columns, axis=1)
    missing = [f"{c!r} ({opt})" for opt, c in roles.items() if c not in columns]
    if missing:
        raise DataFileError(
            f"{where}: no column {', '.join(missing)}; the file has: {', '.join(columns)}"
        )
    bad = [f"{c!r} ({why})" for c in columns if (why := _bad_name(c))]
    bad += [f"{c!r} (reserved by Feast)" for c in columns if c in RESERVED_NAMES and c != timestamp]
    if bad:
        raise DataFileError(
            f"{where}: column name(s) that cannot be Feast field names: {'; '.join(bad)}. "
            "Rename them in the file (letters, digits and underscores)"
        )
    if len(df) < MIN_ROWS:
        raise DataFileError(f"{where}: {len(df)} row(s); a project needs at least {MIN_ROWS}")

    # timestamp
    raw_ts = df[timestamp]
    if pd.api.types.is_numeric_dtype(raw_ts) and not pd.api.types.is_bool_dtype(raw_ts):
        raise DataFileError(
            f"{where}: column {timestamp!r} (--timestamp) holds numbers, not timestamps; store "
            f"datetimes or ISO 8601 strings (for epoch seconds: "
            f"pd.to_datetime(df[{timestamp!r}], unit='s'))"
        )
    ts = to_utc(raw_ts, timestamp, where)
    if n := int(ts.isna().sum()):
        raise DataFileError(
            f"{where}: column {timestamp!r} (--timestamp): {n} row(s) have no timestamp; "
            "drop or fill them"
        )
    now_ts = pd.Timestamp(now or datetime.now(UTC))
    if now_ts.tzinfo is None:
        now_ts = now_ts.tz_localize("UTC")
    if n := int((ts > now_ts).sum()):
        raise DataFileError(
            f"{where}: column {timestamp!r} (--timestamp): {n} row(s) are later than now "
            f"(latest {ts.max():%Y-%m-%d %H:%M} UTC); the feature store cannot serve them"
        )

    # entity
    if n := int(df[entity].isna().sum()):
        raise DataFileError(
            f"{where}: column {entity!r} (--entity): {n} row(s) have no entity key; "
            "drop or fill them"
        )
    try:
        entity_kind = feast_type(df[entity])
    except ValueError as exc:
        entity_kind = f"holds {exc}"
    if entity_kind not in {"Int64", "String"}:
        shown = entity_kind if entity_kind.startswith("holds") else f"is {entity_kind}"
        raise DataFileError(
            f"{where}: column {entity!r} (--entity) must hold integers or strings, but {shown}"
        )
    entity_values = _canonical(df[entity], entity_kind)

    # label
    y = df[label]
    if n := int(y.isna().sum()):
        raise DataFileError(
            f"{where}: column {label!r} (--label): {n} row(s) have no label; drop or fill them"
        )
    try:
        label_kind = feast_type(y)
    except ValueError as exc:
        raise DataFileError(
            f"{where}: column {label!r} (--label) holds {exc}; a label must be numbers, "
            "booleans or strings"
        ) from None
    _check_label(y, label, label_kind, task, where)

    # features
    names = [c for c in columns if c not in roles.values()]
    if not names:
        raise DataFileError(
            f"{where}: no feature columns: the file has only the entity, timestamp and label "
            f"columns ({entity}, {timestamp}, {label})"
        )
    types: dict[str, str] = {}
    unsupported: list[str] = []
    empty: list[str] = []
    for name in names:
        if df[name].isna().all():
            empty.append(name)
            continue
        try:
            types[name] = feast_type(df[name])
        except ValueError as exc:
            unsupported.append(f"{name!r} ({exc})")
    if unsupported:
        raise DataFileError(
            f"{where}: column(s) of a type a feature cannot have: {'; '.join(unsupported)}. "
            "Features must be numbers, booleans or strings: convert or drop these columns"
        )
    if empty:
        raise DataFileError(f"{where}: column(s) {_quote(empty)} hold no values; drop them")

    repeated = int(pd.DataFrame({"e": entity_values, "t": ts}).duplicated(keep=False).sum())
    if repeated:
        raise DataFileError(
            f"{where}: {repeated} rows repeat an (entity, timestamp) pair of columns "
            f"{entity!r}, {timestamp!r}; the feature store keeps one row per entity and "
            "time: deduplicate them or make their timestamps distinct"
        )

    features = pd.DataFrame({entity: entity_values, FEAST_TS: ts})
    for name, kind in types.items():
        features[name] = _canonical(df[name], kind)
    labels = pd.DataFrame({entity: entity_values, timestamp: ts, label: _canonical(y, label_kind)})
    order = [FEAST_TS, entity]
    features = features.sort_values(order, kind="stable", ignore_index=True)
    labels = labels.sort_values([timestamp, entity], kind="stable", ignore_index=True)
    return PreparedData(
        features=features,
        labels=labels,
        feature_types=types,
        entity_type="INT64" if entity_kind == "Int64" else "STRING",
        oldest=ts.min(),
    )


def _check_label(y: pd.Series, label: str, kind: str, task: str, where: str) -> None:
    col = f"{where}: column {label!r} (--label)"
    numeric = kind in {"Int64", "Float64"}
    if task == "regression":
        if not numeric:
            word = {"Bool": "booleans", "String": "strings"}[kind]
            raise DataFileError(
                f"{col} holds {word}; --task regression needs numbers "
                "(for classes use --task binary or multiclass)"
            )
        if y.nunique() < 2:
            raise DataFileError(f"{col} holds a single value; there is nothing to predict")
        return
    if kind == "Float64" and not np.all(np.mod(y.astype("float64"), 1) == 0):
        raise DataFileError(f"{col} holds fractional numbers, not classes; use --task regression")
    classes = int(y.nunique())
    if classes < 2:
        raise DataFileError(f"{col} holds a single value; a {task} label needs two or more")
    if task == "binary" and classes > 2:
        hint = "multiclass or regression" if numeric else "multiclass"
        raise DataFileError(
            f"{col} holds {classes} distinct values; --task binary needs exactly two "
            f"(use --task {hint})"
        )


# Rendering -----------------------------------------------------------------------------
def _template(name: str) -> Template:
    return Template(
        resources.files("crispops.project").joinpath("templates", name).read_text("utf-8")
    )


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML form for {value!r}")


def _safe_text(text: str) -> str:
    """A user-supplied name that may go inside a generated string or comment."""
    return text if re.fullmatch(r"[\w .+-]{1,80}", text) else "the input file"


@dataclass(frozen=True)
class _Names:
    project: str
    entity: str  # Feast entity name
    entity_var: str
    source: str
    view: str
    service: str
    module: str


def _names(project: str, entity_column: str) -> _Names:
    entity = _entity_name(entity_column)
    source, view, service = f"{project}_source", f"{project}_fv", f"{project}_v1"
    var = entity
    if (
        keyword.iskeyword(var)
        or hasattr(builtins, var)
        or var in _MODULE_NAMES
        or var in {source, view, service}
    ):
        var = f"{entity}_entity"
    return _Names(project, entity, var, source, view, service, f"{project}_features.py")


def _schema_lines(types: dict[str, str]) -> str:
    lines = []
    for name, kind in types.items():
        line = f'        Field(name="{name}", dtype={kind}),'
        if len(line) > 100:  # as ruff format splits it
            line = "\n".join(
                [
                    "        Field(",
                    f'            name="{name}",',
                    f"            dtype={kind},",
                    "        ),",
                ]
            )
        lines.append(line)
    return "\n".join(lines)


def render_features(
    names: _Names, entity_column: str, data: PreparedData, source_name: str, now: datetime
) -> str:
    age_days = max(0, math.ceil((pd.Timestamp(now) - data.oldest).total_seconds() / 86400))
    used = sorted(set(data.feature_types.values()))
    return _template("features.py.tmpl").substitute(
        project=names.project,
        source_name=source_name,
        types=", ".join(used),
        entity_var=names.entity_var,
        entity_name=names.entity,
        entity=entity_column,
        value_type=data.entity_type,
        source=names.source,
        view=names.view,
        service=names.service,
        age_days=age_days,
        margin_days=TTL_MARGIN_DAYS,
        ttl_days=age_days + TTL_MARGIN_DAYS,
        schema=_schema_lines(data.feature_types),
    )


def render_settings(
    names: _Names,
    *,
    entity: str,
    timestamp: str,
    label: str,
    task: str,
    rows: int,
    source_name: str,
) -> str:
    blocks = []
    for cand in CANDIDATES[task]:
        body = "\n".join(f"{k} = {_toml(v)}" for k, v in cand.items())
        blocks.append(f"\n[[training.candidates]]\n{body}\n")
    serving = ServingSettings()
    cluster = ClusterSettings()
    serving_keys = ("port", "workers", "max_batch_size", "missing_entity")
    cluster_lines = [
        f"{k} = {_toml(getattr(cluster, k))}" for k in ("namespace", "registry", "component_image")
    ]
    cluster_lines.append('# kfp_host = "https://kubeflow.example.com/pipeline"')
    return _template("crispops.toml.tmpl").substitute(
        project=names.project,
        source_name=source_name,
        entity=_toml(entity),
        timestamp=_toml(timestamp),
        label=_toml(label),
        task=_toml(task),
        min_rows=min(DEFAULT_MIN_ROWS, rows),
        feature_service=_toml(names.service),
        selection_metric=_toml(SELECTION_METRIC[task]),
        candidates="".join(blocks),
        serving="\n".join(f"{k} = {_toml(getattr(serving, k))}" for k in serving_keys) + "\n",
        cluster="\n".join(cluster_lines),
    )


# Writing -------------------------------------------------------------------------------
def _check_target(target: Path, force: bool) -> None:
    if target.is_symlink() and not target.exists():
        raise ScaffoldError(f"{target}: a broken symbolic link")
    if target.exists() and not target.is_dir():
        raise ScaffoldError(f"{target}: exists and is not a directory")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise ScaffoldError(
            f"{target}: directory exists and is not empty; choose a new directory, or pass "
            f"--force to write {CONFIG_FILE} and {REPO_DIR}/ into it (replacing those two)"
        )


def _make_parents(path: Path) -> list[Path]:
    """Create the missing ancestors of ``path``; return them, deepest first."""
    missing = []
    parent = path.parent
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    for p in reversed(missing):
        p.mkdir()
    return missing


def _install(staged: Path, target: Path) -> None:
    """Move a built project into place.

    A new directory is one rename. Into an existing directory (empty, or with --force)
    each generated entry is renamed in, replacing its namesake, and all of it is undone
    if any rename fails; the directory itself is kept (it may be someone's cwd).
    """
    if not target.exists():
        os.replace(staged, target)
        return
    backup = staged / ".replaced"
    backup.mkdir()
    replaced: list[str] = []
    installed: list[str] = []
    try:
        for name in (CONFIG_FILE, REPO_DIR):
            old = target / name
            if old.exists() or old.is_symlink():
                os.replace(old, backup / name)
                replaced.append(name)
            os.replace(staged / name, old)
            installed.append(name)
    except BaseException:
        for name in installed:
            os.replace(target / name, staged / name)
        for name in replaced:
            os.replace(backup / name, target / name)
        raise
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def scaffold(
    directory: Path | str,
    *,
    data: Path | str,
    entity: str,
    timestamp: str,
    label: str,
    task: str,
    force: bool = False,
    now: datetime | None = None,
) -> ScaffoldResult:
    """Write a crispops project for ``data`` into ``directory``; see the module docstring.

    With ``force`` an existing, non-empty directory is accepted: its crispops.toml and
    feature_repo/ are replaced and everything else in it is left alone.
    """
    if task not in TASKS:
        raise ScaffoldError(f"--task {task!r}: choose {', '.join(TASKS)}")
    target = Path(directory).expanduser().resolve()
    _check_target(target, force)
    data = Path(data).expanduser()
    now = now or datetime.now(UTC)
    prepared = prepare(
        read_data(data),
        entity=entity,
        timestamp=timestamp,
        label=label,
        task=task,
        where=str(data),
        now=now,
    )
    names = _names(project_name(target), entity)
    source_name = _safe_text(data.name)
    files = {
        CONFIG_FILE: render_settings(
            names,
            entity=entity,
            timestamp=timestamp,
            label=label,
            task=task,
            rows=prepared.rows,
            source_name=source_name,
        ),
        f"{REPO_DIR}/feature_store.yaml": _template("feature_store.yaml.tmpl").substitute(
            project=names.project
        ),
        f"{REPO_DIR}/feature_store.cluster.yaml": _template(
            "feature_store.cluster.yaml.tmpl"
        ).substitute(project=names.project),
        f"{REPO_DIR}/.feastignore": _template("feastignore.tmpl").template,
        f"{REPO_DIR}/{names.module}": render_features(names, entity, prepared, source_name, now),
    }

    created = _make_parents(target)
    staged = target.parent / f".{target.name}.crispops-init-{secrets.token_hex(4)}"
    try:
        os.mkdir(staged)
        (staged / REPO_DIR / "data").mkdir(parents=True)
        prepared.features.to_parquet(staged / REPO_DIR / "data" / FEATURES_FILE, index=False)
        prepared.labels.to_parquet(staged / REPO_DIR / "data" / LABELS_FILE, index=False)
        for rel, text in files.items():
            (staged / rel).write_text(text, encoding="utf-8")
        load_settings(staged)  # what we wrote must load, or nothing is installed
        _install(staged, target)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        for p in created:
            with contextlib.suppress(OSError):
                p.rmdir()
        raise
    return ScaffoldResult(
        directory=target,
        features=list(prepared.feature_types),
        feature_service=names.service,
        rows=prepared.rows,
    )
