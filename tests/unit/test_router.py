"""The router's pure parts: the stable hash, its settings file and how it is re-read,
and the challenger's client against a port nothing listens on."""

from __future__ import annotations

import http.server
import json
import os
import threading
import time
from pathlib import Path
from typing import ClassVar

import pytest

from crispops.serving.router import (
    MAX_SHADOW_QUEUED,
    MIRROR_BATCH,
    Challenger,
    ChallengerError,
    ConfigFile,
    RouteConfig,
    RouterConfigError,
    bucket,
    new_id,
    request_ids,
    split,
)
from support.servers import free_port


def test_bucket_is_stable_uniform_and_independent_of_key_order() -> None:
    a = bucket({"zipcode": 10001, "dob_ssn": "19530219_5179"}, "r1")
    assert a == bucket({"dob_ssn": "19530219_5179", "zipcode": 10001}, "other-request")
    assert 0 <= a < 100
    # records without keys: by request id
    assert bucket({}, "abc") == bucket(None, "abc") != bucket({}, "abd")
    shares = [bucket({"customer_id": i}, "") < 10 for i in range(20_000)]
    assert abs(sum(shares) / len(shares) - 0.10) < 0.01
    # a known value pins the hash (blake2b of the sorted pairs, never Python's hash())
    import hashlib

    digest = hashlib.blake2b(b"customer_id=1001", digest_size=8).digest()
    assert bucket({"customer_id": 1001}, "x") == int.from_bytes(digest, "big") / 2**64 * 100


def test_a_record_without_an_id_draws_and_its_new_id_hashes_to_the_share_it_drew() -> None:
    import random

    random.seed(7)
    # a caller's id goes by its hash, always the same way
    named = [f"caller-{i}" for i in range(2000)]
    assert split(named, 30) == [i for i, rid in enumerate(named) if bucket(None, rid) < 30]
    assert split(named, 30) == split(named, 30)
    # no id: a draw, the weight's share of records
    drawn = split([None] * 20_000, 10)
    assert abs(len(drawn) / 20_000 - 0.10) < 0.01
    assert split([None] * 100, 0) == [] and split([None] * 100, 100) == list(range(100))
    # the id made afterwards is one the hash gives the same side
    for weight in (0.5, 10, 50, 97):
        theirs = [new_id(0, weight) for _ in range(200)]
        mine = [new_id(weight) for _ in range(200)]
        assert all(bucket(None, rid) < weight for rid in theirs), weight
        assert all(bucket(None, rid) >= weight for rid in mine), weight
        assert len(set(theirs + mine)) == 400
    # the champion's predict: a caller's id kept, a new one from its share, taken out
    rows = [{"x": 1, "request_id": "keep-me"}, {"x": 2, "request_id": None}, {"x": 3}]
    ids = request_ids(rows, at_least=40)
    assert ids[0] == "keep-me" and all(bucket(None, rid) >= 40 for rid in ids[1:])
    assert rows == [{"x": 1}, {"x": 2}, {"x": 3}]
    assert len(set(request_ids([{} for _ in range(50)]))) == 50  # outside a canary: any


