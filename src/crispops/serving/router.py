"""The champion's router: which model answers a record, and the challenger's calls.

The champion's service is the router. Its settings are one JSON file, the one the
cluster's rollout writes into the ConfigMap ``crispops-rollout`` (mounted at
``/etc/crispops/rollout/rollout.json``; ``$CRISPOPS_ROUTER_CONFIG`` names another
file, as `crispops serve --challenger` does locally)::

    {"mode": "off" | "shadow" | "canary", "weight": 10,
     "challenger_url": "http://crispops-model-service-challenger.crispops.svc:3000",
     "challenger_model_tag": "...", "challenger_bento_tag": "...", "timeout_s": 1.0}

The file is re-read when its mtime changes, checked at most once a second, so a
rollout steps its weight with one ConfigMap write and no restart; a missing file is
mode ``off``, an unreadable one keeps the last good settings (and says so once).

Routing is by a stable hash: :func:`bucket` maps the entity keys (sorted
``key=value`` pairs, BLAKE2b) or, for a record without keys, its request id, to a
number in [0, 100); the record goes to (canary) or is mirrored to (shadow) the
challenger when that number is below ``weight``. One entity always meets the same
model, at every worker and replica.

The challenger is a crispops model service of its own (a second `bentoml serve`
locally, a second Deployment on a cluster) that logs its own answers; the router
calls it over kept HTTP/1.1 connections (crispops.serving.peer) with a short timeout,
on the worker's own event loop, never awaited by a shadow request, so neither a slow
nor a failing challenger reaches the champion's answers in shadow. In canary a failed
call falls back to the champion's answer; the failure is counted and logged as an
``error`` record under the challenger's tag, which the rollout's analysis sees as the
challenger's error rate.

Nothing here imports BentoML.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import hashlib
import json
import logging
import math
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crispops.serving.peer import Peer, PeerError
from crispops.serving.schemas import REQUEST_ID

log = logging.getLogger("crispops.serving.router")

#: The variable naming the router's settings file (default: the ConfigMap's mount).
CONFIG_ENV = "CRISPOPS_ROUTER_CONFIG"
DEFAULT_CONFIG = Path("/etc/crispops/rollout/rollout.json")
MODES = ("off", "shadow", "canary")
#: Least seconds between two looks at the settings file's mtime.
CHECK_EVERY_S = 1.0
#: Shadow mirrors are sent together: every MIRROR_EVERY_S the records mirrored since go
#: to the challenger in one POST (at most MIRROR_BATCH records each), so a request pays
#: a deque append, not a call. With one call per request, shadow cost the champion's
#: worker 14% (16 connections) and 23% (1) more CPU per request here; batched every
#: 100 ms, 4% and 2% (`python -m bench serving --router-only`; every 20 ms, at 1
#: connection a batch held a record or two, and it cost 6-8%).
MIRROR_EVERY_S = 0.1
MIRROR_BATCH = 256
#: Records mirrored and not yet answered, per worker; beyond it a mirror is dropped.
MAX_SHADOW_QUEUED = 4096


class RouterConfigError(ValueError):
    """The router's settings file says something it cannot use; the message says what."""


