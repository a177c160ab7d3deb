"""The HTTP transport of the router's client: httpx's own, with a cheaper idle check.

Before handing out a pooled keep-alive connection, and on every request and answer,
httpcore asks each idle connection of the pool whether its socket is readable (a
server that closed it). Through anyio that lookup rebuilds the stream's attribute
table each time, which cost more CPU per delivery than the router's database work.
The streams here keep the socket they were opened on, with a poll set up once, and ask
it directly; reading, writing, TLS and timeouts stay anyio's and httpcore's.
"""

from __future__ import annotations

import select
import socket
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

# httpx's defaults (`httpx.AsyncClient()`).
LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0)


class _Stream(httpcore.AsyncNetworkStream):
    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._socket: socket.socket | None = inner.get_extra_info("socket")
        self._poll: Any = None
        if self._socket is not None and self._socket.fileno() >= 0:
            self._poll = select.poll()
            self._poll.register(self._socket, select.POLLIN)

    def _readable(self) -> bool:
        # As httpcore's `is_socket_readable`, with the poll set up once: a socket that is
        # gone counts as readable (the next read would return b"" at once).
        if self._poll is None or self._socket is None or self._socket.fileno() < 0:
            return True
        return bool(self._poll.poll(0))

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return self._readable()
        if info == "socket":
            return self._socket
        return self._inner.get_extra_info(info)


class _Backend(httpcore.AsyncNetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(
            await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        )

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def transport() -> httpx.AsyncHTTPTransport:
    """httpx's transport (no proxies from the environment, as `trust_env=False`), pooling
    connections over the streams above."""
    made = httpx.AsyncHTTPTransport(trust_env=False, limits=LIMITS)
    # The transport takes no network backend; its pool is replaced by the same pool with one.
    made._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=False),
        max_connections=LIMITS.max_connections,
        max_keepalive_connections=LIMITS.max_keepalive_connections,
        keepalive_expiry=LIMITS.keepalive_expiry,
        network_backend=_Backend(),
    )
    return made


def client(timeout: float) -> httpx.AsyncClient:
    """The router's one HTTP client (keep-alive connections shared by every destination)."""
    return httpx.AsyncClient(
        timeout=timeout, follow_redirects=False, trust_env=False, transport=transport()
    )