def test_route_config_parses_what_the_cluster_writes() -> None:
    # rollout.json as RolloutState.router_config() writes it
    cfg = RouteConfig.parse(
        {
            "mode": "canary",
            "weight": 10,
            "challenger_url": "http://crispops-model-service-challenger.crispops.svc:3000/",
            "challenger_bento_tag": "credit_default:abc",
            "champion_bento_tag": "credit_default:def",
        }
    )
    assert cfg.active and cfg.weight == 10.0 and cfg.timeout_s == 1.0
    assert cfg.challenger_url == "http://crispops-model-service-challenger.crispops.svc:3000"
    # the cluster gives Bento tags; the model tag the log carries is derived from it
    assert cfg.challenger_tag is None and cfg.challenger_bento_tag == "credit_default:abc"
    assert cfg.model_tag("credit_default_v1:def") == "credit_default_v1:abc"
    given = RouteConfig.parse({"mode": "off", "challenger_model_tag": "m:1"})
    assert given.model_tag("x:y") == "m:1"
    assert RouteConfig.parse({"mode": "shadow", "challenger_url": "http://h:1"}).weight == 100
    assert not RouteConfig.parse({"mode": "off", "weight": 0}).active
    # weight 0 still hashes each record (nothing is routed): the router's own cost
    assert RouteConfig.parse({"mode": "canary", "weight": 0, "challenger_url": "http://h"}).active


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ([], "expected a JSON object"),
        ({"mode": "blue-green"}, "mode 'blue-green' is not one of off, shadow, canary"),
        ({"mode": "canary", "weight": 150, "challenger_url": "http://h"}, "not within 0..100"),
        ({"mode": "canary", "weight": "ten", "challenger_url": "http://h"}, "not a number"),
        ({"mode": "canary", "weight": 10}, "needs challenger_url"),
        ({"mode": "shadow", "challenger_url": "h:3000"}, "needs challenger_url"),
        ({"mode": "shadow", "challenger_url": "http://h", "timeout_s": 0}, "timeout_s 0"),
    ],
)
def test_route_config_names_what_is_wrong(data: object, says: str) -> None:
    with pytest.raises(RouterConfigError, match=says):
        RouteConfig.parse(data, "rollout.json")


def test_config_file_is_re_read_when_it_changes_at_most_once_a_second(tmp_path: Path) -> None:
    path = tmp_path / "rollout.json"
    now = [0.0]
    f = ConfigFile(path, clock=lambda: now[0])
    assert f.current().mode == "off"  # no file: off

    def write(data: object, mtime: int) -> None:
        path.write_text(json.dumps(data))
        os.utime(path, ns=(mtime, mtime))

    write({"mode": "canary", "weight": 10, "challenger_url": "http://h:1"}, 1_000_000_000)
    assert f.current().mode == "off"  # looked less than a second ago
    now[0] = 1.5
    assert (f.current().mode, f.current().weight) == ("canary", 10.0)
    write({"mode": "canary", "weight": 50, "challenger_url": "http://h:1"}, 2_000_000_000)
    now[0] = 2.0
    assert f.current().weight == 10.0
    now[0] = 2.6
    assert f.current().weight == 50.0
    # a broken file keeps the last good settings
    path.write_text("{not json")
    os.utime(path, ns=(3_000_000_000, 3_000_000_000))
    now[0] = 4.0
    assert f.current().weight == 50.0
    path.unlink()
    now[0] = 5.0
    assert f.current().mode == "off"


def test_challenger_unreachable_is_an_error_fast_and_a_mirror_reports_it() -> None:
    ch = Challenger()
    try:
        url = f"http://127.0.0.1:{free_port()}/predict"
        started = time.monotonic()
        with pytest.raises(ChallengerError, match=r"(?i)cannot connect"):
            ch.call(url, [{"x": 1}], timeout=0.5).result(timeout=5)
        assert time.monotonic() - started < 2
        seen: list[object] = []
        assert ch.mirror(url, [{"x": 1}], 0.5, lambda a, e: seen.append(e))
        ch.drain(5)
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(seen) == 1 and isinstance(seen[0], ChallengerError)
        assert ch.shadow_in_flight == 0
    finally:
        ch.close()


class _Echo(http.server.BaseHTTPRequestHandler):
    """A challenger that answers each record with its own x, and counts its POSTs."""

    posts: ClassVar[list[int]] = []

    def do_POST(self) -> None:  # http.server's name
        records = json.loads(self.rfile.read(int(self.headers["content-length"])))["records"]
        _Echo.posts.append(len(records))
        body = json.dumps([{"prediction": r["x"]} for r in records]).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


