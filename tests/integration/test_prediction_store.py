"""The prediction log's sinks, for real: parquet files and a PostgreSQL server."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from crispops.monitoring.store import (
    FeedbackRecord,
    ParquetSink,
    PostgresSink,
    PredictionRecord,
    SinkError,
    expand,
    labeled,
)
from tests.conftest import service_available

pytestmark = pytest.mark.integration
DSN = "postgresql://postgres@127.0.0.1:5432/test"


def recs(n: int, t0: datetime) -> list[PredictionRecord]:
    return [
        PredictionRecord(
            f"r{i}",
            t0 + timedelta(minutes=i),
            "m:1",
            "predict",
            entity={"k": i},
            inputs={"x": float(i), "c": "a"},
            request={"q": 1},
            prediction=1,
            probabilities={"0": 0.3, "1": 0.7},
            score=0.7,
        )
        for i in range(n)
    ]


def roundtrip(sink) -> None:  # type: ignore[no-untyped-def]
    """Writes, repeats (ignored), windows, known ids, labels (last one wins)."""
    t0 = datetime(2026, 1, 1, 23, 50, tzinfo=UTC)
    sink.write_predictions(recs(20, t0))
    sink.write_predictions(recs(3, t0))  # repeats
    df = sink.read_predictions()
    assert len(df) == 20
    assert len(sink.read_predictions(t0 + timedelta(minutes=5), t0 + timedelta(minutes=15))) == 10
    assert sink.known(["r1", "zz"]) == {"r1": "m:1"}
    now = datetime.now(UTC)
    sink.write_feedback([FeedbackRecord("r1", 1, now, now), FeedbackRecord("r2", 0, now, now)])
    sink.write_feedback([FeedbackRecord("r1", 0, now, now + timedelta(seconds=1))])
    j = labeled(df, sink.read_feedback())
    assert dict(zip(j.request_id, j.label, strict=True)) == {"r1": "0", "r2": "0"}
    assert list(expand(df, "inputs").columns) == ["x", "c"]


def test_parquet(tmp_path) -> None:
    roundtrip(ParquetSink(tmp_path))


@pytest.mark.postgres
def test_postgres() -> None:
    service_available("127.0.0.1", 5432, "PostgreSQL")
    s = PostgresSink(DSN, prefix="t" + uuid.uuid4().hex[:8])
    roundtrip(s)
    s.close()


def test_postgres_down() -> None:
    s = PostgresSink("postgresql://postgres@127.0.0.1:1/test", connect_timeout=1)
    with pytest.raises(SinkError, match="cannot connect"):
        s.write_predictions(recs(1, datetime.now(UTC)))