@dataclass(frozen=True)
class RouteConfig:
    mode: str = "off"
    weight: float = 0.0
    challenger_url: str | None = None
    challenger_tag: str | None = None  # the challenger's model tag, as the log carries it
    challenger_bento_tag: str | None = None
    timeout_s: float = 1.0

    def model_tag(self, champion_model_tag: str) -> str | None:
        """The challenger's model tag: as given, else from its Bento tag (a crispops Bento
        carries its model's version, and both models are named by the FeatureService,
        as the champion's is) - what the cluster's rollout.json gives."""
        if self.challenger_tag:
            return self.challenger_tag
        if self.challenger_bento_tag and ":" in self.challenger_bento_tag:
            name = champion_model_tag.split(":", 1)[0]
            return f"{name}:{self.challenger_bento_tag.split(':', 1)[1]}"
        return None

    @property
    def active(self) -> bool:
        """Records are hashed (at weight 0 too: a rollout's first moments cost that)."""
        return self.mode != "off" and bool(self.challenger_url)

    @classmethod
    def parse(cls, data: Any, where: str = "router settings") -> RouteConfig:
        if not isinstance(data, Mapping):
            raise RouterConfigError(f"{where}: expected a JSON object, got {type(data).__name__}")
        mode = data.get("mode", "off")
        if mode not in MODES:
            raise RouterConfigError(f"{where}: mode {mode!r} is not one of {', '.join(MODES)}")
        weight = data.get("weight", 100 if mode == "shadow" else 0)
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise RouterConfigError(f"{where}: weight {weight!r} is not a number")
        if not 0 <= float(weight) <= 100:
            raise RouterConfigError(f"{where}: weight {weight!r} is not within 0..100 (percent)")
        url = data.get("challenger_url")
        if mode != "off" and not (isinstance(url, str) and url.startswith(("http://", "https://"))):
            raise RouterConfigError(
                f"{where}: mode {mode} needs challenger_url (http://host:port), got {url!r}"
            )
        timeout = data.get("timeout_s", 1.0)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise RouterConfigError(f"{where}: timeout_s {timeout!r} is not a positive number")
        tag = data.get("challenger_model_tag")
        bento = data.get("challenger_bento_tag")
        return cls(
            mode=mode,
            weight=float(weight),
            challenger_url=url.rstrip("/") if isinstance(url, str) else None,
            challenger_tag=str(tag) if tag else None,
            challenger_bento_tag=str(bento) if bento else None,
            timeout_s=float(timeout),
        )


def config_path() -> Path:
    from crispops.config import env

    return Path(env(CONFIG_ENV) or DEFAULT_CONFIG)


