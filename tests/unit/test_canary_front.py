"""The canary's front for /predict (service.CanaryFront) in process: a fake inner app
plays BentoML's batched API (it answers as the champion), a fake router decides and
calls the challenger. What goes through untouched, what is split, merged, fallen back
on and replayed for BentoML's own error."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field

from crispops.serving.router import ChallengerError, RouteConfig

CFG = RouteConfig(mode="canary", weight=50, challenger_url="http://challenger", timeout_s=0.5)


class Rec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    x: float
    request_id: str | None = None


class Input(BaseModel):
    records: list[Rec] = Field(min_length=1)


class Inner:
    """BentoML's app as the front sees it: /predict answers each record as the champion
    (400 naming the record, as `_guarded` does, for x == 999)."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.receives: list[Any] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.receives.append(receive)
        chunks = []
        while True:
            m = await receive()
            chunks.append(m.get("body", b""))
            if not m.get("more_body"):
                break
        body = b"".join(chunks)
        self.bodies.append(body)
        assert dict(scope["headers"])[b"content-length"] == str(len(body)).encode()
        try:
            records = Input.model_validate_json(body).records
        except ValueError:
            return await answer(send, 400, {"error": "1 validation error for Input"})
        bad = [i for i, r in enumerate(records) if r.x == 999]
        if bad:
            return await answer(send, 400, {"error": f"record {bad[0]}: bad value"})
        out = [
            {"prediction": r.x, "model_tag": "champ:1", "request_id": r.request_id or "made-late"}
            for r in records
        ]
        await answer(send, 200, out)


async def answer(send: Any, status: int, data: Any) -> None:
    body = json.dumps(data).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Router:
    """Records with x < 0 are the challenger's; its answers or its failure as given."""

    def __init__(self, on: bool = True, fails: bool = False) -> None:
        self.on, self.fails = on, fails
        self.pick: list[int] = []  # the indices split() gives the challenger
        self.given: list[list[str | None]] = []
        self.sent: list[list[dict[str, Any]]] = []
        self.failures: list[list[int]] = []

    def canary_on(self) -> bool:
        return self.on

    def split(self, given: list[str | None]) -> Any:
        self.given.append(given)
        return (CFG, self.pick) if self.pick else None

    async def send(
        self, endpoint: str, cfg: Any, rows: Any, ids: list[str], chosen: list[int]
    ) -> Any:
        body = [{**rows[i], "request_id": ids[i]} for i in chosen]
        self.sent.append(body)
        await asyncio.sleep(0)  # an answer comes later
        if self.fails:
            raise ChallengerError("http://challenger: answered 500")
        return [{**b, "prediction": -1, "model_tag": "chall:2"} for b in body]

    def accept(self, answers: list[dict[str, Any]]) -> Any:
        from crispops.serving.schemas import Prediction

        return [Prediction.model_validate(a) for a in answers]

    def failed(self, endpoint: str, cfg: Any, rows: Any, ids: Any, chosen: Any, *_: Any) -> None:
        self.failures.append(list(chosen))


class Model:
    def __init__(self, router: Router) -> None:
        self.router = router
        self.answered_by: list[tuple[str, int]] = []

    def answered(self, endpoint: str, tag: str, preds: list[Any], elapsed: float) -> None:
        self.answered_by.append((tag, len(preds)))


def call(
    front: Any, body: bytes, path: str = "/predict", ctype: bytes = b"application/json"
) -> tuple[int, dict[bytes, bytes], Any, Any]:
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [(b"content-type", ctype), (b"content-length", b"%d" % len(body))],
    }
    received: list[Any] = []
    sent: list[Any] = []

    async def receive() -> Any:
        received.append(1)
        if len(received) == 1:
            return {"type": "http.request", "body": body[:5], "more_body": True}
        if len(received) == 2:
            return {"type": "http.request", "body": body[5:], "more_body": False}
        await asyncio.sleep(3600)  # no disconnect while the test runs

    async def capture(message: Any) -> None:
        sent.append(message)

    async def main() -> None:
        await front(scope, receive, capture)
        await asyncio.sleep(0)  # a cancelled call ends
        current = asyncio.current_task()
        assert [t for t in asyncio.all_tasks() if t is not current and not t.done()] == []

    asyncio.run(main())
    status = sent[0]["status"]
    payload = b"".join(m.get("body", b"") for m in sent[1:])
    return status, dict(sent[0]["headers"]), json.loads(payload), receive


def make(router: Router) -> tuple[Any, Inner, Model]:
    # imported here, not at collection: the service module sets prometheus_client up
    from crispops.serving.canary import CanaryFront, Live

    inner, live = Inner(), Live()
    live.model = Model(router)
    return CanaryFront(inner, live=live, request=Input), inner, live.model


def body(*xs: float, ids: bool = True, router: Router | None = None) -> bytes:
    """A /predict body of records ``xs``; with ``router``, the negative ones are split off
    for the challenger."""
    if router is not None:
        router.pick = [i for i, x in enumerate(xs) if x < 0]
    recs = [{"x": x, **({"request_id": f"r{i}"} if ids else {})} for i, x in enumerate(xs)]
    return json.dumps({"records": recs}).encode()


@pytest.mark.parametrize("case", ["off", "other path", "not json"])
def test_outside_a_canary_the_request_goes_on_untouched(case: str) -> None:
    front, inner, _ = make(Router(on=case != "off"))
    sent = body(1, -2)
    path = "/predict_entity" if case == "other path" else "/predict"
    ctype = b"text/csv" if case == "not json" else b"application/json"
    status, _, out, receive = call(front, sent, path, ctype)
    assert inner.receives == [receive] and inner.bodies == [sent]  # the body unread, as sent
    assert status == 200 and [a["model_tag"] for a in out] == ["champ:1", "champ:1"]


