"""scaffold: a new crispops project around your own tabular data (`crispops init`).

One Parquet or CSV file with an entity key, an event timestamp, a label and feature
columns becomes a project directory::

    crispops.toml                 settings; data.label_source is the labels file below
    feature_repo/
      feature_store.yaml          DuckDB (or, --engine spark, Spark) offline, SQLite
                                  online, a local registry
      feature_store.cluster.yaml  Redis online, PostgreSQL registry (Spark on a cluster)
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

import contextlib
import os
import secrets
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from crispops.config import CONFIG_FILE, Engine, SparkSettings, load_settings
from crispops.errors import DataFileError, ScaffoldError
from crispops.project.columns import (
    RESERVED_NAMES,
    PreparedData,
    bad_name,
    canonical,
    feast_type,
    project_name,
    read_data,
)
from crispops.project.render import (
    CANDIDATES,
    names_for,
    render_features,
    render_settings,
    render_store_yaml,
    safe_text,
    template,
)
from crispops.steps.ingest import FEAST_TS, to_utc

__all__ = [
    "CANDIDATES",
    "PreparedData",
    "ScaffoldError",
    "ScaffoldResult",
    "feast_type",
    "prepare",
    "project_name",
    "read_data",
    "scaffold",
]

TASKS = ("binary", "multiclass", "regression")
REPO_DIR = "feature_repo"
FEATURES_FILE = "features.parquet"
LABELS_FILE = "labels.parquet"
#: Fewest rows a project may start with (Settings accepts data.min_rows >= 10).
MIN_ROWS = 10


@dataclass(frozen=True)
class ScaffoldResult:
    directory: Path
    features: list[str]
    feature_service: str
    rows: int


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
    bad = [f"{c!r} ({why})" for c in columns if (why := bad_name(c))]
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
    entity_values = canonical(df[entity], entity_kind)

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
    check_label(y, label, label_kind, task, where)

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
        features[name] = canonical(df[name], kind)
    labels = pd.DataFrame({entity: entity_values, timestamp: ts, label: canonical(y, label_kind)})
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


def check_label(y: pd.Series, label: str, kind: str, task: str, where: str) -> None:
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
    engine: Engine = "duckdb",
    spark: SparkSettings | None = None,
) -> ScaffoldResult:
    """Write a crispops project for ``data`` into ``directory``; see the module docstring.

    With ``force`` an existing, non-empty directory is accepted: its crispops.toml and
    feature_repo/ are replaced and everything else in it is left alone. ``engine="spark"``
    writes SparkSources and a feature_store.yaml with Feast's Spark offline store and
    Spark materialization engine (``spark``: master, memory, the cluster's master).
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
    names = names_for(project_name(target), entity)
    source_name = safe_text(data.name)
    files = {
        CONFIG_FILE: render_settings(
            project=names.project,
            source_name=source_name,
            entity=entity,
            timestamp=timestamp,
            label=label,
            task=task,
            rows=prepared.rows,
            feature_service=names.service,
            engine=engine,
            spark=spark,
        ),
        **{
            f"{REPO_DIR}/{name}": text
            for name, text in render_store_yaml(names.project, engine, spark).items()
        },
        f"{REPO_DIR}/.feastignore": template("feastignore.tmpl").template,
        f"{REPO_DIR}/{names.module}": render_features(
            names, entity, prepared, source_name, now, engine
        ),
    }

    created = _make_parents(target)
    staged = target.parent / f".{target.name}.crispops-init-{secrets.token_hex(4)}"
    try:
        os.mkdir(staged)
        (staged / REPO_DIR / "data").mkdir(parents=True)
        # Microsecond timestamps: Spark 4 rejects Parquet's nanoseconds (DuckDB reads both).
        for frame, name in ((prepared.features, FEATURES_FILE), (prepared.labels, LABELS_FILE)):
            frame.to_parquet(
                staged / REPO_DIR / "data" / name,
                index=False,
                coerce_timestamps="us",
                allow_truncated_timestamps=True,
            )
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