class ConfigFile:
    """The settings file, re-read when its mtime changes (looked at once a second at
    most: a request pays a clock read, a stat once a second)."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.clock = clock
        self.config = RouteConfig()
        self._mtime: float | None = None
        self._next = 0.0
        self._warned: str | None = None
        self._lock = threading.Lock()
        self.current(force=True)

    def current(self, force: bool = False) -> RouteConfig:
        now = self.clock()
        if not force and now < self._next:
            return self.config
        with self._lock:
            self._next = now + CHECK_EVERY_S
            try:
                mtime = self.path.stat().st_mtime_ns
            except OSError:
                if self._mtime is not None:
                    log.info("router: %s is gone; routing off", self.path)
                self._mtime, self.config = None, RouteConfig()
                return self.config
            if mtime == self._mtime:
                return self.config
            try:
                config = RouteConfig.parse(json.loads(self.path.read_text()), str(self.path))
            except (OSError, ValueError) as exc:  # RouterConfigError and JSON errors
                if str(exc) != self._warned:
                    log.warning("router: %s; keeping %s", exc, self.config)
                    self._warned = str(exc)
                return self.config
            self._mtime, self._warned = mtime, None
            if config != self.config:
                log.info("router: %s", config)
            self.config = config
            return config


def bucket(keys: Mapping[str, Any] | None, request_id: str) -> float:
    """A stable number in [0, 100) for a record: from its entity keys (sorted
    ``key=value`` pairs) when it has any, else from its request id."""
    text = "&".join(f"{k}={keys[k]}" for k in sorted(keys)) if keys else f"request_id={request_id}"
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 * 100


def split(given: Sequence[str | None], weight: float) -> list[int]:
    """The indices of the records a canary at ``weight`` sends the challenger, from
    their request ids alone: a record with an id by its :func:`bucket`, one without by
    a draw (its id is made afterwards from the share it drew, :func:`new_id`), so
    no id is made for a record the champion answers as sent."""
    return [
        i
        for i, rid in enumerate(given)
        if (bucket(None, rid) if rid else random.random() * 100) < weight
    ]


class ChallengerError(RuntimeError):
    """A call to the challenger failed (unreachable, slow, an error status, a bad body)."""


#: A queued shadow mirror: (url, timeout, records, on_done).
_Mirror = tuple[
    str,
    float,
    list[Mapping[str, Any]],
    Callable[[list[dict[str, Any]] | None, Exception | None], None],
]


class Challenger:
    """Calls to the challenger's service on an event loop: the server's own when given
    (the worker's), else one on a thread of its own. On the server's loop a canary's
    call costs the champion no thread switch each way: in paired 12 s runs at 16
    connections, canary 10% answered 3-6% fewer requests a second than one model with
    the calls on a thread of their own, and within 2% of it on the server's loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._thread: threading.Thread | None = None
        if loop is None:
            loop = asyncio.new_event_loop()
            self._thread = threading.Thread(
                target=loop.run_forever, name="crispops-router", daemon=True
            )
            self._thread.start()
        self._loop = loop
        self._client: Peer | None = None
        self.shadow_in_flight = 0  # records mirrored, not yet answered
        self._count = threading.Lock()
        self._mirrors: collections.deque[_Mirror] = collections.deque()
        self._flusher: concurrent.futures.Future[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop its calls run on."""
        return self._loop

    def _http(self) -> Peer:
        """The client (crispops.serving.peer), made on the router's loop it belongs to:
        aiohttp's took 3-4 times its CPU per call, httpx's pool checked every idle
        connection for expiry on each call."""
        if self._client is None:
            self._client = Peer()
        return self._client

    async def _post(self, url: str, body: Any, timeout: float) -> list[dict[str, Any]]:
        try:
            status, content = await self._http().post_json(url, json.dumps(body).encode(), timeout)
        except TimeoutError:
            raise ChallengerError(f"{url}: no answer within {timeout:g} s") from None
        except PeerError as exc:
            raise ChallengerError(f"{url}: {exc}") from None
        if status != 200:
            text = content[:200].decode("utf-8", "replace")
            raise ChallengerError(f"{url}: answered {status} {text}")
        try:
            answers = json.loads(content)
        except ValueError:
            raise ChallengerError(f"{url}: the answer is not JSON") from None
        if not isinstance(answers, list) or len(answers) != len(body["records"]):
            raise ChallengerError(f"{url}: expected {len(body['records'])} answers")
        return answers

    async def ask(
        self, url: str, records: Sequence[Mapping[str, Any]], timeout: float
    ) -> list[dict[str, Any]]:
        """POST ``records`` to ``url``, awaited on the router's loop (the caller's when
        it runs there); the answers, in order."""
        if running_loop() is self._loop:
            return await self._post(url, {"records": list(records)}, timeout)
        return await asyncio.wrap_future(self.call(url, records, timeout))

    def call(
        self, url: str, records: Sequence[Mapping[str, Any]], timeout: float
    ) -> concurrent.futures.Future[list[dict[str, Any]]]:
        """POST ``records`` to ``url`` on the router's loop, from any thread."""
        coro = self._post(url, {"records": list(records)}, timeout)
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def mirror(
        self,
        url: str,
        records: Sequence[Mapping[str, Any]],
        timeout: float,
        on_done: Callable[[list[dict[str, Any]] | None, Exception | None], None],
    ) -> bool:
        """Shadow: queue ``records`` for the next batch and return at once; ``on_done``
        runs on the router's thread with their answers or the batch's error. False
        (nothing queued) when MAX_SHADOW_QUEUED records wait already."""
        n = len(records)
        with self._count:
            if self.shadow_in_flight + n > MAX_SHADOW_QUEUED:
                return False
            self.shadow_in_flight += n
            self._mirrors.append((url, timeout, list(records), on_done))
            if self._flusher is None:  # the first mirror starts the batches
                self._flusher = asyncio.run_coroutine_threadsafe(self._every(), self._loop)
        return True

    async def _every(self) -> None:
        while True:
            await asyncio.sleep(MIRROR_EVERY_S)
            self._flush()

    def _flush(self) -> None:
        """On the router's loop: the queued mirrors, in POSTs of whole mirrors."""
        batches: dict[tuple[str, float], list[list[_Mirror]]] = {}
        while self._mirrors:
            m = self._mirrors.popleft()
            chunks = batches.setdefault((m[0], m[1]), [[]])
            if chunks[-1] and sum(len(x[2]) for x in chunks[-1]) + len(m[2]) > MIRROR_BATCH:
                chunks.append([])
            chunks[-1].append(m)
        for (url, timeout), chunks in batches.items():
            for chunk in chunks:
                task = self._loop.create_task(self._send(url, timeout, chunk))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _send(self, url: str, timeout: float, chunk: list[_Mirror]) -> None:
        records = [r for m in chunk for r in m[2]]
        answers: list[dict[str, Any]] | None = None
        error: Exception | None = None
        try:
            answers = await self._post(url, {"records": records}, timeout)
        except Exception as exc:  # ChallengerError, or anything the client raised
            error = exc
        with self._count:
            self.shadow_in_flight -= len(records)
        at = 0
        for m in chunk:
            part = None if answers is None else answers[at : at + len(m[2])]
            at += len(m[2])
            try:
                m[3](part, error)
            except Exception:  # a callback must never take the router's thread down
                log.exception("router: shadow callback failed")

    def drain(self, timeout: float = 5.0) -> None:
        """Wait for the mirrors queued and in flight (a graceful stop), from a thread
        other than the router loop's."""
        deadline = time.monotonic() + timeout
        while self.shadow_in_flight and time.monotonic() < deadline:
            time.sleep(0.01)

    async def aclose(self, timeout: float = 5.0) -> None:
        """On the router's loop: the mirrors queued and in flight, then the client."""
        deadline = time.monotonic() + timeout
        while self.shadow_in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self._flusher is not None:
            self._flusher.cancel()
        if self._client is not None:
            self._client.close()

    def close(self) -> None:
        """Stop, from any thread; on the router loop's own, see :meth:`aclose`."""
        if running_loop() is self._loop:
            raise RuntimeError("Challenger.close() on its own loop: await aclose()")
        with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
            asyncio.run_coroutine_threadsafe(self.aclose(), self._loop).result(timeout=10)
        if self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running in this thread, if any."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


# -- records and their ids ------------------------------------------------------------
#: Most tries for a new request id in a share of the hash (see new_id): enough for a
#: share of 0.1% or more to miss once in e^20 records, 50 ms at worst.
MAX_ID_TRIES = 20_000


def new_id(lo: float = 0.0, hi: float = 100.0) -> str:
    """A new request id (32 hex digits, 128 random bits) whose :func:`bucket` is in
    [lo, hi): drawn until it is. A record the canary front routed by a draw (it came
    without an id) then carries an id the hash gives the model that answered it, as if
    the id had come first. On average it costs one draw per record whatever the
    weight (the candidates come a block per system call); a share under 0.1% may
    miss."""
    share = (hi - lo) / 100
    if share >= 1:
        return uuid.uuid4().hex
    tries = min(MAX_ID_TRIES, math.ceil(20 / share)) if share > 0 else 1
    block = max(1, min(tries, math.ceil(2 / share) if share > 0 else 1))
    rid = ""
    while tries > 0:
        digits = os.urandom(16 * block).hex()
        for k in range(0, 32 * block, 32):
            rid = digits[k : k + 32]
            if lo <= bucket(None, rid) < hi:
                return rid
        tries -= block
    return rid


def request_ids(rows: list[dict[str, Any]], at_least: float = 0.0) -> list[str]:
    """Each record's request id (the caller's, else a new one), taken out of the row;
    with ``at_least`` (a canary's weight, on the champion's side) a new one from the
    champion's share of the hash (:func:`new_id`)."""
    return [r.pop(REQUEST_ID, None) or new_id(at_least) for r in rows]


def unrouted(out: list[Any], chosen: list[int]) -> list[int]:
    """The indices of ``out`` that are not in ``chosen`` (the champion's records)."""
    skip = set(chosen)
    return [i for i in range(len(out)) if i not in skip]


def with_ids(rows: list[dict[str, Any]], ids: list[str], idx: list[int]) -> list[dict[str, Any]]:
    """The records at ``idx`` as sent on, each carrying its request id."""
    return [{**rows[i], REQUEST_ID: ids[i]} for i in idx]
