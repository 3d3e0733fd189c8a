"""Feature store operations: apply the repo, materialize, check online against offline."""

from __future__ import annotations

import contextlib
import math
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from crispops.errors import FeatureStoreError

if TYPE_CHECKING:
    from feast import FeatureStore


@contextlib.contextmanager
def _quiet_cwd(path: Path) -> Iterator[None]:
    """Feast's apply changes the working directory and warns about experimental APIs."""
    old = Path.cwd()
    # Feast imports the repo's modules by name: a module of the same name imported from
    # another repo earlier in this process would be reused, with that repo's paths.
    for module in path.glob("*.py"):
        sys.modules.pop(module.stem, None)
    sys.path.insert(0, str(path))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        os.chdir(old)
        with contextlib.suppress(ValueError):
            sys.path.remove(str(path))


def _store(repo_path: Path, config_file: str | None = None) -> FeatureStore:
    from feast import FeatureStore

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

    repo_path = repo_path.resolve()
    yaml_path = repo_path / (config_file or "feature_store.yaml")
    if not yaml_path.is_file():
        raise FeatureStoreError(f"{yaml_path}: no feature_store.yaml in the feature repo")
    repo_config = load_repo_config(repo_path, yaml_path)
    with (
        _quiet_cwd(repo_path),
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


def materialize(
    repo_path: Path,
    end: datetime | None = None,
    views: list[str] | None = None,
    config_file: str | None = None,
    on_view: Callable[[str, int, int], None] | None = None,
) -> MaterializeResult:
    """Materialize incrementally, view by view, up to ``end`` (default: now).

    Feast upserts each entity's latest row in the window, so a repeated or
    interrupted run is safe to run again (at-least-once writes).
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
        ):
            warnings.simplefilter("ignore")
            store.materialize_incremental(end_date=end, feature_views=[name])
        done[name] = (start, end)
    if on_view:
        on_view("", len(names), len(names))
    return MaterializeResult(end=end, views=done)


@dataclass(frozen=True)
class Mismatch:
    entity: Any
    feature: str
    offline: Any
    online: Any


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
    entity: str,
    sample: int = 50,
    seed: int = 0,
    config_file: str | None = None,
) -> CheckResult:
    """Compare online values with the latest offline values for a sample of entities.

    The offline side is read as of each view's last materialization end, inside the
    view's TTL: exactly what materialization should have written.
    """
    store = _store(repo_path.resolve(), config_file)
    service = store.get_feature_service(feature_service)
    fv_names = {v.name for v in store.list_feature_views()}
    projections = [p for p in service.feature_view_projections if p.name in fv_names]
    if not projections:
        raise FeatureStoreError(f"feature service {feature_service!r} has no materializable views")
    result = CheckResult(entities=0, features=0, compared=0)
    rng = np.random.default_rng(seed)
    for proj in projections:
        fv = store.get_feature_view(proj.name)
        as_of = fv.most_recent_end_time
        if as_of is None:
            raise FeatureStoreError(
                f"feature view {fv.name!r} was never materialized; "
                "run `crispops features materialize` first"
            )
        result.as_of[fv.name] = as_of
        keys = _entity_values(store, fv, entity)
        if len(keys) > sample:
            keys = list(rng.choice(np.asarray(keys, dtype=object), size=sample, replace=False))
        refs = [f"{fv.name}:{f.name}" for f in proj.features]
        entity_df = pd.DataFrame({entity: keys, "event_timestamp": pd.Timestamp(as_of)})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            offline = store.get_historical_features(entity_df=entity_df, features=refs).to_df()
            online = store.get_online_features(
                features=refs, entity_rows=[{entity: _py(k)} for k in keys]
            ).to_df()
        offline = offline.set_index(entity)
        online = online.set_index(entity)
        result.entities = max(result.entities, len(keys))
        result.features += len(refs)
        for key in keys:
            for f in proj.features:
                off = offline.at[key, f.name] if key in offline.index else None
                on = online.at[_py(key), f.name] if _py(key) in online.index else None
                result.compared += 1
                if not _same(_py(off), _py(on)):
                    result.mismatches.append(Mismatch(_py(key), f"{fv.name}:{f.name}", off, on))
    return result


def _py(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _entity_values(store: FeatureStore, fv: Any, entity: str) -> list[Any]:
    """Distinct entity keys in a view's batch source (file sources are read directly)."""
    path = getattr(fv.batch_source, "path", None)
    if path and Path(path).suffix in {".parquet", ""}:
        return sorted(pd.read_parquet(path, columns=[entity])[entity].unique().tolist())
    if path and Path(path).suffix == ".csv":
        return sorted(pd.read_csv(path, usecols=[entity])[entity].unique().tolist())
    raise FeatureStoreError(f"feature view {fv.name!r}: cannot sample entities of its source")