def test_mirrors_go_together_and_each_gets_its_own_answers() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Echo.posts = []
    ch = Challenger()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/predict"
        got: dict[int, list[object]] = {}
        n = 300
        for i in range(n):  # mirrors of 1 or 2 records, as fast as requests could come
            recs = [{"x": i}] * (1 + i % 2)
            assert ch.mirror(url, recs, 2.0, lambda a, e, i=i: got.__setitem__(i, a or [e]))
        ch.drain(10)
        assert ch.shadow_in_flight == 0
        deadline = time.monotonic() + 5
        while len(got) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        assert all(got[i] == [{"prediction": i}] * (1 + i % 2) for i in range(n))
        total = sum(1 + i % 2 for i in range(n))
        assert sum(_Echo.posts) == total
        assert len(_Echo.posts) < n / 4  # batched: far fewer calls than mirrors
        assert max(_Echo.posts) <= MIRROR_BATCH
    finally:
        ch.close()
        server.shutdown()


def test_a_full_mirror_queue_drops_instead_of_waiting() -> None:
    ch = Challenger()
    try:
        url = f"http://127.0.0.1:{free_port()}/predict"  # nothing answers: all stay queued
        big = [{"x": 1}] * MAX_SHADOW_QUEUED
        assert ch.mirror(url, big, 0.5, lambda a, e: None)
        assert not ch.mirror(url, [{"x": 2}], 0.5, lambda a, e: None)  # dropped, at once
        ch.drain(5)
        assert ch.shadow_in_flight == 0
        assert ch.mirror(url, [{"x": 3}], 0.5, lambda a, e: None)  # room again
    finally:
        ch.close()


def test_a_challenger_call_does_not_search_sys_path() -> None:
    """No call to the challenger imports anything: httpx's httpcore (an earlier client)
    imported sniffio on each lock and event, ~4 failed imports (a sys.path scan each)
    per call."""
    import importlib.machinery
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Answer(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"]))
            body = b'[{"prediction": 1, "model_tag": "m:c"}]'
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ch = Challenger()
    url = f"http://127.0.0.1:{server.server_address[1]}/predict"
    searched: list[str] = []
    find_spec = importlib.machinery.PathFinder.find_spec

    def counting(name: str, *args: object, **kwargs: object) -> object:
        searched.append(name)
        return find_spec(name, *args, **kwargs)  # type: ignore[arg-type]

    try:
        assert ch.call(url, [{"x": 1}], timeout=5).result(timeout=10)[0]["model_tag"] == "m:c"
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(importlib.machinery.PathFinder, "find_spec", counting)
            for _ in range(5):
                assert len(ch.call(url, [{"x": 1}], timeout=5).result(timeout=10)) == 1
        assert searched == []
    finally:
        ch.close()
        server.shutdown()


def test_on_the_servers_loop_a_call_switches_no_thread_and_a_stop_drains_the_mirrors() -> None:
    """The service makes its Challenger on the server's event loop: a canary's call is
    awaited there (no thread of the router's own), shadow mirrors from the batch's thread
    are sent from there too, and the shutdown hook waits for them on the loop."""
    import asyncio

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Echo.posts = []
    url = f"http://127.0.0.1:{server.server_address[1]}/predict"
    got: list[object] = []

    async def go() -> list[dict[str, object]]:
        ch = Challenger(asyncio.get_running_loop())
        answers = await ch.ask(url, [{"x": 1}, {"x": 2}], 2.0)
        # a mirror from another thread (as predict's batch runs), answered on this loop
        await asyncio.to_thread(ch.mirror, url, [{"x": 3}], 2.0, lambda a, e: got.append(a))
        await ch.aclose()  # waits for the mirror in flight
        assert ch.shadow_in_flight == 0
        assert not any(t.name == "crispops-router" for t in threading.enumerate())
        return answers

    try:
        assert asyncio.run(go()) == [{"prediction": 1}, {"prediction": 2}]
        assert got == [[{"prediction": 3}]]
        assert _Echo.posts == [2, 1]
    finally:
        server.shutdown()
        server.server_close()
