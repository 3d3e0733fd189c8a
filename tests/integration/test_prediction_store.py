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

    # shadow: a second model logs the same requests; both are kept, a repeat is not,
    # and a label joins both models' records
    other = [
        PredictionRecord(r.request_id, r.ts, "m:2", r.endpoint, score=0.1) for r in recs(3, t0)
    ]
    sink.write_predictions(other)
    sink.write_predictions(other[:1])
    both = sink.read_predictions()
    assert len(both) == 23
    assert sorted(both[both.request_id == "r1"].model_tag) == ["m:1", "m:2"]
    assert set(sink.known(["r1", "r9"])) == {"r1", "r9"}
    j = labeled(both, sink.read_feedback())
    assert sorted(zip(j.request_id, j.model_tag, j.label, strict=True)) == [
        ("r1", "m:1", "0"),
        ("r1", "m:2", "0"),
        ("r2", "m:1", "0"),
        ("r2", "m:2", "0"),
    ]


def test_parquet(tmp_path) -> None:
    roundtrip(ParquetSink(tmp_path))


@pytest.mark.postgres
def test_postgres() -> None:
    service_available("127.0.0.1", 5432, "PostgreSQL")
    s = PostgresSink(DSN, prefix="t" + uuid.uuid4().hex[:8])
    roundtrip(s)
    s.close()


@pytest.mark.postgres
def test_postgres_table_keyed_by_request_id_alone_is_rekeyed() -> None:
    """A table made before shadow rollouts (key: request_id) takes a second model's
    record of the same request once the sink has connected."""
    import psycopg

    service_available("127.0.0.1", 5432, "PostgreSQL")
    prefix = "t" + uuid.uuid4().hex[:8]
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE {prefix}_predictions (request_id TEXT PRIMARY KEY, "
            "ts TIMESTAMPTZ NOT NULL, model_tag TEXT NOT NULL, endpoint TEXT NOT NULL, "
            "entity TEXT, inputs TEXT, request TEXT, prediction TEXT, probabilities TEXT, "
            "score DOUBLE PRECISION, imputed TEXT)"
        )
    s = PostgresSink(DSN, prefix=prefix)
    t0 = datetime.now(UTC)
    s.write_predictions(recs(2, t0))
    s.write_predictions([PredictionRecord("r0", t0, "m:2", "predict")])
    df = s.read_predictions()
    assert sorted(zip(df.request_id, df.model_tag, strict=True)) == [
        ("r0", "m:1"),
        ("r0", "m:2"),
        ("r1", "m:1"),
    ]
    s.close()


def test_postgres_down() -> None:
    s = PostgresSink("postgresql://postgres@127.0.0.1:1/test", connect_timeout=1)
    with pytest.raises(SinkError, match="cannot connect"):
        s.write_predictions(recs(1, datetime.now(UTC)))
