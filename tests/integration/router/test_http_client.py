"""The router's HTTP client keeps connections alive and notices ones the server closed.

A real local HTTP/1.1 server: requests in a row share one connection; a connection the
server closed while idle is not reused (the next request opens a new one and succeeds);
a prepared request (the webhook's) puts the same bytes on the wire as the client.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

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


class _Recorder(_Server):
    """Keeps each request's bytes as received."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                self.seen.append(head + await reader.readexactly(length))
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def test_a_prepared_request_sends_the_bytes_the_client_sends():
    recorder = _Recorder()
    listener = await asyncio.start_server(recorder.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    url = httpx.URL(f"http://127.0.0.1:{port}/hook?x=1")
    headers = {"X-Extra": "1", "Content-Type": "application/json", "Idempotency-Key": "", "Sig": ""}
    try:
        async with transport.client(5) as client:
            body = b'{"lead_id": "l1", "name": "\xc3\xa9"}'
            await client.post(
                url, content=body, headers={**headers, "Idempotency-Key": "d1", "Sig": "s"}
            )
            prepared = client.prepare("POST", url, headers, ("Idempotency-Key", "Sig"))
            assert prepared is not None
            status, _, _, answer = await prepared.send(body, "d1", "s")
            assert (status, answer) == (200, b"ok")
    finally:
        listener.close()
        await listener.wait_closed()
    assert len(recorder.seen) == 2 and recorder.seen[0] == recorder.seen[1]


class _Answers(_Server):
    """Answers each request with the next of `answers`, each written in pieces."""

    def __init__(self, answers: list[list[bytes]]) -> None:
        super().__init__()
        self.answers = answers

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self.answers:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                self.requests += 1
                for piece in self.answers.pop(0):
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0.01)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def test_a_prepared_request_reads_every_shape_of_answer():
    """Plain answers (even in pieces) are read without h11; chunked bodies, interim 1xx
    answers and `Connection: close` are read as the client reads them."""
    server = _Answers(
        [
            [b"HTTP/1.1 200 OK\r\nContent-Le", b"ngth: 5\r\nX-A: 1\r\n\r\nhel", b"lo"],
            [b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"],
            [b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n"],
            [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"],
            [b"HTTP/1.1 204 No Content\r\n\r\n"],
        ]
    )
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    url = httpx.URL(f"http://127.0.0.1:{port}/hook")
    try:
        async with transport.client(5) as client:
            prepared = client.prepare("POST", url, {"Idempotency-Key": ""}, ("Idempotency-Key",))
            assert prepared is not None
            answers = [await prepared.send(b"{}", f"d{n}") for n in range(5)]
    finally:
        listener.close()
        await listener.wait_closed()
    assert [(status, body) for status, _, _, body in answers] == [
        (200, b"hello"),
        (201, b"ok"),
        (503, b""),
        (200, b"ok"),
        (204, b""),
    ]
    assert (b"X-A", b"1") in answers[0][2]
    assert (server.requests, server.connections) == (5, 2)  # a new one after the close
