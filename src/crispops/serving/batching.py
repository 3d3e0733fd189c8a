"""A bound on how long BentoML's adaptive batcher holds a request on purpose.

BentoML 1.4's batcher (``bentoml._internal.marshal.dispatcher``) waits for a batch to
fill while ``n * (wait of the newest + 1 ms + a) <= 0.95 * wait``, where ``wait`` is
the mean of the last 50 batches' queueing times, refreshed at most every 5 s. Under
load those times are long (requests queue behind the batch being scored), so after a
burst the batcher keeps holding each lone request for as long as requests had queued
during the burst, and lets go of it only a few percent a refresh. Measured here with
one worker on one core (``/predict``, one record): 2.4-3.6 ms p50 at one connection
before any load, 10.2 ms in the first 3 s after 6 s at 16 connections, 9.0, 7.1 and
5.4 ms in the next three, back to 2.4 ms after 12-15 s.

The bound is the serving setting ``max_batch_wait_ms``, as in Triton's
``max_queue_delay_microseconds`` and Ray Serve's ``batch_wait_timeout_s``: the learned
wait never exceeds it. Batches still form under load: requests that arrive while a
batch is scored go together in the next one, whatever the bound.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("crispops.serving")

__all__ = ["bound_batch_wait"]


def bound_batch_wait(ms: float) -> None:
    """Cap the learned wait of every BentoML batcher in this process at ``ms`` (a
    warning, and BentoML's own wait, where this BentoML has no such batcher)."""
    try:
        from bentoml._internal.marshal import dispatcher

        optimizer: Any = dispatcher.Optimizer
        optimizer.trigger_refresh  # noqa: B018 - what the bound wraps
    except (ImportError, AttributeError) as exc:
        log.warning("serving.max_batch_wait_ms not applied: this BentoML differs (%s)", exc)
        return
    refresh = optimizer.__dict__.get("_crispops_refresh", optimizer.trigger_refresh)
    cap = ms / 1000.0

    def trigger_refresh(self: Any) -> None:
        refresh(self)
        self.wait = min(self.wait, cap)

    optimizer._crispops_refresh = refresh  # the original, when bound again
    optimizer.trigger_refresh = trigger_refresh
