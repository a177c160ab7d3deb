"""The HTTP transport of the router's client: HTTP/1.1 keep-alive over asyncio protocols.

httpx's client (request building, headers, cookies, redirects off, errors) is kept; under
it, httpcore's pool over anyio streams cost most of a delivery's CPU: per request a pool
walk with locks, a readability poll of every idle connection, tracing hooks and two
socket writes. Here a connection is an `asyncio.Protocol`: the event loop itself says
when a server closed an idle connection (nothing to poll), the request head and body
leave in one write, and h11 — httpcore's own HTTP/1.1 state machine — frames both ways,
so the bytes on the wire are the same. Limits are httpx's defaults; timeouts are the
request's (connect, read, write, pool); failures raise httpx's exceptions, as before.
Responses are read whole (the router's calls answer small JSON bodies). `Prepared` sends
a request the client built once again and again (the webhook's deliveries). The module is
over 300 lines because the connection, the pool lending it out and the client's shortcut
to the pool are read together.
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
Headers = list[tuple[bytes, bytes]]
# A request as sent: method, target, headers, body, and the httpx request it is (if any).
Call = tuple[str | bytes, bytes, Headers, bytes, "httpx.Request | None"]
# An answer as read: status, reason, headers, body.
Answer = tuple[int, bytes, Headers, bytes]
_DISCONNECTED = "Server disconnected without sending a response."


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

    async def exchange(self, call: Call, timeouts: dict[str, Any]) -> Answer:
        conn = self.h11
        method, target, headers, body, request = call
        head = h11.Request(method=method, target=target, headers=headers)
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
        return await self._answer(request, timeouts.get("read"))

    async def _answer(self, request: httpx.Request | None, timeout: float | None) -> Answer:
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
                    raise httpx.RemoteProtocolError(_DISCONNECTED, request=request)
                await self._wait(timeout, httpx.ReadTimeout)
            elif type(event) is h11.Response:
                head = event
            elif type(event) is h11.Data:
                chunks.append(bytes(event.data))
            elif type(event) is h11.EndOfMessage:
                break
            elif type(event) is h11.ConnectionClosed:
                raise httpx.RemoteProtocolError(_DISCONNECTED, request=request)
            # An h11.InformationalResponse (1xx) is skipped: the final answer follows.
        assert head is not None
        return head.status_code, head.reason, head.headers.raw_items(), b"".join(chunks)

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
        call = (request.method, url.raw_path, request.headers.raw, await request.aread(), request)
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        status, reason, headers, body = await self.send(origin_of(url), call, timeouts)
        return httpx.Response(
            status,
            headers=headers,
            stream=httpx.ByteStream(body),
            extensions={"http_version": HTTP11, "reason_phrase": reason},
        )

    async def send(self, origin: Origin, call: Call, timeouts: dict[str, Any]) -> Answer:
        """One request on a pooled connection of `origin` (opened if none is idle)."""
        connection = await self._checkout(call[4], origin, timeouts)
        try:
            answer = await connection.exchange(call, timeouts)
        except BaseException:
            self._discard(connection)
            raise
        if connection.reusable():
            self._checkin(connection)
        else:
            self._discard(connection)
        return answer

    async def _checkout(
        self, request: httpx.Request | None, origin: Origin, timeouts: dict[str, Any]
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
        self, request: httpx.Request | None, origin: Origin, timeout: float | None
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

    async def _wait_for_slot(self, request: httpx.Request | None, timeout: float | None) -> None:
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


def origin_of(url: httpx.URL) -> Origin:
    port = url.port or (443 if url.scheme == "https" else 80)
    return (url.raw_scheme, url.raw_host.decode("ascii"), port)


def transport() -> Transport:
    """The transport of the router's client (no proxies from the environment)."""
    return Transport(LIMITS)


class Client(httpx.AsyncClient):
    """httpx's client over the pool above, which `prepare` may also use directly."""

    def __init__(self, timeout: float, pool: Transport) -> None:
        super().__init__(timeout=timeout, follow_redirects=False, trust_env=False, transport=pool)
        self.pool = pool

    def prepare(
        self, method: str, url: httpx.URL, headers: dict[str, str], varying: tuple[str, ...]
    ) -> Prepared | None:
        """`method url` with `headers`, those named in `varying` set on each send; None
        where httpx's client adds to the request as it sends it (credentials in the URL)."""
        if url.username or url.password or self.auth is not None or any(self.event_hooks.values()):
            return None
        return Prepared(self, method, url, headers, varying)


class Prepared:
    """A request sent again and again with its body and a few header values changed.

    The headers are the ones httpx's client builds (its defaults, the given ones, Host,
    Content-Length), merged once; each send puts in the values that change and hands the
    request to the pool, skipping the client's per-request work. A client that holds
    cookies sends them, which `Prepared` does not: callers use the client then.
    """

    def __init__(
        self,
        client: Client,
        method: str,
        url: httpx.URL,
        headers: dict[str, str],
        varying: tuple[str, ...],
    ) -> None:
        placeholders = {**headers, **dict.fromkeys(varying, "-")}
        self.request = client.build_request(method, url, headers=placeholders, content=b"-")
        self.client = client
        self._raw = list(self.request.headers.raw)
        names = [name.lower() for name, _ in self._raw]
        last = len(names) - 1
        # The last of a name: a value given twice in `headers` keeps its first copy, as before.
        self._slots = [last - names[::-1].index(n.lower().encode()) for n in varying]
        self._length = names.index(b"content-length")
        self._origin = origin_of(self.request.url)
        self._target = self.request.url.raw_path
        self._timeouts: dict[str, Any] = self.request.extensions.get("timeout", {})

    async def send(self, body: bytes, *values: str) -> Answer:
        raw = self._raw.copy()
        for slot, value in zip(self._slots, values, strict=True):
            raw[slot] = (raw[slot][0], value.encode())
        raw[self._length] = (raw[self._length][0], b"%d" % len(body))
        call = (self.request.method, self._target, raw, body, None)
        return await self.client.pool.send(self._origin, call, self._timeouts)

    def response(self, answer: Answer) -> httpx.Response:
        """The answer as the client returns one (read, cookies it sets kept)."""
        status, reason, headers, body = answer
        response = httpx.Response(
            status,
            headers=headers,
            stream=httpx.ByteStream(body),
            request=self.request,
            extensions={"http_version": HTTP11, "reason_phrase": reason},
        )
        response.read()
        self.client.cookies.extract_cookies(response)
        return response


def client(timeout: float) -> Client:
    """The router's one HTTP client (keep-alive connections shared by every destination)."""
    return Client(timeout, transport())
