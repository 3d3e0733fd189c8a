"""The prediction log and the labels returned for it: where they are kept and read.

Two kinds of sink, one interface:

``parquet`` (the embedded default)
    files under the project's state, ``<root>/predictions/date=YYYY-MM-DD/*.parquet``
    and ``<root>/feedback/*.parquet``, each written atomically (a reader never sees half
    a file; a crash loses at most the batch being written);
``postgres`` (a cluster)
    two tables, ``<prefix>_predictions`` (keyed by ``request_id`` and ``model_tag``:
    in a shadow rollout both models log the same request) and ``<prefix>_feedback``
    (keyed by ``request_id``), created when missing.

A prediction record: ``request_id``, ``ts`` (UTC), ``model_tag``, ``endpoint``, and as
JSON text ``entity`` (join key -> value), ``inputs`` (the model's input columns as the
model received them, after online lookup; null where a value was missing and the
model's imputer filled it), ``request`` (the request-time fields), ``prediction``,
``probabilities`` (class -> p, or null) and ``imputed`` (names), plus ``score`` (a
number per prediction for drift: p(positive class), the predicted value, or the top
class's probability), ``outcome`` (``ok``, ``imputed`` or ``error``) and ``latency_s``
(the seconds the model call took for the batch the record was in). A feedback record:
``request_id``, ``label`` (JSON text), ``observed_at`` and ``received_at`` (UTC).
Labels are idempotent per request id: the last one received wins, and repeating one
changes nothing; a label joins every model's record of its request.

Nothing here imports BentoML: the server writes through it, ``crispops monitor``
reads through it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from crispops.errors import CrispopsError
from crispops.io import atomic_write, write_frame

PREDICTION_COLUMNS = (
    "request_id",
    "ts",
    "model_tag",
    "endpoint",
    "entity",
    "inputs",
    "request",
    "prediction",
    "probabilities",
    "score",
    "imputed",
    "outcome",
    "latency_s",
)
FEEDBACK_COLUMNS = ("request_id", "label", "observed_at", "received_at")
JSON_COLUMNS = ("entity", "inputs", "request", "prediction", "probabilities", "imputed")


class SinkError(CrispopsError, RuntimeError):
    """The prediction log's sink cannot be written or read; the message says which."""


@dataclass
class PredictionRecord:
    request_id: str
    ts: datetime
    model_tag: str
    endpoint: str
    entity: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    request: dict[str, Any] = field(default_factory=dict)
    prediction: Any = None
    probabilities: dict[str, float] | None = None
    score: float | None = None
    imputed: list[str] = field(default_factory=list)
    outcome: str = "ok"
    latency_s: float | None = None
    _row: tuple[Any, ...] | None = field(default=None, init=False, repr=False, compare=False)

    def row(self) -> tuple[Any, ...]:
        """The record as a table row, in ``PREDICTION_COLUMNS`` order (JSON text for the
        structured fields); computed once."""
        if self._row is None:
            self._row = (
                self.request_id,
                self.ts,
                self.model_tag,
                self.endpoint,
                _dumps(self.entity),
                _dumps(self.inputs),
                _dumps(self.request),
                _dumps(self.prediction),
                _dumps(self.probabilities),
                self.score,
                _dumps(self.imputed),
                self.outcome,
                self.latency_s,
            )
        return self._row


@dataclass(frozen=True)
class FeedbackRecord:
    request_id: str
    label: Any
    observed_at: datetime
    received_at: datetime

    def row(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "label": _dumps(self.label),
            "observed_at": self.observed_at,
            "received_at": self.received_at,
        }


def _dumps(value: Any) -> str:
    # the log's commonest values skip the encoder (an empty entity, no imputed names)
    if value is None:
        return "null"
    if isinstance(value, dict | list) and not value:
        return "[]" if isinstance(value, list) else "{}"
    return _ENCODE(value)


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot log a {type(value).__name__}")


#: One encoder for every record (``json.dumps`` with options builds one per call).
_ENCODE = json.JSONEncoder(default=_plain, separators=(",", ":"), allow_nan=False).encode

