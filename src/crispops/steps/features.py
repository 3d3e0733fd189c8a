"""Feature store operations: apply the repo, materialize, check online against offline."""

from __future__ import annotations

import contextlib
import math
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from crispops.errors import FeatureStoreError

if TYPE_CHECKING:
    from feast import FeatureStore


@contextlib.contextmanager
def repo_modules(repo: Path) -> Iterator[None]:
    """Import a Feast repo's modules as Feast does: from inside the repo, by name, quietly
    (Feast warns about experimental APIs). A module of the same name imported from
    another repo earlier in this process would be reused, with that repo's paths: those
    are forgotten first."""
    for module in repo.glob("*.py"):
        sys.modules.pop(module.stem, None)
    old = Path.cwd()
    sys.path.insert(0, str(repo))
    os.chdir(repo)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        os.chdir(old)
        with contextlib.suppress(ValueError):
            sys.path.remove(str(repo))


@contextlib.contextmanager
def repo_cwd(repo_path: Path) -> Iterator[None]:
    """Run inside the feature repo: Feast's DuckDB offline store reads a relative
    FileSource path against the working directory, where Feast's own templates (and
    the teams who follow them) write paths relative to the repo."""
    old = Path.cwd()
    os.chdir(repo_path)
    try:
        yield
    finally:
        os.chdir(old)


def _store(repo_path: Path, config_file: str | None = None) -> FeatureStore:
    from feast import FeatureStore

    from crispops.feast_registry import atomic_registry_writes
    from crispops.spark import use_this_python

    use_this_python()
    atomic_registry_writes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if config_file:
            return FeatureStore(repo_path=str(repo_path), fs_yaml_file=repo_path / config_file)
        return FeatureStore(repo_path=str(repo_path))


@dataclass(frozen=True)
class ApplyResult:
    project: str
    feature_views: list[str]
    on_demand_views: list[str]
    feature_services: list[str]


def apply(repo_path: Path, config_file: str | None = None) -> ApplyResult:
    """Register every definition in the repo, as `feast apply` does."""
    from feast.repo_config import load_repo_config
    from feast.repo_operations import apply_total

    from crispops.feast_registry import atomic_registry_writes
    from crispops.spark import use_this_python

    use_this_python()  # apply may start the Spark session (to validate SparkSources)
    atomic_registry_writes()
    repo_path = repo_path.resolve()
    yaml_path = repo_path / (config_file or "feature_store.yaml")
    if not yaml_path.is_file():
        raise FeatureStoreError(f"{yaml_path}: no feature_store.yaml in the feature repo")
    repo_config = load_repo_config(repo_path, yaml_path)
    with (
        repo_modules(repo_path),
        open(os.devnull, "w") as devnull,
        contextlib.redirect_stdout(devnull),
    ):
        apply_total(repo_config, repo_path, skip_source_validation=False)
    store = _store(repo_path, config_file)
    return ApplyResult(
        project=store.project,
        feature_views=sorted(v.name for v in store.list_feature_views()),
        on_demand_views=sorted(v.name for v in store.list_on_demand_feature_views()),
        feature_services=sorted(s.name for s in store.list_feature_services()),
    )


@dataclass(frozen=True)
class MaterializeResult:
    end: datetime
    views: dict[str, tuple[datetime | None, datetime]]  # name -> (start, end) of this run


def chunk_windows(
    start: datetime, end: datetime, chunk: timedelta
) -> list[tuple[datetime, datetime]]:
    """``[start, end]`` cut into consecutive windows of ``chunk`` (the last one shorter)."""
    if chunk <= timedelta(0):
        raise FeatureStoreError(f"materialization chunk must be positive, got {chunk}")
    out = []
    while start < end:
        out.append((start, min(start + chunk, end)))
        start = out[-1][1]
    return out


def materialize(
    repo_path: Path,
    end: datetime | None = None,
    views: list[str] | None = None,
    config_file: str | None = None,
    on_view: Callable[[str, int, int], None] | None = None,
    chunk: timedelta | None = None,
    on_chunk: Callable[[str, datetime, datetime], None] | None = None,
) -> MaterializeResult:
    """Materialize incrementally, view by view, up to ``end`` (default: now).

    Feast upserts each entity's latest row in the window, so a repeated or
    interrupted run is safe to run again (at-least-once writes).

    With ``chunk``, each view's window (from its watermark, or the start of its TTL, to
    ``end``) is cut into windows of that length, materialized oldest first; Feast
    records each one's end in the registry as the view's watermark once it is written.
    So memory is bounded by one chunk's rows, and a run killed part-way resumes at the
    first unfinished chunk (the finished ones are not redone). Oldest first keeps the
    newest value last for stores that upsert unconditionally (SQLite, PostgreSQL).
    ``on_chunk(view, start, end)`` is called after each chunk is recorded.
    """
    store = _store(repo_path.resolve(), config_file)
    end = end or datetime.now(UTC)
    names = views or sorted(v.name for v in store.list_feature_views() if v.online)
    done: dict[str, tuple[datetime | None, datetime]] = {}
    for i, name in enumerate(names):
        fv = store.get_feature_view(name)
        start = fv.most_recent_end_time
        if on_view:
            on_view(name, i, len(names))
        with (
            warnings.catch_warnings(),
            open(os.devnull, "w") as devnull,
            contextlib.redirect_stderr(devnull),
            repo_cwd(repo_path.resolve()),
        ):
            warnings.simplefilter("ignore")
            if chunk is None:
                store.materialize_incremental(end_date=end, feature_views=[name])
            else:
                first = start or first_start(fv, end)
                for lo, hi in chunk_windows(_aware(first), _aware(end), chunk):
                    store.materialize(start_date=lo, end_date=hi, feature_views=[name])
                    if on_chunk:
                        on_chunk(name, lo, hi)
        done[name] = (start, end)
    if on_view:
        on_view("", len(names), len(names))
    return MaterializeResult(end=end, views=done)


