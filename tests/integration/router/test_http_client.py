"""The router's HTTP client keeps connections alive and notices ones the server closed.

A real local HTTP/1.1 server: requests in a row share one connection; a connection the
server closed while idle is not reused (the next request opens a new one and succeeds).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from services.router.destinations import transport


class _Server:
    """Answers every request 200; `close_after_answer` closes each connection once idle."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests = 0
        self.close_after_answer = False
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                self.requests += 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
                if self.close_after_answer:
                    await asyncio.sleep(0.05)  # idle in the client's pool by now
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def _serving() -> AsyncIterator[_Server]:
    server = _Server()
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listener.close()
        await listener.wait_closed()


async def test_requests_in_a_row_share_one_keep_alive_connection():
    async with _serving() as server, transport.client(5) as client:
        url = f"http://127.0.0.1:{server.port}/hook"
        for n in range(5):
            response = await client.post(url, content=b'{"n": %d}' % n)
            assert (response.status_code, response.text) == (200, "ok")
    assert (server.requests, server.connections) == (5, 1)


async def test_a_connection_the_server_closed_is_not_reused():
    async with _serving() as server, transport.client(5) as client:
        server.close_after_answer = True
        url = f"http://127.0.0.1:{server.port}/hook"
        for _ in range(3):
            response = await client.post(url, content=b"{}")
            assert response.status_code == 200
            await asyncio.sleep(0.2)  # the server has closed it meanwhile
    assert (server.requests, server.connections) == (3, 3)
