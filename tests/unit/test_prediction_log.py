"""The prediction log's writer: bounded, batched, lossy only when it must be, and counted."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crispops.config import MonitoringSettings
from crispops.monitoring.log import Deferred, PredictionLog, make_sink
from crispops.monitoring.store import ParquetSink, PredictionRecord, SinkError


def recs(n: int, start: int = 0) -> list[PredictionRecord]:
    now = datetime.now(UTC)
    return [PredictionRecord(f"r{i}", now, "m:1", "predict") for i in range(start, start + n)]


class Counter:
    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        self.value += amount


class MemorySink:
    """Records the batches; ``gate`` (when set) holds every write until it opens;
    ``fail`` makes writes raise."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.batches: list[list[str]] = []
        self.gate = gate
        self.fail = False
        self.closed = False

    def write_rows(self, rows: Sequence[tuple[object, ...]]) -> None:
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail:
            raise SinkError("down")
        self.batches.append([str(r[0]) for r in rows])  # request_id comes first

    def close(self) -> None:
        self.closed = True

    @property
    def ids(self) -> list[str]:
        return [i for b in self.batches for i in b]


def make(sink: MemorySink, **kw: float) -> tuple[PredictionLog, Counter, Counter]:
    dropped, written = Counter(), Counter()
    opts = {"queue_size": 10, "batch_size": 4, "flush_seconds": 30.0} | kw
    plog = PredictionLog(
        sink,  # type: ignore[arg-type]
        queue_size=int(opts["queue_size"]),
        batch_size=int(opts["batch_size"]),
        flush_seconds=opts["flush_seconds"],
        on_dropped=dropped,
        on_written=written,
    )
    return plog, dropped, written


