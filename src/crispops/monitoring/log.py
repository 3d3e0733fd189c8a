"""The model server's prediction log: a bounded queue and one writer thread.

The request path only appends records to a bounded buffer (a lock and a list append);
a background thread takes them in batches of ``batch_size`` (or whatever has waited
``flush_seconds``) and writes them to the sink. Nothing the sink does reaches a
request: when the buffer is full, the surplus records are dropped; when a write fails
(the database is down, the disk is full), the batch is dropped. Both are counted
(``on_dropped``), and written records too (``on_written``), so a lossy log shows on
/metrics. :meth:`PredictionLog.close` (the server's shutdown hook) writes what is
queued before the process exits.

Nothing here imports BentoML; the counters are any objects with ``inc(n)``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol

from crispops.config import MonitoringSettings, prediction_log_dsn
from crispops.monitoring.store import (
    ParquetSink,
    PostgresSink,
    PredictionRecord,
    Sink,
    SinkError,
)

log = logging.getLogger("crispops.monitoring")

#: Records serialized between two hand-backs of the GIL (about 1 ms of work).
PREPARE_CHUNK = 64

#: Least seconds between two warnings about a failing sink (one line, not one per batch).
WARN_EVERY_S = 30.0


class _Counter(Protocol):
    def inc(self, amount: float = 1) -> None: ...


def make_sink(monitoring: MonitoringSettings) -> Sink:
    """The sink the settings choose; ``monitoring.path`` must be absolute here (the
    server's working directory is not the project's)."""
    if monitoring.sink == "postgres":
        dsn = prediction_log_dsn(monitoring)
        if dsn is None:
            raise SinkError(
                f"monitoring.sink is postgres but ${monitoring.dsn_env} (monitoring.dsn_env) "
                "holds no DSN"
            )
        return PostgresSink(dsn, prefix=monitoring.table_prefix)
    return ParquetSink(monitoring.path)


class PredictionLog:
    """Records in, batches out to ``sink`` on a thread of its own; never blocks a caller
    for longer than a lock."""

    def __init__(
        self,
        sink: Sink | None,
        *,
        queue_size: int = 10_000,
        batch_size: int = 256,
        flush_seconds: float = 0.5,
        on_dropped: _Counter | None = None,
        on_written: _Counter | None = None,
    ) -> None:
        self.sink = sink  # None: the sink could not be made; every record is dropped
        self.queue_size = queue_size
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self._on_dropped = on_dropped
        self._on_written = on_written
        self.dropped = 0
        self.written = 0
        self._buf: list[PredictionRecord] = []
        self._in_flight = 0
        self._flushers = 0  # callers of flush() waiting: the writer does not wait the timer
        self._closing = False
        self._cond = threading.Condition()
        self._last_warning = -WARN_EVERY_S
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    @classmethod
    def from_settings(
        cls,
        monitoring: MonitoringSettings,
        on_dropped: _Counter | None = None,
        on_written: _Counter | None = None,
    ) -> PredictionLog:
        """The log the settings describe; a sink that cannot be made (no DSN) is logged
        once and every record counted as dropped: the server serves anyway."""
        try:
            sink: Sink | None = make_sink(monitoring)
        except SinkError as exc:
            log.error("prediction log off: %s; every record will be counted as dropped", exc)
            sink = None
        return cls(
            sink,
            queue_size=monitoring.queue_size,
            batch_size=monitoring.batch_size,
            flush_seconds=monitoring.flush_seconds,
            on_dropped=on_dropped,
            on_written=on_written,
        )

    # -- the request path --------------------------------------------------------------
    def submit(self, records: Sequence[PredictionRecord]) -> int:
        """Queue ``records``; return how many were accepted (the rest are dropped)."""
        if not records:
            return 0
        with self._cond:
            if self._closing or self.sink is None:
                room = 0
            else:
                room = max(0, self.queue_size - len(self._buf))
            taken = records[:room] if room < len(records) else records
            if taken:
                self._buf.extend(taken)
                if len(self._buf) >= self.batch_size:
                    self._cond.notify_all()
        lost = len(records) - len(taken)
        if lost:
            self._drop(lost, "queue full" if self.sink is not None else "no sink")
        return len(taken)

    # -- the writer ----------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                deadline = time.monotonic() + self.flush_seconds
                # wait for a full batch, the timer, shutdown, or a flush() with work to do
                while (
                    len(self._buf) < self.batch_size
                    and not self._closing
                    and not (self._flushers and self._buf)
                ):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                if not self._buf:
                    if self._closing:
                        return
                    continue
                batch = self._buf[: self.batch_size]
                del self._buf[: self.batch_size]
                self._in_flight = len(batch)
            self._write(batch)
            with self._cond:
                self._in_flight = 0
                self._cond.notify_all()

    def _write(self, batch: list[PredictionRecord]) -> None:
        assert self.sink is not None
        try:
            # The records' JSON is most of a write's CPU: make it in short stretches and
            # hand the GIL back between them, so the request path never waits a batch.
            for i in range(0, len(batch), PREPARE_CHUNK):
                for rec in batch[i : i + PREPARE_CHUNK]:
                    rec.row()
                time.sleep(0)
            self.sink.write_predictions(batch)
        except Exception as exc:  # any failure of the sink costs records, never the server
            self._drop(len(batch), f"sink failed: {exc}")
            return
        self.written += len(batch)
        if self._on_written is not None:
            self._on_written.inc(len(batch))

    def _drop(self, n: int, why: str) -> None:
        self.dropped += n
        if self._on_dropped is not None:
            self._on_dropped.inc(n)
        now = time.monotonic()
        if now - self._last_warning >= WARN_EVERY_S:
            self._last_warning = now
            log.warning("prediction log: %d record(s) dropped (%s)", n, why)

    # -- flushing and stopping -------------------------------------------------------------
    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._buf) + self._in_flight

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every record queued so far is written (or dropped); False when
        ``timeout`` passed first."""
        with self._cond:
            self._flushers += 1
            self._cond.notify_all()
            try:
                return self._cond.wait_for(
                    lambda: (not self._buf and self._in_flight == 0) or not self._thread.is_alive(),
                    timeout,
                )
            finally:
                self._flushers -= 1

    def close(self, timeout: float = 20.0) -> None:
        """Write what is queued, stop the writer, close the sink. Idempotent."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        with self._cond:
            left = len(self._buf)
            self._buf.clear()
        if left:
            self._drop(left, f"not written within {timeout:g} s of shutdown")
        if self.sink is not None:
            try:
                self.sink.close()
            except Exception as exc:  # closing a broken connection
                log.debug("prediction log: closing the sink: %s", exc)

    def stats(self) -> dict[str, Any]:
        return {"written": self.written, "dropped": self.dropped, "pending": self.pending}
