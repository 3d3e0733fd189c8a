"""A keep-alive HTTP/1.1 client for the router's one peer, the challenger's service.

The router POSTs JSON to one host and reads a JSON answer, thousands of times a second
under load, on the champion's own cores. aiohttp's client cost 226-286 µs of CPU per
call here and http.client's about 300 (the same call, `bentoml serve` answering on
another core); a connection of asyncio's own with uvicorn's response parser
(httptools, a dependency of BentoML's server) costs about 75. That difference was
most of what a canary's forwarded request cost the champion.

:class:`Peer` keeps idle connections per host and reuses them; a call writes the
request on one, and httptools parses the answer (Content-Length or chunked). A reused
connection the server had closed while idle fails before any byte of an answer: that
call is sent once more on a new connection (nothing was read from it, so nothing was
done). Idle connections older than :data:`IDLE_S` are closed rather than reused, well
inside uvicorn's 5 s keep-alive. Nothing here imports BentoML.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from typing import Any
from urllib.parse import urlsplit

import httptools

#: Idle connections are reused for this long (uvicorn closes them after 5 s).
IDLE_S = 2.0
#: Idle connections kept per host; more are closed when they come back.
MAX_IDLE = 128


class PeerError(ConnectionError):
    """The peer could not be reached, closed the connection, or sent no valid HTTP."""


class _Connection(asyncio.Protocol):
    """One connection: a request at a time, its answer parsed as it arrives."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.answer: asyncio.Future[tuple[int, bytes]] | None = None
        self.body: list[bytes] = []
        self.got_bytes = False
        self.reusable = True
        self.idle_since = 0.0

    # -- asyncio.Protocol
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(PeerError(f"not an HTTP answer ({exc})"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        self._fail(PeerError(f"connection closed ({exc})" if exc else "connection closed"))

    # -- httptools' callbacks
    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.reusable = self.reusable and self.parser.should_keep_alive()
        if self.answer is not None and not self.answer.done():
            self.answer.set_result((self.parser.get_status_code(), b"".join(self.body)))

    # --
    def _fail(self, exc: Exception) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.close()
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(exc)

    def send(self, request: bytes) -> asyncio.Future[tuple[int, bytes]]:
        assert self.transport is not None
        self.answer = asyncio.get_running_loop().create_future()
        self.body, self.got_bytes = [], False
        self.transport.write(request)
        return self.answer

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.close()


class Peer:
    """Connections to the peer's hosts, for one event loop."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, str, int], collections.deque[_Connection]] = {}
        self._ssl: ssl.SSLContext | None = None

    async def post_json(self, url: str, body: bytes, timeout: float) -> tuple[int, bytes]:
        """POST ``body`` (JSON) to ``url``: (status, the answer's body). PeerError when
        no answer came, TimeoutError after ``timeout`` seconds."""
        parts = urlsplit(url)
        scheme, host = parts.scheme, parts.hostname or ""
        port = parts.port or (443 if scheme == "https" else 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        request = (
            f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode("latin-1") + body
        key = (scheme, host, port)
        async with asyncio.timeout(timeout):
            conn = self._take(key)
            if conn is not None:
                try:
                    return await self._exchange(key, conn, request)
                except PeerError:
                    if conn.got_bytes:  # it answered something: not a stale connection
                        raise
            return await self._exchange(key, await self._open(scheme, host, port), request)

    async def _exchange(
        self, key: tuple[str, str, int], conn: _Connection, request: bytes
    ) -> tuple[int, bytes]:
        """``request`` on ``conn`` and its answer; a connection left mid-answer (a
        timeout, an error) is closed, not kept."""
        try:
            answer = await conn.send(request)
        except BaseException:
            conn.close()
            raise
        return self._done(key, conn, answer)

    def _take(self, key: tuple[str, str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            conn = idle.pop()  # the most recently used first
            if conn.reusable and now - conn.idle_since < IDLE_S:
                return conn
            conn.close()
        return None

    def _done(
        self, key: tuple[str, str, int], conn: _Connection, answer: tuple[int, bytes]
    ) -> tuple[int, bytes]:
        idle = self._idle.setdefault(key, collections.deque())
        if conn.reusable and len(idle) < MAX_IDLE:
            conn.idle_since = time.monotonic()
            conn.answer = None
            idle.append(conn)
        else:
            conn.close()
        return answer

    async def _open(self, scheme: str, host: str, port: int) -> _Connection:
        loop = asyncio.get_running_loop()
        context = None
        if scheme == "https":
            self._ssl = self._ssl or ssl.create_default_context()
            context = self._ssl
        try:
            _, conn = await loop.create_connection(_Connection, host, port, ssl=context)
        except OSError as exc:
            raise PeerError(f"cannot connect to {host}:{port} ({exc})") from None
        return conn

    def close(self) -> None:
        for idle in self._idle.values():
            while idle:
                idle.pop().close()
