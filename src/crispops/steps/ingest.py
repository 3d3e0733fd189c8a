"""ingest: label rows joined point-in-time with the FeatureService's features."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from crispops.errors import DataFileError
from crispops.io import read_table

if TYPE_CHECKING:
    from feast import FeatureStore

    from crispops.contract import FeatureContract


FEAST_TS = "event_timestamp"


@dataclass(frozen=True)
class IngestResult:
    rows: int
    columns: list[str]
    start: datetime
    end: datetime
    label_rows: int = 0
    returned: int = 0
    coverage: list[ViewCoverage] = field(default_factory=list)
    #: Views above the unmatched threshold (recorded when the rule only warns).
    unmatched: list[str] = field(default_factory=list)


def to_utc(series: pd.Series, column: str, where: str) -> pd.Series:
    """Parse a timestamp column to tz-aware UTC, or fail naming the column."""
    if pd.api.types.is_datetime64_any_dtype(series):
        out = series
    else:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = pd.to_datetime(series, errors="raise", utc=True, format="mixed")
        except (ValueError, TypeError, OverflowError) as exc:
            raise DataFileError(
                f"{where}: column {column!r} holds values that are not timestamps ({exc})"
            ) from None
    if getattr(out.dt, "tz", None) is None:
        out = out.dt.tz_localize("UTC")
    else:
        out = out.dt.tz_convert("UTC")
    if out.isna().all():
        raise DataFileError(f"{where}: column {column!r} has no usable timestamp")
    return out


def load_label_rows(
    path: Path, contract: FeatureContract, timestamp: str, label: str
) -> pd.DataFrame:
    """The label source's entity keys, timestamp, label and request-time columns.

    The join needs the keys, the timestamp and the request fields; a missing label is
    left for validate to report with the other problems of the training set.
    """
    df = read_table(path)
    keys, requests = contract.join_keys, contract.request_names
    needed = [*keys, timestamp, *requests]
    missing = [c for c in dict.fromkeys(needed) if c not in df.columns]
    if missing:
        why = ", ".join(_why_needed(c, contract, timestamp) for c in missing)
        raise DataFileError(
            f"{path}: missing column(s) {why} (has: {', '.join(map(str, df.columns))})"
        )
    wanted = list(dict.fromkeys(needed + ([label] if label in df.columns else [])))
    out = df[wanted].copy()
    out[timestamp] = to_utc(out[timestamp], timestamp, str(path))
    return out


def _why_needed(column: str, contract: FeatureContract, timestamp: str) -> str:
    views = [v for v, keys in contract.view_keys.items() if column in keys]
    if views:
        return f"{column!r} (a join key of feature view {', '.join(views)})"
    if column == timestamp:
        return f"{column!r} (data.timestamp)"
    source = next((f.source for f in contract.request_fields if f.name == column), "")
    return f"{column!r} (a request-time field of {source})" if source else repr(column)


def join_features(
    store: FeatureStore, contract: FeatureContract, labels: pd.DataFrame, timestamp: str
) -> pd.DataFrame:
    """Point-in-time join of label rows with the FeatureService (Feast's offline store)."""
    from crispops.steps.features import repo_cwd

    service = store.get_feature_service(contract.feature_service)
    if FEAST_TS in labels.columns and timestamp != FEAST_TS:
        raise DataFileError(f"column {FEAST_TS!r} is reserved for the label timestamp")
    entity_df = labels.rename(columns={timestamp: FEAST_TS})
    with warnings.catch_warnings(), repo_cwd(Path(store.repo_path)):
        warnings.simplefilter("ignore")
        job = store.get_historical_features(entity_df=entity_df, features=service)
        df = job.to_df().rename(columns={FEAST_TS: timestamp})
    df[timestamp] = pd.to_datetime(df[timestamp], utc=True)
    keep = [c for c in labels.columns] + [c for c in contract.feature_names if c not in labels]
    return df[keep].sort_values([timestamp, *contract.join_keys], kind="stable", ignore_index=True)


@dataclass(frozen=True)
class ViewCoverage:
    view: str
    ttl_days: float | None
    rows_without_values: int
    share: float


def account(
    labels: pd.DataFrame, df: pd.DataFrame, contract: FeatureContract
) -> tuple[int, list[ViewCoverage]]:
    """Rows the offline store returned, and per view the label rows it gave no value.

    Rows the store dropped (Feast's file offline store drops a row that has no feature
    row inside a view's TTL) count as without values for every view.
    """
    dropped = max(len(labels) - len(df), 0)
    out = []
    for view, _keys in contract.view_keys.items():
        names = [n for n in contract.view_features(view) if n in df.columns]
        if not names:
            continue
        empty = int(df[names].isna().all(axis=1).sum()) + dropped
        ttl = contract.view_ttls.get(view) or 0.0
        out.append(
            ViewCoverage(
                view,
                round(ttl / 86400, 2) if ttl else None,
                empty,
                round(empty / max(len(labels), 1), 4),
            )
        )
    return len(df), out


def ingest(
    store: FeatureStore,
    contract: FeatureContract,
    label_source: Path,
    timestamp: str,
    label: str,
    *,
    max_unmatched: float = 1.0,
    enforce: bool = True,
    max_dropped: float = 1.0,
    enforce_dropped: bool = True,
) -> tuple[pd.DataFrame, IngestResult]:
    """The training set, with its row accounting; stop (``enforce``) when a view leaves
    more than ``max_unmatched`` of the label rows without any value."""
    labels = load_label_rows(label_source, contract, timestamp, label)
    null_ts = int(labels[timestamp].isna().sum())
    if null_ts:
        raise DataFileError(
            f"{label_source}: column {timestamp!r}: {null_ts} row(s) have no timestamp"
        )
    df = join_features(store, contract, labels, timestamp)
    returned, coverage = account(labels, df, contract)
    if returned == 0:
        raise DataFileError(
            f"{label_source}: the offline store returned none of the {len(labels):,} label "
            "rows; check the entity keys' values and the views' TTLs"
        )
    lost = len(labels) - returned
    if lost > max_dropped * len(labels) and enforce_dropped:
        suspects = sorted(
            (c for c in coverage if c.ttl_days is not None), key=lambda c: c.ttl_days or 0.0
        )
        named = ", ".join(f"{c.view} (TTL {_ttl(c.ttl_days)})" for c in suspects) or "none"
        raise DataFileError(
            f"{label_source}: the offline store returned {returned:,} of {len(labels):,} label "
            f"rows ({lost / len(labels):.0%} lost > {max_dropped:.0%}). Feast's file offline "
            "store drops a row that has no feature row inside a view's TTL; the views with a "
            f"TTL, shortest first: {named}. The DuckDB offline store (offline_store: type: "
            "duckdb) keeps such rows with nulls (or raise validation.rules.dropped_rows)"
        )
    bad = [c for c in coverage if c.share > max_unmatched]
    if bad and enforce:
        raise DataFileError(
            "; ".join(
                f"feature view {c.view!r} gives no value to {c.rows_without_values:,} of "
                f"{len(labels):,} label rows ({c.share:.0%} > {max_unmatched:.0%}): no "
                f"row inside its TTL ({_ttl(c.ttl_days)}) for their keys "
                f"({', '.join(contract.view_keys[c.view])}) before their timestamps"
                for c in bad
            )
            + " (raise validation.rules.unmatched, or check the view's TTL and source)"
        )
    return df, IngestResult(
        rows=len(df),
        columns=list(df.columns),
        start=df[timestamp].min().to_pydatetime(),
        end=df[timestamp].max().to_pydatetime(),
        label_rows=len(labels),
        returned=returned,
        coverage=coverage,
        unmatched=[c.view for c in bad],
    )


def _ttl(days: float | None) -> str:
    return "no TTL" if days is None else f"{days:g} days"
