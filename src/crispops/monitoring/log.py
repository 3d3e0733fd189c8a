"""The model server's prediction log: a bounded queue and one writer thread.

The request path only appends to a bounded buffer (a lock and a list append): a list of
records, or a :class:`Deferred` holding references to what the request already has (its
rows, the values the model took, its answers) and a function that makes the records.
A background thread takes what is queued every ``PREPARE_EVERY_S``, makes the records
and their rows (JSON text) in short stretches paced by short sleeps (the thread shares
the worker's GIL: a stretch is all a request can wait for it), keeps the rows (plain
tuples) and writes them to the sink in batches of ``batch_size`` (or whatever has
waited ``flush_seconds``). Nothing the sink does reaches a request: when the buffer is
full, the surplus records are dropped; when a write fails (the database is down, the
disk is full), the batch is dropped. Both are counted (``on_dropped``), and written
records too (``on_written``), so a lossy log shows on /metrics.
:meth:`PredictionLog.close` (the server's shutdown hook) writes what is queued before
the process exits.

Nothing here imports BentoML; the counters are any objects with ``inc(n)``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
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

#: Records made and serialized between two hand-backs of the GIL (about 0.2 ms of work).
PREPARE_CHUNK = 16

#: How often the writer takes what the requests queued and makes their rows; it writes
#: them when ``batch_size`` are made or ``flush_seconds`` passed.
PREPARE_EVERY_S = 0.05

#: The writer's sleep between two stretches: a real sleep releases the GIL to the request
#: path (``sleep(0)`` does not: the writer takes it straight back). Paced so, the writer
#: still makes some 20,000 records a second, far above what a worker serves; it stops
#: pacing when flushing, closing, or behind (a quarter of the queue waiting).
PAUSE_S = 0.0005

#: Least seconds between two warnings about a failing sink (one line, not one per batch).
WARN_EVERY_S = 30.0


class _Counter(Protocol):
    def inc(self, amount: float = 1) -> None: ...


class Deferred:
    """``n`` records the writer makes by calling ``make()``: what the request path queues,
    so that building and serializing them is the writer's work, not the request's."""

    __slots__ = ("_made", "make", "n")

    def __init__(self, make: Callable[[], Sequence[PredictionRecord]], n: int) -> None:
        self.make = make
        self.n = n
        self._made: Sequence[PredictionRecord] | None = None

    def __len__(self) -> int:
        return self.n

    def records(self) -> Sequence[PredictionRecord]:
        if self._made is None:
            self._made = self.make()
        return self._made

    def split(self, k: int) -> tuple[Deferred, Deferred]:
        """The first ``k`` records and the rest, still to be made (once, for both)."""
        return (
            Deferred(lambda: self.records()[:k], k),
            Deferred(lambda: self.records()[k:], self.n - k),
        )


Entry = Sequence[PredictionRecord] | Deferred


def _records(entry: Entry) -> Sequence[PredictionRecord]:
    return entry.records() if isinstance(entry, Deferred) else entry


def _split(entry: Entry, k: int) -> tuple[Entry, Entry]:
    if isinstance(entry, Deferred):
        return entry.split(k)
    return entry[:k], entry[k:]


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
        self._buf: deque[Entry] = deque()
        self._queued = 0  # records in _buf
        self._next_take = 0.0  # the writer's next look at _buf (monotonic)
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
    def submit(self, records: Entry) -> int:
        """Queue ``records`` (a list, or a :class:`Deferred`); return how many were
        accepted (the rest are dropped)."""
        n = len(records)
        if not n:
            return 0
        with self._cond:
            if self._closing or self.sink is None:
                room = 0
            else:
                room = max(0, self.queue_size - self._queued)
            taken = min(n, room)
            if taken:
                # the whole entry as it is, or (the queue nearly full) its first records
                self._buf.append(records if taken == n else _split(records, taken)[0])
                self._queued += taken
                if self._queued >= self.batch_size:
                    self._cond.notify_all()
        lost = n - taken
        if lost:
            self._drop(lost, "queue full" if self.sink is not None else "no sink")
        return taken

    # -- the writer ----------------------------------------------------------------------
    def _run(self) -> None:
        # Rows made and not yet written: plain tuples of strings and numbers, which the
        # garbage collector stops tracking (what the requests left, their dicts and
        # answers, is let go within PREPARE_EVERY_S instead of ``flush_seconds``).
        ready: list[tuple[Any, ...]] = []
        due = math.inf  # when ``ready`` must be written (``flush_seconds`` after its first)
        while True:
            with self._cond:
                # wait for records to make, a write due, a flush() or shutdown
                while True:
                    now = time.monotonic()
                    hurry = self._closing or self._flushers > 0
                    if self._buf and (
                        hurry or self._queued >= PREPARE_CHUNK or now >= self._next_take
                    ):
                        break
                    if ready and (hurry or now >= due):
                        break
                    if self._closing and not self._buf and not ready:
                        return
                    until = min(due if ready else math.inf, now + PREPARE_EVERY_S)
                    self._cond.wait(max(until - now, 0.001))
                batch = self._take(self.batch_size - len(ready)) if self._buf else []
                self._in_flight = len(ready) + sum(len(e) for e in batch)
            if batch and not ready:
                due = time.monotonic() + self.flush_seconds
            ready.extend(self._make(batch))
            self._next_take = time.monotonic() + PREPARE_EVERY_S
            if ready and (len(ready) >= self.batch_size or hurry or time.monotonic() >= due):
                self._write(ready)
                ready = []
                due = math.inf
            with self._cond:
                self._in_flight = len(ready)
                self._cond.notify_all()

    def _take(self, most: int) -> list[Entry]:
        """Up to ``most`` records off the front of the buffer (under the lock)."""
        batch: list[Entry] = []
        size = 0
        while self._buf and size < most:
            entry = self._buf.popleft()
            want = most - size
            if len(entry) > want:  # split it: the rest stays first in line
                entry, rest = _split(entry, want)
                self._buf.appendleft(rest)
            batch.append(entry)
            size += len(entry)
        self._queued -= size
        return batch

    def _pace(self) -> None:
        """Hand the GIL to the request path for a moment, unless the log must hurry."""
        if self._closing or self._flushers or self._queued * 4 >= self.queue_size:
            return
        time.sleep(PAUSE_S)

    def _make(self, batch: list[Entry]) -> list[tuple[Any, ...]]:
        """The entries' rows, made in short stretches so a request never waits long for
        the GIL; an entry that cannot be made is dropped and counted."""
        rows: list[tuple[Any, ...]] = []
        todo = 0
        for entry in batch:
            try:
                made = [rec.row() for rec in _records(entry)]
            except Exception as exc:  # a record the log cannot hold costs it, not the server
                self._drop(len(entry), f"cannot make the record: {exc}")
                continue
            rows.extend(made)
            todo += len(made)
            if todo >= PREPARE_CHUNK:
                todo = 0
                self._pace()
        return rows

    def _write(self, rows: list[tuple[Any, ...]]) -> None:
        assert self.sink is not None
        n = len(rows)
        try:
            self.sink.write_rows(rows)
        except Exception as exc:  # any failure of the sink costs records, never the server
            self._drop(n, f"sink failed: {exc}")
            return
        self.written += n
        if self._on_written is not None:
            self._on_written.inc(n)

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
            return self._queued + self._in_flight

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every record queued so far is written (or dropped); False when
        ``timeout`` passed first."""
        with self._cond:
            self._flushers += 1
            self._cond.notify_all()
            try:
                return self._cond.wait_for(
                    lambda: (
                        (not self._queued and self._in_flight == 0) or not self._thread.is_alive()
                    ),
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
            left = self._queued
            self._buf.clear()
            self._queued = 0
        if left:
            self._drop(left, f"not written within {timeout:g} s of shutdown")
        if self.sink is not None:
            try:
                self.sink.close()
            except Exception as exc:  # closing a broken connection
                log.debug("prediction log: closing the sink: %s", exc)

    def stats(self) -> dict[str, Any]:
        return {"written": self.written, "dropped": self.dropped, "pending": self.pending}