#: The predictions table as written to Parquet (straight from column lists: no pandas).
PREDICTION_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("ts", pa.timestamp("us", tz="UTC")),
        ("model_tag", pa.string()),
        ("endpoint", pa.string()),
        *((name, pa.string()) for name in ("entity", "inputs", "request", "prediction")),
        ("probabilities", pa.string()),
        ("score", pa.float64()),
        ("imputed", pa.string()),
        ("outcome", pa.string()),
        ("latency_s", pa.float64()),
    ]
)
assert tuple(PREDICTION_SCHEMA.names) == PREDICTION_COLUMNS


def prediction_table(rows: Sequence[tuple[Any, ...]]) -> pa.Table:
    """Rows (``PredictionRecord.row()``) as an Arrow table, built column by column."""
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(PREDICTION_COLUMNS)
    return pa.Table.from_arrays(
        [pa.array(col, type=f.type) for col, f in zip(columns, PREDICTION_SCHEMA, strict=True)],
        schema=PREDICTION_SCHEMA,
    )


class Sink(Protocol):
    """Where predictions and labels live."""

    def write_predictions(self, records: Sequence[PredictionRecord]) -> None: ...

    def write_rows(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Predictions as ``PredictionRecord.row()`` tuples (what the log's writer keeps)."""
        ...

    def write_feedback(self, records: Sequence[FeedbackRecord]) -> None: ...

    def read_predictions(
        self, start: datetime | None = None, end: datetime | None = None
    ) -> pd.DataFrame: ...

    def read_feedback(self) -> pd.DataFrame: ...

    def known(self, request_ids: Iterable[str]) -> dict[str, str]:
        """request id -> a model tag that logged it, for the ids that were logged."""
        ...

    def close(self) -> None: ...


def _predictions_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(PREDICTION_COLUMNS))
    df["ts"] = pd.to_datetime(df["ts"], utc=True)
    for c in ("score", "latency_s"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
    df["outcome"] = df["outcome"].fillna("ok").astype(object)
    return df


def _feedback_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(FEEDBACK_COLUMNS))
    for c in ("observed_at", "received_at"):
        df[c] = pd.to_datetime(df[c], utc=True)
    return df


def latest_labels(feedback: pd.DataFrame) -> pd.DataFrame:
    """One label per request id: the last received."""
    if feedback.empty:
        return feedback
    ordered = feedback.sort_values("received_at", kind="stable")
    return ordered.drop_duplicates("request_id", keep="last").reset_index(drop=True)


class ParquetSink:
    """Atomic Parquet files under ``root`` (the project's state)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def predictions_dir(self) -> Path:
        return self.root / "predictions"

    @property
    def feedback_dir(self) -> Path:
        return self.root / "feedback"

    def write_predictions(self, records: Sequence[PredictionRecord]) -> None:
        self.write_rows([r.row() for r in records])

    def write_rows(self, rows: Sequence[tuple[Any, ...]]) -> None:
        if not rows:
            return
        by_day: dict[str, list[tuple[Any, ...]]] = {}
        day, day_of = "", None
        for row in rows:
            if row[1] != day_of:  # a batch's records share their time: one strftime a batch
                day_of, day = row[1], f"{row[1].astimezone(UTC):%Y-%m-%d}"
            by_day.setdefault(day, []).append(row)
        for day, part in by_day.items():
            path = self.predictions_dir / f"date={day}" / f"{uuid.uuid4().hex}.parquet"
            table = prediction_table(part)
            try:
                atomic_write(path, lambda p, t=table: pq.write_table(t, p))  # type: ignore[misc]
            except OSError as exc:
                raise SinkError(f"prediction log {path.parent}: cannot write ({exc})") from exc

    def write_feedback(self, records: Sequence[FeedbackRecord]) -> None:
        if not records:
            return
        path = self.feedback_dir / f"{uuid.uuid4().hex}.parquet"
        try:
            write_frame(path, _feedback_frame([r.row() for r in records]))
        except OSError as exc:
            raise SinkError(f"feedback log {path.parent}: cannot write ({exc})") from exc

    def _read(self, files: list[Path], empty: pd.DataFrame) -> pd.DataFrame:
        frames = []
        for f in files:
            try:
                frames.append(pd.read_parquet(f))
            except (OSError, ValueError):  # a file being replaced or damaged: skipped
                continue
        return pd.concat(frames, ignore_index=True) if frames else empty

    def read_predictions(
        self, start: datetime | None = None, end: datetime | None = None
    ) -> pd.DataFrame:
        files = []
        for day_dir in sorted(self.predictions_dir.glob("date=*")):
            day = day_dir.name.removeprefix("date=")
            if start is not None and day < f"{start.astimezone(UTC):%Y-%m-%d}":
                continue
            if end is not None and day > f"{end.astimezone(UTC):%Y-%m-%d}":
                continue
            files += sorted(day_dir.glob("*.parquet"))
        df = self._read(files, _predictions_frame([]))
        if start is not None:
            df = df[df["ts"] >= pd.Timestamp(start)]
        if end is not None:
            df = df[df["ts"] < pd.Timestamp(end)]
        # one record per request and model (shadow: both models log the same request)
        return df.drop_duplicates(["request_id", "model_tag"], keep="first").reset_index(drop=True)

    def read_feedback(self) -> pd.DataFrame:
        return self._read(sorted(self.feedback_dir.glob("*.parquet")), _feedback_frame([]))

    def known(self, request_ids: Iterable[str]) -> dict[str, str]:
        wanted = set(request_ids)
        if not wanted:
            return {}
        df = self.read_predictions()
        hit = df[df["request_id"].isin(wanted)]
        return dict(zip(hit["request_id"], hit["model_tag"], strict=True))

    def close(self) -> None:
        return None


class PostgresSink:
    """Two tables in PostgreSQL: predictions keyed by (request id, model tag), labels by
    request id (psycopg 3)."""

    def __init__(self, dsn: str, prefix: str = "crispops", connect_timeout: float = 3.0) -> None:
        self.dsn = dsn
        self.predictions = f"{prefix}_predictions"
        self.feedback = f"{prefix}_feedback"
        self.connect_timeout = connect_timeout
        self._conn: Any = None

    def _connect(self) -> Any:
        import psycopg

        if self._conn is not None and not self._conn.closed:
            return self._conn
        try:
            self._conn = psycopg.connect(
                self.dsn, connect_timeout=max(1, int(self.connect_timeout)), autocommit=True
            )
        except psycopg.Error as exc:
            raise SinkError(f"prediction log: cannot connect to PostgreSQL ({exc})") from None
        with self._conn.cursor() as cur:
            cur.execute(
                f"CREATE TABLE IF NOT EXISTS {self.predictions} ("
                "request_id TEXT NOT NULL, ts TIMESTAMPTZ NOT NULL, model_tag TEXT NOT NULL, "
                "endpoint TEXT NOT NULL, entity TEXT, inputs TEXT, request TEXT, "
                "prediction TEXT, probabilities TEXT, score DOUBLE PRECISION, imputed TEXT, "
                "outcome TEXT, latency_s DOUBLE PRECISION, PRIMARY KEY (request_id, model_tag))"
            )
            # tables made when the key was request_id alone: one record per request and model
            cur.execute(
                "SELECT i.indnatts FROM pg_index i WHERE i.indrelid = %s::regclass "
                "AND i.indisprimary",
                [self.predictions],
            )
            key = cur.fetchone()
            if key is not None and key[0] == 1:
                cur.execute(
                    f"ALTER TABLE {self.predictions} DROP CONSTRAINT {self.predictions}_pkey, "
                    "ADD PRIMARY KEY (request_id, model_tag)"
                )
            for column, kind in (("outcome", "TEXT"), ("latency_s", "DOUBLE PRECISION")):
                cur.execute(  # tables made before these columns existed
                    f"ALTER TABLE {self.predictions} ADD COLUMN IF NOT EXISTS {column} {kind}"
                )
            cur.execute(
                f"CREATE INDEX IF NOT EXISTS {self.predictions}_ts ON {self.predictions} (ts)"
            )
            cur.execute(
                f"CREATE TABLE IF NOT EXISTS {self.feedback} (request_id TEXT PRIMARY KEY, "
                "label TEXT NOT NULL, observed_at TIMESTAMPTZ NOT NULL, "
                "received_at TIMESTAMPTZ NOT NULL)"
            )
        return self._conn

    def _run(self, what: str, fn: Any) -> Any:
        import psycopg

        try:
            return fn(self._connect())
        except psycopg.Error as exc:
            self.close()
            raise SinkError(f"prediction log: {what} failed in PostgreSQL ({exc})") from None

    def write_predictions(self, records: Sequence[PredictionRecord]) -> None:
        self.write_rows([r.row() for r in records])

    def write_rows(self, rows: Sequence[tuple[Any, ...]]) -> None:
        if not rows:
            return
        cols = ", ".join(PREDICTION_COLUMNS)
        marks = ", ".join(["%s"] * len(PREDICTION_COLUMNS))
        sql = (
            f"INSERT INTO {self.predictions} ({cols}) VALUES ({marks}) "
            "ON CONFLICT (request_id, model_tag) DO NOTHING"
        )

        def write(conn: Any) -> None:
            with conn.cursor() as cur:
                cur.executemany(sql, rows)

        self._run("writing predictions", write)

    def write_feedback(self, records: Sequence[FeedbackRecord]) -> None:
        if not records:
            return
        sql = (
            f"INSERT INTO {self.feedback} (request_id, label, observed_at, received_at) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (request_id) DO UPDATE SET "
            "label = EXCLUDED.label, observed_at = EXCLUDED.observed_at, "
            "received_at = EXCLUDED.received_at"
        )
        rows = [tuple(r.row()[c] for c in FEEDBACK_COLUMNS) for r in records]

        def write(conn: Any) -> None:
            with conn.cursor() as cur:
                cur.executemany(sql, rows)

        self._run("writing feedback", write)

    def _select(self, sql: str, params: Sequence[Any], columns: Sequence[str]) -> list[dict]:
        def read(conn: Any) -> list[dict]:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return [dict(zip(columns, row, strict=True)) for row in cur.fetchall()]

        return self._run("reading", read)

    def read_predictions(
        self, start: datetime | None = None, end: datetime | None = None
    ) -> pd.DataFrame:
        where, params = [], []
        if start is not None:
            where.append("ts >= %s")
            params.append(start)
        if end is not None:
            where.append("ts < %s")
            params.append(end)
        sql = f"SELECT {', '.join(PREDICTION_COLUMNS)} FROM {self.predictions}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return _predictions_frame(self._select(sql + " ORDER BY ts", params, PREDICTION_COLUMNS))

    def read_feedback(self) -> pd.DataFrame:
        sql = f"SELECT {', '.join(FEEDBACK_COLUMNS)} FROM {self.feedback}"
        return _feedback_frame(self._select(sql, [], FEEDBACK_COLUMNS))

    def known(self, request_ids: Iterable[str]) -> dict[str, str]:
        ids = list(set(request_ids))
        if not ids:
            return {}
        rows = self._select(
            f"SELECT request_id, model_tag FROM {self.predictions} WHERE request_id = ANY(%s)",
            [ids],
            ("request_id", "model_tag"),
        )
        return {r["request_id"]: r["model_tag"] for r in rows}

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


def labeled(predictions: pd.DataFrame, feedback: pd.DataFrame) -> pd.DataFrame:
    """Predictions joined with the latest label returned for each (inner join)."""
    labels = latest_labels(feedback)
    return predictions.merge(labels, on="request_id", how="inner")


def expand(df: pd.DataFrame, column: str) -> pd.DataFrame:
    """A JSON-text column of objects as one column per key."""
    values = [json.loads(v) if isinstance(v, str) else {} for v in df[column]]
    return pd.DataFrame(values, index=df.index)


def now() -> datetime:
    return datetime.now(UTC)
