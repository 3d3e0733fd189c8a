"""adopt: a crispops project around a team's existing Feast repo (`crispops init
--feature-repo`).

The repo stays the team's: its definitions are read (Feast's own parser, nothing is
applied or written into it) and ``crispops.toml`` points at it, so its
``feature_store.yaml`` is used as it is. From the FeatureService's views come the
entity join keys, each of which must be a column of the label table; every other
label-table column becomes a request-time feature (``data.request_features``) except
the label, the timestamp, other datetime columns, ID-like columns (a distinct value
on every row), columns that the FeatureService already provides, and those named by
``--exclude``. What was left out, and why, is printed and written into the file as a
comment beside the list a user can edit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from crispops.config import CONFIG_FILE, Kind, load_settings
from crispops.contract import FeatureContract, contract_from_store
from crispops.errors import CrispopsError, DataFileError, ScaffoldError
from crispops.io import write_text
from crispops.project.columns import feast_type, read_data
from crispops.project.render import render_settings
from crispops.steps.features import repo_modules
from crispops.steps.ingest import FEAST_TS

KINDS: dict[str, Kind] = {"Int64": "int", "Float64": "float", "String": "string", "Bool": "bool"}
#: Fewest rows for "a distinct value on every row" to say ID rather than chance.
ID_MIN_ROWS = 20


@dataclass(frozen=True)
class AdoptResult:
    directory: Path
    feature_service: str
    join_keys: list[str]
    features: list[str]
    request_features: dict[str, Kind]
    #: column -> why it is not a request-time feature
    left_out: dict[str, str] = field(default_factory=dict)
    rows: int = 0


class _Definitions:
    """A repo's parsed definitions with the registry methods the contract reads."""

    def __init__(self, contents: Any) -> None:
        self.contents = contents

    def get_feature_service(self, name: str) -> Any:
        from feast.errors import FeatureServiceNotFoundException

        for s in self.contents.feature_services:
            if s.name == name:
                return s
        raise FeatureServiceNotFoundException(name, "")

    def list_feature_services(self) -> list[Any]:
        return list(self.contents.feature_services)

    def list_feature_views(self) -> list[Any]:
        return list(self.contents.feature_views)

    def list_on_demand_feature_views(self) -> list[Any]:
        return list(self.contents.on_demand_feature_views)

    def get_entity(self, name: str) -> Any:
        for e in self.contents.entities:
            if e.name == name:
                return e
        raise ScaffoldError(f"entity {name!r} is used by a feature view but not defined")


def read_repo(repo: Path, feature_service: str) -> FeatureContract:
    """The FeatureService's contract from the repo's definitions (nothing applied)."""
    yaml_path = repo / "feature_store.yaml"
    if not yaml_path.is_file():
        raise ScaffoldError(f"--feature-repo {repo}: no feature_store.yaml (is it a Feast repo?)")
    check_repo_config(repo)
    from feast.repo_operations import parse_repo

    try:
        with repo_modules(repo):
            contents = parse_repo(repo)
    except CrispopsError:
        raise
    except Exception as exc:  # the team's own code: any error, named with its file
        raise ScaffoldError(
            f"--feature-repo {repo}: its definitions do not import ({type(exc).__name__}: {exc})"
        ) from None
    known = sorted(s.name for s in contents.feature_services)
    if feature_service not in known:
        raise ScaffoldError(
            f"--feature-service {feature_service!r}: not defined in {repo} "
            f"(it defines: {', '.join(known) or 'no FeatureService'})"
        )
    contract = contract_from_store(_Definitions(contents), feature_service)  # type: ignore[arg-type]
    if not contract.entity_keys:
        raise ScaffoldError(
            f"--feature-service {feature_service!r}: its views have no entity join keys; "
            "crispops joins label rows to features by them"
        )
    return contract


def check_repo_config(repo: Path) -> None:
    """Feast's own reading of feature_store.yaml, its errors naming the file and key."""
    from feast.repo_config import load_repo_config

    yaml_path = repo / "feature_store.yaml"
    try:
        config = load_repo_config(repo, yaml_path)
    except Exception as exc:  # pydantic, yaml, or a store plugin that does not import
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        raise ScaffoldError(f"{yaml_path}: Feast cannot use it: {'; '.join(lines[:6])}") from None
    online = getattr(config, "online_store", None)
    if online is None or getattr(online, "type", "") in ("", None):
        raise ScaffoldError(
            f"{yaml_path}: online_store: none is configured; crispops serves features from "
            "Feast's online store (sqlite, redis, postgres, ...)"
        )


