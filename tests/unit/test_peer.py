"""The router's HTTP client (crispops.serving.peer) against a real HTTP server: kept
connections, a connection the server closed while idle, chunked answers, timeouts."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from crispops.serving.peer import Peer, PeerError


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def do_POST(self) -> None:
        srv = self.server
        body = self.rfile.read(int(self.headers["content-length"]))
        srv.requests.append((self.path, self.headers["content-type"], body))
        n = srv.seen.get(self.client_address, 0)
        srv.seen[self.client_address] = n + 1
        if srv.drop_second and n == 1:  # as a server that closed it while idle
            self.close_connection = True
            return
        time.sleep(srv.delay)
        answer = json.dumps({"echo": json.loads(body), "path": self.path}).encode()
        self.send_response(srv.status)
        self.send_header("content-type", "application/json")
        if srv.chunked:
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for part in (answer[:7], answer[7:]):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[Any]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    srv.requests, srv.seen = [], {}
    srv.drop_second, srv.chunked, srv.delay, srv.status = False, False, 0.0, 200
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_calls_share_one_kept_connection_and_get_their_own_answers(server: Any) -> None:
    async def go() -> list[tuple[int, bytes]]:
        peer = Peer()
        try:
            return [
                await peer.post_json(server.url + "/predict?x=1", b'{"n": %d}' % i, 2.0)
                for i in range(20)
            ]
        finally:
            peer.close()

    got = run(go())
    assert [json.loads(body)["echo"] for _, body in got] == [{"n": i} for i in range(20)]
    assert {status for status, _ in got} == {200}
    assert json.loads(got[0][1])["path"] == "/predict?x=1"
    assert len(server.seen) == 1  # one connection for all twenty
    assert server.requests[0][1] == "application/json"


def test_a_connection_the_server_closed_while_idle_is_retried_on_a_new_one(server: Any) -> None:
    server.drop_second = True  # each connection answers once, then closes unanswered

    async def go() -> list[bytes]:
        peer = Peer()
        try:
            return [(await peer.post_json(server.url, b'{"n": %d}' % i, 2.0))[1] for i in range(3)]
        finally:
            peer.close()

    got = run(go())
    assert [json.loads(b)["echo"]["n"] for b in got] == [0, 1, 2]
    # the request the closing connection took was sent again, answered once each
    answered = [json.loads(b)["n"] for _, _, b in server.requests]
    assert answered == [0, 1, 1, 2, 2]
    assert len(server.seen) == 3


def test_a_chunked_answer_is_read_whole(server: Any) -> None:
    server.chunked = True

    async def go() -> tuple[int, bytes]:
        peer = Peer()
        try:
            await peer.post_json(server.url, b"[1]", 2.0)
            return await peer.post_json(server.url, b"[2]", 2.0)
        finally:
            peer.close()

    status, body = run(go())
    assert status == 200 and json.loads(body)["echo"] == [2]
    assert len(server.seen) == 1


def test_an_error_status_is_returned_with_its_body(server: Any) -> None:
    server.status = 503

    async def go() -> tuple[int, bytes]:
        peer = Peer()
        try:
            return await peer.post_json(server.url, b"{}", 2.0)
        finally:
            peer.close()

    status, body = run(go())
    assert status == 503 and json.loads(body)["echo"] == {}


def test_a_slow_answer_times_out_and_its_connection_is_not_kept(server: Any) -> None:
    server.delay = 0.5

    async def go() -> tuple[float, int]:
        peer = Peer()
        started = time.monotonic()
        try:
            with pytest.raises(TimeoutError):
                await peer.post_json(server.url, b"{}", 0.1)
            took = time.monotonic() - started
            server.delay = 0.0
            status, _ = await peer.post_json(server.url, b"{}", 2.0)
            return took, status
        finally:
            peer.close()

    took, status = run(go())
    assert took < 0.4 and status == 200
    assert len(server.seen) == 2  # the timed-out connection was dropped, not reused


def test_a_kept_connection_that_times_out_is_closed(server: Any) -> None:
    async def go() -> bool:
        peer = Peer()
        try:
            await peer.post_json(server.url, b"{}", 2.0)
            [[kept]] = [list(idle) for idle in peer._idle.values()]
            server.delay = 0.5
            with pytest.raises(TimeoutError):
                await peer.post_json(server.url, b"{}", 0.1)
            assert kept.transport is not None
            return bool(kept.transport.is_closing())
        finally:
            peer.close()

    assert run(go())  # closed, not left open beside the pool


def test_nothing_listening_is_a_peer_error_at_once() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there

    async def go() -> None:
        await Peer().post_json(f"http://127.0.0.1:{port}/predict", b"{}", 2.0)

    started = time.monotonic()
    with pytest.raises(PeerError, match=f"cannot connect to 127.0.0.1:{port}"):
        run(go())
    assert time.monotonic() - started < 1.0


def test_garbage_instead_of_http_is_a_peer_error() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]

    def garbage() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"SSH-2.0-OpenSSH\r\n\r\n")
        time.sleep(0.2)
        conn.close()

    threading.Thread(target=garbage, daemon=True).start()

    async def go() -> None:
        await Peer().post_json(f"http://127.0.0.1:{port}/", b"{}", 2.0)

    try:
        with pytest.raises(PeerError, match="not an HTTP answer"):
            run(go())
    finally:
        listener.close()
