"""The HTTP transport of the router's client: a pool of HTTP/1.1 keep-alive connections.

httpx's client (request building, headers, cookies, redirects off, errors) is kept; under
it, httpcore's pool over anyio streams cost most of a delivery's CPU: per request a pool
walk with locks, a readability poll of every idle connection, tracing hooks and two
socket writes. Here the pool lends out `connection.HttpConnection`s (asyncio protocols,
h11 framing, so the bytes on the wire are the same). Limits are httpx's defaults;
timeouts are the request's (connect, read, write, pool); failures raise httpx's
exceptions, as before. Responses are read whole (the router's calls answer small JSON
bodies). `Prepared` sends a request the client built once again and again (the webhook's
deliveries), framed once: each send fills in the values that change.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from typing import Any

import h11
import httpx

from services.router.destinations.connection import HTTP11, Answer, Call, HttpConnection, Origin

# httpx's defaults (`httpx.AsyncClient()`).
LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0)


class Transport(httpx.AsyncBaseTransport):
    """A pool of keep-alive HTTP/1.1 connections (httpx's default limits)."""

    def __init__(self, limits: httpx.Limits = LIMITS) -> None:
        self._max = limits.max_connections or 1_000_000
        self._max_idle = limits.max_keepalive_connections or 0
        expiry = limits.keepalive_expiry
        self._expiry = float("inf") if expiry is None else expiry
        self._idle: dict[Origin, list[HttpConnection]] = {}
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

    async def send(
        self, origin: Origin, call: Call, timeouts: dict[str, Any], data: bytes | None = None
    ) -> Answer:
        """One request on a pooled connection of `origin` (opened if none is idle); `data`,
        when given, is the request already framed (see `Prepared`)."""
        connection = await self._checkout(call[4], origin, timeouts)
        try:
            if data is None:
                answer = await connection.exchange(call, timeouts)
            else:
                answer = await connection.exchange_bytes(call, data, timeouts)
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
    ) -> HttpConnection:
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
    ) -> HttpConnection:
        scheme, host, port = origin
        context = self._ssl_context() if scheme == b"https" else None
        connection = HttpConnection(origin)
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

    def _checkin(self, connection: HttpConnection) -> None:
        idle = self._idle.setdefault(connection.origin, [])
        if sum(len(group) for group in self._idle.values()) >= self._max_idle:
            self._discard(connection)
            return
        connection.busy = False
        connection.idle_since = time.monotonic()
        idle.append(connection)
        if self._slots:
            self._drop_an_idle_connection()  # a request for another origin waits for a slot

    def _discard(self, connection: HttpConnection) -> None:
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
        # The head as h11 frames it (its validation passed once, on these headers): the
        # request line, Host first, then the rest in order; the changing values between.
        h11.Request(method=self.request.method, target=self._target, headers=self._raw)
        order = sorted(range(len(names)), key=lambda i: names[i] != b"host")
        changing = {*self._slots, self._length}
        parts: list[bytes | int] = [
            b"%s %s HTTP/1.1\r\n" % (self.request.method.encode(), self._target)
        ]
        for i in order:
            name, value = self._raw[i]
            if i in changing:
                parts.extend((name + b": ", i, b"\r\n"))
            else:
                parts.append(b"%s: %s\r\n" % (name, value))
        parts.append(b"\r\n")
        self._head = _joined_constants(parts)

    async def send(self, body: bytes, *values: str) -> Answer:
        raw = self._raw.copy()
        for slot, value in zip(self._slots, values, strict=True):
            raw[slot] = (raw[slot][0], _header_value(value))
        raw[self._length] = (raw[self._length][0], b"%d" % len(body))
        data = b"".join(
            [part if isinstance(part, bytes) else raw[part][1] for part in self._head] + [body]
        )
        call = (self.request.method, self._target, raw, body, None)
        return await self.client.pool.send(self._origin, call, self._timeouts, data)

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


def _joined_constants(parts: list[bytes | int]) -> list[bytes | int]:
    """`parts` with neighbouring constant bytes joined (the ints are header positions)."""
    joined: list[bytes | int] = []
    for part in parts:
        if isinstance(part, bytes) and joined and isinstance(joined[-1], bytes):
            joined[-1] += part
        else:
            joined.append(part)
    return joined


def _header_value(value: str) -> bytes:
    """A changing header value, refused as h11 would refuse it (no line breaks)."""
    encoded = value.encode()
    if b"\r" in encoded or b"\n" in encoded or b"\0" in encoded:
        raise h11.LocalProtocolError("Illegal header value " + repr(encoded))
    return encoded


def client(timeout: float) -> Client:
    """The router's one HTTP client (keep-alive connections shared by every destination)."""
    return Client(timeout, transport())
