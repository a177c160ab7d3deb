"""One HTTP/1.1 keep-alive connection of the router's client, as an `asyncio.Protocol`.

The event loop itself says when a server closed an idle connection (nothing to poll);
the request head and body leave in one write. h11 — httpcore's own HTTP/1.1 state
machine — frames requests and answers, so the bytes on the wire are httpx's. A request
already framed (`exchange_bytes`, the webhook's prepared request) is read without h11
when its answer is plain (a final status with Content-Length); any other answer goes to
h11 as usual.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
import httpx

HTTP11 = b"HTTP/1.1"

Origin = tuple[bytes, str, int]
Headers = list[tuple[bytes, bytes]]
# A request as sent: method, target, headers, body, and the httpx request it is (if any).
Call = tuple[str | bytes, bytes, Headers, bytes, "httpx.Request | None"]
# An answer as read: status, reason, headers, body.
Answer = tuple[int, bytes, Headers, bytes]
_DISCONNECTED = "Server disconnected without sending a response."


class HttpConnection(asyncio.Protocol):
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
        # A written-through exchange (`exchange_bytes`): its answer's bytes, h11 untouched.
        self._raw: bytearray | None = None
        self._raw_reusable = False

    # The event loop's callbacks ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self.busy:  # bytes nobody asked for: the connection cannot be reused
            self.close()
            return
        if self._raw is not None:
            self._raw += data
        else:
            self.h11.receive_data(data)
        self._wake()

    def eof_received(self) -> bool:
        if self.busy and self._raw is None:
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

    async def exchange_bytes(self, call: Call, data: bytes, timeouts: dict[str, Any]) -> Answer:
        """`call`, already framed as `data`, answered without h11 when the answer is a
        plain one (a final status, Content-Length, nothing after the body); any other
        answer is handed to h11, brought to the state the request left it in."""
        request = call[4]
        if self.dead or self.transport is None:
            raise httpx.WriteError("the connection is closed", request=request)
        raw = self._raw = bytearray()
        self._raw_reusable = False
        self.transport.write(data)
        while self._paused and not self.dead:
            await self._wait(timeouts.get("write"), httpx.WriteTimeout)
        timeout = timeouts.get("read")
        while (end := raw.find(b"\r\n\r\n")) < 0:
            if self.dead:
                break
            await self._wait(timeout, httpx.ReadTimeout)
        if end >= 0 and (plain := _plain_head(bytes(raw[:end]))) is not None:
            status, reason, headers, length, keep_alive = plain
            start = end + 4
            while len(raw) < start + length and not self.dead:
                await self._wait(timeout, httpx.ReadTimeout)
            if len(raw) >= start + length:
                self._raw = None
                self._raw_reusable = keep_alive and len(raw) == start + length
                return status, reason, headers, bytes(raw[start : start + length])
        # Not a plain answer (or cut short): h11 reads it, as any other request's.
        self._raw = None
        conn = self.h11
        method, target, head_headers, body, _ = call
        conn.send(h11.Request(method=method, target=target, headers=head_headers))
        if body:
            conn.send(h11.Data(data=body))
        conn.send(h11.EndOfMessage())
        conn.receive_data(bytes(raw))
        if self.dead:
            conn.receive_data(b"")
        return await self._answer(request, timeout)

    def reusable(self) -> bool:
        if self._raw_reusable:
            self._raw_reusable = False
            return not self.dead
        conn = self.h11
        if self.dead or conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
            return False
        conn.start_next_cycle()
        return True

    def close(self) -> None:
        self.dead = True
        if self.transport is not None:
            self.transport.close()


def _plain_head(head: bytes) -> tuple[int, bytes, Headers, int, bool] | None:
    """Status, reason, headers, body length and keep-alive of a final HTTP/1.1 answer's
    head with one Content-Length and no Transfer-Encoding; None for any other head."""
    lines = head.split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    code, _, reason = rest.partition(b" ")
    if version != HTTP11 or len(code) != 3 or not code.isdigit() or code[0] < ord("2"):
        return None
    headers: Headers = []
    length: int | None = None
    keep_alive = True
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip() or line[:1] in (b" ", b"\t"):
            return None
        value = value.strip(b" \t")
        lowered = name.lower()
        if lowered == b"content-length":
            if length is not None or not value.isdigit():
                return None
            length = int(value)
        elif lowered == b"transfer-encoding":
            return None
        elif lowered == b"connection" and b"close" in value.lower():
            keep_alive = False
        headers.append((name, value))
    if length is None:
        return None
    return int(code), reason, headers, length, keep_alive


def _expire(waiter: asyncio.Future[None], error: type[httpx.TimeoutException]) -> None:
    if not waiter.done():
        waiter.set_exception(error("timed out"))
