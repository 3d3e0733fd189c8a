"""ingest: label rows joined point-in-time with the FeatureService's features."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import pandas as pd

from crispops.io import DataFileError, read_table

if TYPE_CHECKING:
    from pathlib import Path

    from feast import FeatureStore

    from crispops.contract import FeatureContract


FEAST_TS = "event_timestamp"


@dataclass(frozen=True)
class IngestResult:
    rows: int
    columns: list[str]
    start: datetime
    end: datetime


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
    path: Path, entity: str, timestamp: str, label: str, request_fields: list[str]
) -> pd.DataFrame:
    """The label source's entity, timestamp, label and request-time columns.

    The join needs the entity, timestamp and request fields; a missing label is left
    for validate to report with the other problems of the training set.
    """
    df = read_table(path)
    needed = [entity, timestamp, *request_fields]
    wanted = needed + ([label] if label in df.columns else [])
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise DataFileError(
            f"{path}: missing column(s) {', '.join(repr(c) for c in missing)} "
            f"(has: {', '.join(map(str, df.columns))})"
        )
    out = df[wanted].copy()
    out[timestamp] = to_utc(out[timestamp], timestamp, str(path))
    return out


def join_features(
    store: FeatureStore, contract: FeatureContract, labels: pd.DataFrame, timestamp: str
) -> pd.DataFrame:
    """Point-in-time join of label rows with the FeatureService (Feast's offline store)."""
    service = store.get_feature_service(contract.feature_service)
    if FEAST_TS in labels.columns and timestamp != FEAST_TS:
        raise DataFileError(f"column {FEAST_TS!r} is reserved for the label timestamp")
    entity_df = labels.rename(columns={timestamp: FEAST_TS})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        job = store.get_historical_features(entity_df=entity_df, features=service)
        df = job.to_df().rename(columns={FEAST_TS: timestamp})
    df[timestamp] = pd.to_datetime(df[timestamp], utc=True)
    keep = [c for c in labels.columns] + [c for c in contract.feature_names if c not in labels]
    df = df[keep].sort_values([timestamp, contract.entity], kind="stable", ignore_index=True)
    return df


def ingest(
    store: FeatureStore,
    contract: FeatureContract,
    label_source: Path,
    timestamp: str,
    label: str,
) -> tuple[pd.DataFrame, IngestResult]:
    labels = load_label_rows(
        label_source, contract.entity, timestamp, label, contract.request_names
    )
    null_ts = int(labels[timestamp].isna().sum())
    if null_ts:
        raise DataFileError(
            f"{label_source}: column {timestamp!r}: {null_ts} row(s) have no timestamp"
        )
    df = join_features(store, contract, labels, timestamp)
    return df, IngestResult(
        rows=len(df),
        columns=list(df.columns),
        start=df[timestamp].min().to_pydatetime(),
        end=df[timestamp].max().to_pydatetime(),
    )
