"""The HTTP transport of the router's client: HTTP/1.1 keep-alive over asyncio protocols.

httpx's client (request building, headers, cookies, redirects off, errors) is kept; under
it, httpcore's pool over anyio streams cost most of a delivery's CPU: per request a pool
walk with locks, a readability poll of every idle connection, tracing hooks and two
socket writes. Here a connection is an `asyncio.Protocol`: the event loop itself says
when a server closed an idle connection (nothing to poll), the request head and body
leave in one write, and h11 — httpcore's own HTTP/1.1 state machine — frames both ways,
so the bytes on the wire are the same. Limits are httpx's defaults; timeouts are the
request's (connect, read, write, pool); failures raise httpx's exceptions, as before.
Responses are read whole (the router's calls answer small JSON bodies). The module is
over 300 lines because the connection and the pool lending it out are read together.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from typing import Any

import h11
import httpx

# httpx's defaults (`httpx.AsyncClient()`).
LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0)
HTTP11 = b"HTTP/1.1"

Origin = tuple[bytes, str, int]


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection; one request at a time (`busy`)."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.h11 = h11.Connection(h11.CLIENT)
        self.transport: asyncio.Transport | None = None
        self.busy = True
        self.dead = False
        self.idle_since = 0.0
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._lost: Exception | None = None

    # The event loop's callbacks ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self.busy:  # bytes nobody asked for: the connection cannot be reused
            self.close()
            return
        self.h11.receive_data(data)
        self._wake()

    def eof_received(self) -> bool:
        if self.busy:
            self.h11.receive_data(b"")
        self.dead = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.dead = True
        self._lost = exc
        self._paused = False
        self._wake()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self, timeout: float | None, expired: type[httpx.TimeoutException]) -> None:
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = None
        if timeout is not None:
            timer = loop.call_later(timeout, _expire, waiter, expired)
        try:
            await waiter
        finally:
            if timer is not None:
                timer.cancel()

    # One request ------------------------------------------------------------------

    async def exchange(self, request: httpx.Request, timeouts: dict[str, Any]) -> httpx.Response:
        conn = self.h11
        body = await request.aread()
        head = h11.Request(
            method=request.method, target=request.url.raw_path, headers=request.headers.raw
        )
        data = b"".join(
            conn.send(event) or b""
            for event in (head, h11.Data(data=body), h11.EndOfMessage())
            if body or type(event) is not h11.Data
        )
        if self.dead or self.transport is None:
            raise httpx.WriteError("the connection is closed", request=request)
        self.transport.write(data)
        while self._paused and not self.dead:
            await self._wait(timeouts.get("write"), httpx.WriteTimeout)
        return await self._response(request, timeouts.get("read"))

    async def _response(self, request: httpx.Request, timeout: float | None) -> httpx.Response:
        conn = self.h11
        head: h11.Response | None = None
        chunks: list[bytes] = []
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise httpx.RemoteProtocolError(str(exc), request=request) from exc
            if event is h11.NEED_DATA:
                if self.dead and self._lost is not None:
                    raise httpx.ReadError(str(self._lost), request=request) from self._lost
                if self.dead:
                    raise httpx.RemoteProtocolError(
                        "Server disconnected without sending a response.", request=request
                    )
                await self._wait(timeout, httpx.ReadTimeout)
            elif type(event) is h11.Response:
                head = event
            elif type(event) is h11.Data:
                chunks.append(bytes(event.data))
            elif type(event) is h11.EndOfMessage:
                break
            elif type(event) is h11.ConnectionClosed:
                raise httpx.RemoteProtocolError(
                    "Server disconnected without sending a response.", request=request
                )
            # An h11.InformationalResponse (1xx) is skipped: the final answer follows.
        assert head is not None
        return httpx.Response(
            head.status_code,
            headers=head.headers.raw_items(),
            stream=httpx.ByteStream(b"".join(chunks)),
            extensions={"http_version": HTTP11, "reason_phrase": head.reason},
        )

    def reusable(self) -> bool:
        conn = self.h11
        if self.dead or conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
            return False
        conn.start_next_cycle()
        return True

    def close(self) -> None:
        self.dead = True
        if self.transport is not None:
            self.transport.close()


def _expire(waiter: asyncio.Future[None], error: type[httpx.TimeoutException]) -> None:
    if not waiter.done():
        waiter.set_exception(error("timed out"))


class Transport(httpx.AsyncBaseTransport):
    """A pool of keep-alive HTTP/1.1 connections (httpx's default limits)."""

    def __init__(self, limits: httpx.Limits = LIMITS) -> None:
        self._max = limits.max_connections or 1_000_000
        self._max_idle = limits.max_keepalive_connections or 0
        expiry = limits.keepalive_expiry
        self._expiry = float("inf") if expiry is None else expiry
        self._idle: dict[Origin, list[_Connection]] = {}
        self._open = 0
        self._slots: deque[asyncio.Future[None]] = deque()
        self._ssl: ssl.SSLContext | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"Request URL has an unsupported protocol '{url}'.")
        port = url.port or (443 if url.scheme == "https" else 80)
        origin: Origin = (url.raw_scheme, url.raw_host.decode("ascii"), port)
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        connection = await self._checkout(request, origin, timeouts)
        try:
            response = await connection.exchange(request, timeouts)
        except BaseException:
            self._discard(connection)
            raise
        if connection.reusable():
            self._checkin(connection)
        else:
            self._discard(connection)
        return response

    async def _checkout(
        self, request: httpx.Request, origin: Origin, timeouts: dict[str, Any]
    ) -> _Connection:
        now = time.monotonic()
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()
            if connection.dead or now - connection.idle_since > self._expiry:
                self._discard(connection)
                continue
            connection.busy = True
            return connection
        while self._open >= self._max:
            if not self._drop_an_idle_connection():
                await self._wait_for_slot(request, timeouts.get("pool"))
        self._open += 1
        try:
            return await self._connect(request, origin, timeouts.get("connect"))
        except BaseException:
            self._release_slot()
            raise

    async def _connect(
        self, request: httpx.Request, origin: Origin, timeout: float | None
    ) -> _Connection:
        scheme, host, port = origin
        context = self._ssl_context() if scheme == b"https" else None
        connection = _Connection(origin)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                await loop.create_connection(
                    lambda: connection,
                    host,
                    port,
                    ssl=context,
                    server_hostname=host if context is not None else None,
                )
        except TimeoutError as exc:
            connection.close()
            raise httpx.ConnectTimeout("timed out", request=request) from exc
        except (OSError, ssl.SSLError) as exc:
            connection.close()
            raise httpx.ConnectError(str(exc) or type(exc).__name__, request=request) from exc
        return connection

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = httpx.create_ssl_context(trust_env=False)
            self._ssl.set_alpn_protocols(["http/1.1"])
        return self._ssl

    def _checkin(self, connection: _Connection) -> None:
        idle = self._idle.setdefault(connection.origin, [])
        if sum(len(group) for group in self._idle.values()) >= self._max_idle:
            self._discard(connection)
            return
        connection.busy = False
        connection.idle_since = time.monotonic()
        idle.append(connection)
        if self._slots:
            self._drop_an_idle_connection()  # a request for another origin waits for a slot

    def _discard(self, connection: _Connection) -> None:
        connection.close()
        self._release_slot()

    def _release_slot(self) -> None:
        self._open -= 1
        while self._slots:
            waiter = self._slots.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break

    def _drop_an_idle_connection(self) -> bool:
        for group in self._idle.values():
            if group:
                self._discard(group.pop(0))
                return True
        return False

    async def _wait_for_slot(self, request: httpx.Request, timeout: float | None) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._slots.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except TimeoutError as exc:
            raise httpx.PoolTimeout("no connection free in time", request=request) from exc

    async def aclose(self) -> None:
        for group in self._idle.values():
            for connection in group:
                connection.close()
        self._idle.clear()


def transport() -> Transport:
    """The transport of the router's client (no proxies from the environment)."""
    return Transport(LIMITS)


def client(timeout: float) -> httpx.AsyncClient:
    """The router's one HTTP client (keep-alive connections shared by every destination)."""
    return httpx.AsyncClient(
        timeout=timeout, follow_redirects=False, trust_env=False, transport=transport()
    )