def wait_for(cond: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_full_batch_is_written_without_waiting_for_the_timer() -> None:
    sink = MemorySink()
    plog, dropped, written = make(sink)  # flush_seconds 30: only a full batch wakes it
    assert plog.submit(recs(9)) == 9
    wait_for(lambda: len(sink.ids) == 8)
    assert sink.batches == [["r0", "r1", "r2", "r3"], ["r4", "r5", "r6", "r7"]]
    assert plog.pending == 1 and written.value == 8 and dropped.value == 0
    plog.close()


def test_the_timer_writes_a_partial_batch() -> None:
    sink = MemorySink()
    plog, _, written = make(sink, flush_seconds=0.05)
    plog.submit(recs(2))
    wait_for(lambda: written.value == 2)
    assert sink.batches == [["r0", "r1"]]
    plog.close()


def test_a_full_queue_drops_the_surplus_and_counts_it_without_blocking() -> None:
    gate = threading.Event()
    sink = MemorySink(gate)  # the sink hangs: nothing leaves the queue but one batch
    plog, dropped, _ = make(sink, queue_size=10, batch_size=4)
    plog.submit(recs(4))
    wait_for(lambda: plog.pending == 4 and not plog._buf)  # the batch is in flight
    started = time.monotonic()
    accepted = plog.submit(recs(15, start=4))
    assert time.monotonic() - started < 0.1, "submit waited for the sink"
    assert accepted == 10 and dropped.value == 5 and plog.dropped == 5
    gate.set()
    assert plog.flush(timeout=5)
    assert sink.ids == [f"r{i}" for i in range(14)]  # the first ten queued, in order
    plog.close()


def test_a_failing_sink_costs_the_batch_counted_and_the_log_goes_on() -> None:
    sink = MemorySink()
    sink.fail = True
    plog, dropped, written = make(sink)
    plog.submit(recs(4))
    assert plog.flush(timeout=5)
    assert dropped.value == 4 and written.value == 0
    sink.fail = False
    plog.submit(recs(2, start=4))
    assert plog.flush(timeout=5)
    assert sink.ids == ["r4", "r5"] and written.value == 2
    plog.close()


def test_close_writes_everything_queued_and_closes_the_sink() -> None:
    sink = MemorySink()
    plog, dropped, written = make(sink, queue_size=1000, batch_size=100)
    plog.submit(recs(250))
    plog.close()
    assert sorted(sink.ids) == sorted(f"r{i}" for i in range(250))
    assert written.value == 250 and dropped.value == 0 and sink.closed
    assert plog.submit(recs(1)) == 0 and dropped.value == 1  # after close: dropped, counted
    plog.close()  # twice is fine


def test_without_a_sink_every_record_is_dropped_and_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CRISPOPS_NO_SUCH_DSN", raising=False)
    settings = MonitoringSettings(sink="postgres", dsn_env="CRISPOPS_NO_SUCH_DSN")
    with pytest.raises(SinkError, match=r"\$CRISPOPS_NO_SUCH_DSN .* holds no DSN"):
        make_sink(settings)
    dropped = Counter()
    plog = PredictionLog.from_settings(settings, on_dropped=dropped)
    assert plog.submit(recs(3)) == 0 and dropped.value == 3
    plog.close()


def test_parquet_end_to_end(tmp_path: Path) -> None:
    plog = PredictionLog.from_settings(MonitoringSettings(path=tmp_path, batch_size=3))
    plog.submit(recs(7))
    plog.close()
    df = ParquetSink(tmp_path).read_predictions()
    assert sorted(df["request_id"]) == sorted(f"r{i}" for i in range(7))
    assert set(df["outcome"]) == {"ok"}


def test_the_log_settings_reach_the_server_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """serving_env writes them (the folder made absolute, the DSN only by name);
    monitoring_runtime reads them back in the `bentoml serve` process."""
    from crispops.config import load_settings, monitoring_runtime
    from crispops.serving.runtime import serving_env

    root = Path(__file__).resolve().parents[2]
    monkeypatch.setenv("CRISPOPS_MONITORING__SINK", "postgres")
    monkeypatch.setenv("CRISPOPS_MONITORING__LOG_PREDICTIONS", "false")
    monkeypatch.setenv("CRISPOPS_PREDICTION_LOG_DSN", "postgresql://secret@db/x")
    env = serving_env(load_settings(root))
    assert env["CRISPOPS_MONITORING__PATH"] == str(root / ".crispops" / "monitoring")
    assert env["CRISPOPS_MONITORING__SINK"] == "postgres"
    assert "secret" not in "".join(env.values())
    for key in list(env):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    runtime = monitoring_runtime()
    assert runtime.path.is_absolute() and runtime.sink == "postgres"
    assert runtime.log_predictions is False


def test_deferred_records_are_made_by_the_writer_not_the_caller() -> None:
    """The request path queues references; the records are made on the writer's
    thread, split across batches in order, and a full queue takes the first of them."""
    gate = threading.Event()
    sink = MemorySink(gate)  # holds the first write until the gate opens
    plog, dropped, written = make(sink, queue_size=10, batch_size=4)
    made_on: list[str] = []

    def maker(start: int, n: int) -> Deferred:
        def make_them() -> list[PredictionRecord]:
            made_on.append(threading.current_thread().name)
            return recs(n, start)

        return Deferred(make_them, n)

    assert plog.submit(maker(0, 3)) == 3
    assert plog.pending == 3
    assert plog.submit(maker(3, 3)) == 3  # a full batch: 3 + the first of these 3
    wait_for(lambda: plog._queued == 2)  # 4 in flight, held at the gate
    assert plog.submit(maker(6, 10)) == 8 and dropped.value == 2  # 10 queued at most
    gate.set()
    assert plog.flush(timeout=5)
    assert sink.ids == [f"r{i}" for i in range(14)]
    assert [len(b) for b in sink.batches] == [4, 4, 4, 2]
    assert set(made_on) == {"prediction-log"} and written.value == 14
    plog.close()


def test_a_deferred_that_cannot_be_made_costs_its_records_counted() -> None:
    sink = MemorySink()
    plog, dropped, written = make(sink)

    def broken() -> list[PredictionRecord]:
        raise ValueError("no such column")

    plog.submit(Deferred(broken, 2))
    plog.submit(recs(1))
    assert plog.flush(timeout=5)
    assert dropped.value == 2 and written.value == 1 and sink.ids == ["r0"]
    plog.submit(recs(2, start=5))
    assert plog.flush(timeout=5)
    assert sink.ids == ["r0", "r5", "r6"] and written.value == 3
    plog.close()


def test_what_waits_for_the_timer_is_made_early_and_counted_pending() -> None:
    """Between two writes the writer keeps plain rows, not the requests' objects."""
    sink = MemorySink()
    plog, _, written = make(sink, batch_size=100, flush_seconds=30.0)
    plog.submit(recs(3))
    wait_for(lambda: not plog._buf)  # taken and made within PREPARE_EVERY_S
    assert plog.pending == 3 and written.value == 0 and sink.ids == []
    assert plog.flush(timeout=5) and sink.ids == ["r0", "r1", "r2"]
    plog.close()
