"""The canary's front for /predict: records routed before BentoML's batcher.

BentoML 1.4 runs one batch of a batchable API per worker at a time; a batch that
waited on the challenger's HTTP answer would hold back every other /predict request.
:class:`CanaryFront` is an ASGI middleware on the champion's service: in a canary (the
router's settings say canary, weight above 0) it splits a /predict request's records
by the router's hash, sends the champion's on through the inner app (so they batch)
and the challenger's to the challenger at the same time, and merges the answers in
the request's order; a request that is all the champion's goes on as sent. Outside
a canary it passes every request on untouched, its body unread. Nothing here imports
BentoML.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from crispops.serving.router import new_id, unrouted, with_ids
from crispops.serving.schemas import REQUEST_ID


class Live:
    """The worker's service instance, set when BentoML has made it (after the app)."""

    model: Any = None


class CanaryFront:
    """A canary on /predict, routed before BentoML's batcher: BentoML runs one batch of
    an API per worker at a time, so a batch that waited on the challenger's HTTP answer
    would hold back every other /predict request. Only while the router's settings are
    canary with a weight above 0 does it read the body, and then first with
    ``json.loads`` alone, for the records' request ids: a record with an id goes by
    its hash, one without by a draw. A request whose records all stay with the
    champion goes on as sent (its records' new ids are made by predict, from the
    champion's share of the hash). Otherwise the body is checked with the API's own
    input model (a bad body goes on as sent, for BentoML's usual 400), the champion's
    records sent on through the inner app (so they batch) while the challenger's go
    to the challenger, each new id drawn from its model's share, and the answers
    merged back in the request's order. A failed or slow challenger call is counted
    and logged as today, and the champion answers those records (a second pass
    through the batcher). Any other request, and every request outside a canary, goes
    on untouched."""

    PATH = "/predict"
    ENDPOINT = "predict"

    def __init__(self, app: Any, live: Live, request: Any) -> None:
        self.app = app
        self.live = live
        self.request = request  # the API's input model: BentoML's own validation

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        model = self.live.model
        if (
            scope["type"] != "http"
            or scope.get("path") != self.PATH
            or scope.get("method") != "POST"
            or model is None
            or not model.router.canary_on()
            or _media_type(scope) != "application/json"
        ):
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:  # the client left before it sent the body
            return
        given = _given_ids(body)
        plan = None if given is None else model.router.split(given)
        if plan is None:  # every record the champion's (or a body BentoML answers: 400)
            # the body as sent: nothing made here is written into it (with the new ids
            # written in, the champion spent 19% more CPU per request than one model
            # at 16 connections, 8% without); predict draws their ids from its share
            await self.app(scope, _replay(body, receive), send)
            return
        try:
            records = self.request.model_validate_json(body).records
        except ValueError:  # pydantic's ValidationError: BentoML answers it (400)
            await self.app(scope, _replay(body, receive), send)
            return
        await self.route(model, scope, receive, send, body, records, plan)

    async def route(
        self,
        model: Any,
        scope: Any,
        receive: Any,
        send: Any,
        body: bytes,
        records: Any,
        plan: tuple[Any, list[int]],
    ) -> None:
        started = time.perf_counter()
        router = model.router
        cfg, chosen = plan
        rows = [r.model_dump() for r in records]
        drawn = set(chosen)
        ids = [  # a new id from the share of the model the record drew
            r.pop(REQUEST_ID, None) or (new_id(0, cfg.weight) if i in drawn else new_id(cfg.weight))
            for i, r in enumerate(rows)
        ]
        mine = unrouted(rows, chosen)
        pending: Any = router.send(self.ENDPOINT, cfg, rows, ids, chosen)
        champion: _Captured | None = None
        if mine:  # the challenger's call first: it runs while the champion's records batch
            pending = asyncio.ensure_future(pending)
            champion = await self.inner(scope, receive, rows, ids, mine)
            if champion.status != 200:  # a value the model cannot take: the error as
                _drop(pending)  # BentoML answers it for the request as it was sent
                await self.app(scope, _replay(body, receive), send)
                return
        try:  # (all the challenger's: awaited here, no task; its client times it out)
            async with asyncio.timeout(cfg.timeout_s + 1.0):
                answers = await pending
            preds = router.accept(answers)
        except Exception as exc:  # whatever the challenger did, the champion answers
            router.failed(self.ENDPOINT, cfg, rows, ids, chosen, exc, time.perf_counter() - started)
            stand_in = await self.inner(scope, receive, rows, ids, chosen)
            if stand_in.status != 200:
                await self.app(scope, _replay(body, receive), send)
                return
            theirs = stand_in.answers()
            champion = champion or stand_in
        else:
            elapsed = time.perf_counter() - started
            model.answered(self.ENDPOINT, preds[0].model_tag, preds, elapsed)
            theirs = [p.model_dump(mode="json") for p in preds]
        merged: list[Any] = [None] * len(rows)
        for i, answer in zip(chosen, theirs, strict=True):
            merged[i] = answer
        if champion is not None and mine:
            for i, answer in zip(mine, champion.answers(), strict=True):
                merged[i] = answer
        headers = champion.headers if champion is not None else [_JSON]
        await _respond(send, headers, json.dumps(merged, separators=(",", ":")).encode())

    async def inner(
        self, scope: Any, receive: Any, rows: list[dict[str, Any]], ids: list[str], idx: list[int]
    ) -> _Captured:
        """The records at ``idx`` through the inner app (the batched API): its answer."""
        captured = _Captured()
        await self.app(*_request(scope, receive, rows, ids, idx), captured.send)
        return captured