def request_candidates(
    labels: pd.DataFrame,
    contract: FeatureContract,
    *,
    timestamp: str,
    label: str,
    exclude: list[str],
) -> tuple[dict[str, Kind], dict[str, str]]:
    """Label-table columns that become request-time features, and why the rest do not."""
    request: dict[str, Kind] = {}
    left_out: dict[str, str] = {}
    keys = set(contract.join_keys)
    provided = set(contract.feature_names)
    odfv_fields = {f.name for f in contract.request_fields}
    for column in map(str, labels.columns):
        s = labels[column]
        if column in keys or column in (timestamp, label):
            continue
        if column in odfv_fields:
            continue  # an on-demand view's request field: already in the contract
        if column in exclude:
            left_out[column] = "--exclude"
        elif column == FEAST_TS:
            left_out[column] = f"{FEAST_TS} is Feast's own column name"
        elif column in provided:
            left_out[column] = "the FeatureService provides it (Feast's value is used)"
        elif pd.api.types.is_datetime64_any_dtype(s):
            left_out[column] = "a datetime column (only the label timestamp may hold times)"
        elif s.isna().all():
            left_out[column] = "holds no values"
        elif _id_like(s):
            left_out[column] = f"ID-like: a distinct value on each of its {len(s):,} rows"
        else:
            try:
                request[column] = KINDS[feast_type(s)]
            except ValueError as exc:
                left_out[column] = f"holds {exc}"
    return request, left_out


def _id_like(s: pd.Series) -> bool:
    integer_or_text = pd.api.types.is_integer_dtype(s) or not pd.api.types.is_numeric_dtype(s)
    return bool(
        integer_or_text
        and not pd.api.types.is_bool_dtype(s)
        and len(s) >= ID_MIN_ROWS
        and s.nunique(dropna=True) == len(s)
    )


def _relative(path: Path, start: Path) -> str:
    try:
        return os.path.relpath(path, start)
    except ValueError:  # another drive
        return str(path)


def adopt(
    directory: Path | str,
    *,
    feature_repo: Path | str,
    feature_service: str,
    data: Path | str,
    timestamp: str,
    label: str,
    task: str,
    exclude: list[str] | None = None,
    force: bool = False,
) -> AdoptResult:
    """Write ``crispops.toml`` in ``directory`` for an existing Feast repo."""
    from crispops.project.scaffold import TASKS, check_label

    if task not in TASKS:
        raise ScaffoldError(f"--task {task!r}: choose {', '.join(TASKS)}")
    target = Path(directory).expanduser().resolve()
    if target.exists() and not target.is_dir():
        raise ScaffoldError(f"{target}: exists and is not a directory")
    if (target / CONFIG_FILE).exists() and not force:
        raise ScaffoldError(
            f"{target / CONFIG_FILE}: exists; pass --force to replace it (the feature repo "
            "is never written)"
        )
    repo = Path(feature_repo).expanduser().resolve()
    if not repo.is_dir():
        raise ScaffoldError(f"--feature-repo {repo}: not a directory")
    contract = read_repo(repo, feature_service)

    data = Path(data).expanduser().resolve()
    labels = read_data(data)
    where = str(data)
    columns = [str(c) for c in labels.columns]
    wanted = {"--timestamp": timestamp, "--label": label}
    absent = [f"{c!r} ({opt})" for opt, c in wanted.items() if c not in columns]
    for key in contract.join_keys:
        if key not in columns:
            views = [v for v, ks in contract.view_keys.items() if key in ks]
            absent.append(f"{key!r} (the join key of feature view {', '.join(views)})")
    for f in contract.request_fields:
        if f.name not in columns:
            absent.append(f"{f.name!r} (a request field of {f.source})")
    if absent:
        raise DataFileError(
            f"{where}: no column {', '.join(absent)}; the file has: {', '.join(columns)}"
        )
    unknown = sorted(set(exclude or ()) - set(columns))
    if unknown:
        raise ScaffoldError(f"--exclude {', '.join(unknown)}: no such column in {where}")
    if labels[label].isna().any():
        raise DataFileError(
            f"{where}: column {label!r} (--label): {int(labels[label].isna().sum())} row(s) "
            "have no label; drop or fill them"
        )
    try:
        label_kind = feast_type(labels[label])
    except ValueError as exc:
        raise DataFileError(f"{where}: column {label!r} (--label) holds {exc}") from None
    check_label(labels[label], label, label_kind, task, where)

    request, left_out = request_candidates(
        labels, contract, timestamp=timestamp, label=label, exclude=list(exclude or ())
    )
    text = render_settings(
        project=target.name,
        source_name=data.name,
        entity=contract.join_keys,
        timestamp=timestamp,
        label=label,
        task=task,
        rows=len(labels),
        feature_service=feature_service,
        label_source=_relative(data, target),
        repo_path=_relative(repo, target),
        request_features=request,
        left_out=left_out,
    )
    target.mkdir(parents=True, exist_ok=True)
    path = target / CONFIG_FILE
    previous = path.read_bytes() if path.exists() else None
    write_text(path, text)
    try:
        load_settings(target)  # what we wrote must load
    except BaseException:
        if previous is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(previous)
        raise
    return AdoptResult(
        directory=target,
        feature_service=feature_service,
        join_keys=contract.join_keys,
        features=contract.feature_names,
        request_features=request,
        left_out=left_out,
        rows=len(labels),
    )