def test_a_mixed_request_splits_and_merges_in_order() -> None:
    from crispops.serving.router import bucket

    router = Router()
    front, inner, model = make(router)
    status, headers, out, _ = call(front, body(1, -2, 3, -4, 5, ids=False, router=router))
    assert router.given == [[None] * 5]  # no ids given: the split is the router's draw
    assert status == 200 and headers[b"content-type"] == b"application/json"
    assert [a["prediction"] for a in out] == [1, -1, 3, -1, 5]
    assert [a["model_tag"] for a in out] == ["champ:1", "chall:2", "champ:1", "chall:2", "champ:1"]
    ids = [a["request_id"] for a in out]
    assert len(set(ids)) == 5 and "made-late" not in ids  # made once, before the split
    # each new id is one the hash gives the model that answered it (weight 50)
    assert [bucket(None, rid) < CFG.weight for rid in ids] == [False, True, False, True, False]
    assert [r["request_id"] for r in router.sent[0]] == [ids[1], ids[3]]
    [champion] = inner.bodies  # the champion saw its own records only, with their ids
    assert [(r["x"], r["request_id"]) for r in json.loads(champion)["records"]] == [
        (1, ids[0]),
        (3, ids[2]),
        (5, ids[4]),
    ]
    assert model.answered_by == [("chall:2", 2)] and router.failures == []


def test_a_request_all_for_the_challenger_never_reaches_the_champion() -> None:
    router = Router()
    front, inner, _ = make(router)
    status, headers, out, _ = call(front, body(-1, -2, router=router))
    assert router.given == [["r0", "r1"]]
    assert status == 200 and headers[b"content-type"] == b"application/json"
    assert [(a["model_tag"], a["request_id"]) for a in out] == [
        ("chall:2", "r0"),
        ("chall:2", "r1"),
    ]
    assert inner.bodies == []


def test_a_failed_challenger_is_counted_and_the_champion_answers_its_records() -> None:
    router = Router(fails=True)
    front, inner, model = make(router)
    status, _, out, _ = call(front, body(1, -2, -3, router=router))
    assert status == 200
    assert [(a["prediction"], a["model_tag"], a["request_id"]) for a in out] == [
        (1, "champ:1", "r0"),
        (-2, "champ:1", "r1"),
        (-3, "champ:1", "r2"),
    ]
    assert router.failures == [[1, 2]] and model.answered_by == []
    assert [len(json.loads(b)["records"]) for b in inner.bodies] == [1, 2]  # its own, then theirs


@pytest.mark.parametrize(
    ("sent", "pick", "says"),
    [
        (b'{"records": [{"x": "lots"}]}', [], "validation error"),  # the champion's
        (b'{"records": [{"x": "lots"}]}', [0], "validation error"),  # the challenger's
        (b"{not json", [0], "validation error"),
        (b'{"records": [{"x": 1, "request_id": 7}]}', [0], "validation error"),
        (body(-1, 2, 999), [0], "record 2: bad value"),  # the index in the request as sent
    ],
)
def test_a_bad_request_gets_the_inner_apps_own_error_for_the_body_as_sent(
    sent: bytes, pick: list[int], says: str
) -> None:
    router = Router()
    router.pick = pick
    front, inner, _ = make(router)
    status, _, out, _ = call(front, sent)
    assert status == 400 and says in out["error"]
    assert inner.bodies[-1] == sent  # (and no challenger call left running: call())


def test_a_request_all_for_the_champion_goes_on_as_sent() -> None:
    router = Router()
    front, inner, _ = make(router)
    for sent in (body(1, 2), body(1, 2, ids=False), body(3, ids=False)):
        status, _, out, receive = call(front, sent)
        assert status == 200 and inner.bodies[-1] == sent  # nothing written into it
        assert [a["model_tag"] for a in out] == ["champ:1"] * len(json.loads(sent)["records"])
        assert inner.receives[-1] is not receive  # read once here, replayed
    # the ids as the body gives them, read without the API's model
    assert router.given == [["r0", "r1"], [None, None], [None]]


@pytest.mark.parametrize(
    ("sent", "given"),
    [
        (b'{"records": [{"x": 1}]}', [None]),  # told without parsing
        (b'{"records": [{"x": 1, "request_id": "a"}]}', ["a"]),
        (b'{"records": [{"x": 1, "note": "{"}]}', [None]),  # a brace in a string: parsed
        (b'{"records": [{"x": 1, "request\\u005fid": "a"}]}', ["a"]),  # an escaped key
        (b'{"records": [{"x": 1}, {"x": 2, "request_id": "b"}]}', [None, "b"]),
        (b'{"records": [{"x": 1, "request_id": null}]}', [None]),
        (b'{"records": [{"x": 1, "request_id": 7}]}', None),  # not a string id
        (b'{"records": {"x": 1}}', [None]),  # two braces, not a list: BentoML's 400 later
        (b'{"records": "x"}', None),
        (b'{"records": ["x"]}', None),
        (b"[1]", None),
        (b"{", None),
    ],
)
def test_the_ids_are_read_from_the_body_alone(sent: bytes, given: list[str | None] | None) -> None:
    from crispops.serving.canary import _given_ids

    assert _given_ids(sent) == given