_JSON = (b"content-type", b"application/json")


class _Captured:
    """An inner app's response, kept instead of sent."""

    def __init__(self) -> None:
        self.status = 500
        self.headers: list[tuple[bytes, bytes]] = []
        self._chunks: list[bytes] = []

    async def send(self, message: Any) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
            self.headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            self._chunks.append(message.get("body", b""))

    def answers(self) -> list[Any]:
        return list(json.loads(b"".join(self._chunks)))


def _drop(task: asyncio.Future[Any]) -> None:
    """Cancel the challenger's call; an error it ended with already is read, not left
    for asyncio to report."""
    if task.done():
        if not task.cancelled():
            task.exception()
    else:
        task.cancel()


def _given_ids(body: bytes) -> list[str | None] | None:
    """Each record's request id as the body gives it (None: none given), read with
    ``json.loads`` alone; None for a body that is not ``{"records": [{...}, ...]}``
    with string ids (BentoML's validation answers it).

    The most common body, one record without an id, is told without parsing: a body
    with two ``{`` (an object in an object: records are flat, and a brace inside a
    string only adds to the count), no backslash (so no key is spelled with escapes)
    and no ``"request_id"`` key holds at most one record, and no id. Reading it with
    the API's model, the champion spent 8% more CPU per request than one model at 16
    connections, 2% without; a body that is not what it seems goes on to BentoML's
    validation as every other."""
    if body.count(b"{") == 2 and b"\\" not in body and b'"request_id"' not in body:
        return [None]
    try:
        records = json.loads(body)["records"]
    except (ValueError, TypeError, KeyError):
        return None
    if not isinstance(records, list):
        return None
    given: list[str | None] = []
    for r in records:
        if not isinstance(r, dict):
            return None
        rid = r.get(REQUEST_ID)
        if rid is not None and not isinstance(rid, str):
            return None
        given.append(rid)
    return given


def _media_type(scope: Any) -> str:
    """The request's media type, as BentoML picks its deserializer (JSON when unsaid)."""
    for key, value in scope.get("headers", ()):
        if key == b"content-type":
            return str(value.decode("latin-1").split(";")[0].strip())
    return "application/json"


async def _read_body(receive: Any) -> bytes | None:
    """The whole request body; None when the client disconnected first."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Any) -> Any:
    """A receive that gives ``body`` once, then the client's own (its disconnect)."""
    sent = False

    async def again() -> Any:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


def _request(
    scope: Any, receive: Any, rows: list[dict[str, Any]], ids: list[str], idx: list[int]
) -> tuple[Any, Any]:
    """(scope, receive) of a /predict request for the records at ``idx``, each with its
    request id."""
    body = json.dumps({"records": with_ids(rows, ids, idx)}).encode()
    return {**scope, "headers": _sized(scope["headers"], body)}, _replay(body, receive)


_BODY_HEADERS = (b"content-length", b"transfer-encoding")


def _sized(headers: Any, body: bytes) -> list[tuple[bytes, bytes]]:
    """``headers`` without their body framing, with ``body``'s content-length."""
    kept = [(k, v) for k, v in headers if k.lower() not in _BODY_HEADERS]
    kept.append((b"content-length", str(len(body)).encode()))
    return kept


async def _respond(send: Any, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": _sized(headers, body)})
    await send({"type": "http.response.body", "body": body})