def first_start(fv: Any, end: datetime) -> datetime:
    """Where a never-materialized view's window starts: the start of its TTL, or 52 weeks
    back for a view without one (Feast's own rule in ``materialize_incremental``)."""
    ttl = fv.ttl if fv.ttl and fv.ttl > timedelta(0) else timedelta(weeks=52)
    return _aware(end) - ttl


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Mismatch:
    entity: dict[str, Any]  # join key -> value
    feature: str
    offline: Any
    online: Any

    @property
    def key(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.entity.items())


@dataclass
class CheckResult:
    entities: int
    features: int
    compared: int
    mismatches: list[Mismatch] = field(default_factory=list)
    as_of: dict[str, datetime] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.mismatches and self.compared > 0


def _same(a: Any, b: Any) -> bool:
    a_null = a is None or (isinstance(a, float) and math.isnan(a)) or a is pd.NA
    b_null = b is None or (isinstance(b, float) and math.isnan(b)) or b is pd.NA
    if a_null or b_null:
        return a_null and b_null
    if isinstance(a, int | float | np.number) and isinstance(b, int | float | np.number):
        return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)
    return str(a) == str(b)


def check(
    repo_path: Path,
    feature_service: str,
    sample: int = 50,
    seed: int = 0,
    config_file: str | None = None,
) -> CheckResult:
    """Compare online values with the latest offline values for a sample of entities.

    Each view is checked on its own join keys. The offline side is read as of each
    view's last materialization end, inside the view's TTL: exactly what
    materialization should have written.
    """
    repo_path = repo_path.resolve()
    store = _store(repo_path, config_file)
    service = store.get_feature_service(feature_service)
    fv_names = {v.name for v in store.list_feature_views()}
    projections = [p for p in service.feature_view_projections if p.name in fv_names]
    if not projections:
        raise FeatureStoreError(f"feature service {feature_service!r} has no materializable views")
    result = CheckResult(entities=0, features=0, compared=0)
    for proj in projections:
        fv = store.get_feature_view(proj.name)
        as_of = fv.most_recent_end_time
        if as_of is None:
            raise FeatureStoreError(
                f"feature view {fv.name!r} was never materialized; "
                "run `crispops features materialize` first"
            )
        if getattr(fv.state, "name", "") == "MATERIALIZING":
            raise FeatureStoreError(
                f"feature view {fv.name!r} is still marked MATERIALIZING: a materialization "
                "stopped before it finished (Feast serves no online features from it until "
                "one does); run `crispops features materialize` again"
            )
        result.as_of[fv.name] = as_of
        keys = [store.get_entity(e).join_key for e in fv.entities]
        rows = _entity_rows(fv, keys, repo_path)
        if len(rows) > sample:
            rows = rows.sample(n=sample, random_state=seed).reset_index(drop=True)
        refs = [f"{fv.name}:{f.name}" for f in proj.features]
        entity_rows = [{k: _py(v) for k, v in r.items()} for r in rows.to_dict("records")]
        entity_df = rows.assign(event_timestamp=pd.Timestamp(as_of))
        with warnings.catch_warnings(), repo_cwd(repo_path):
            warnings.simplefilter("ignore")
            offline = store.get_historical_features(entity_df=entity_df, features=refs).to_df()
            online = store.get_online_features(features=refs, entity_rows=entity_rows).to_df()
        offline_by = _by_key(offline, keys)
        online_by = _by_key(online, keys)
        result.entities = max(result.entities, len(rows))
        result.features += len(refs)
        for row in entity_rows:
            key = tuple(row[k] for k in keys)
            off, on = offline_by.get(key, {}), online_by.get(key, {})
            for f in proj.features:
                result.compared += 1
                a, b = _py(off.get(f.name)), _py(on.get(f.name))
                if not _same(a, b):
                    result.mismatches.append(Mismatch(row, f"{fv.name}:{f.name}", a, b))
    return result


def _by_key(df: pd.DataFrame, keys: list[str]) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {tuple(_py(r[k]) for k in keys): r for r in df.to_dict("records")}


def _py(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _entity_rows(fv: Any, keys: list[str], repo_path: Path) -> pd.DataFrame:
    """Distinct join-key rows in a view's batch source (file sources are read directly,
    relative paths against the repo)."""
    path = getattr(fv.batch_source, "path", None)
    if not path:
        raise FeatureStoreError(
            f"feature view {fv.name!r}: cannot sample entities of its source (not a file)"
        )
    full = Path(path) if Path(path).is_absolute() else repo_path / path
    if full.suffix == ".csv":
        frame = pd.read_csv(full, usecols=keys)
    else:
        frame = pd.read_parquet(full, columns=keys)
    return frame.drop_duplicates().sort_values(keys, ignore_index=True)
