"""Helpers for capture's integration tests: config files, platform stand-ins, events, signing."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import sqlalchemy as sa
import yaml

from shared.events import LeadCaptured, LeadErased, decode
from tests.conftest import EXAMPLE_CONFIG, consume_all

ADMIN_TOKEN = "capture-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
META_SECRET = "test-meta-secret"
LINKEDIN_SECRET = "test-linkedin-secret"
TIKTOK_SECRET = "test-tiktok-secret"
VENDOR_SECRET = "test-vendor-secret"
GOOGLE_KEY = "test-google-key"
GOOGLE_FORM = "18698608977"


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def write_config(
    directory: Path, *, standin_url: str = "http://127.0.0.1:9", forms: dict | None = None
) -> Path:
    """The example config with its platform secrets, stand-in URLs and fast retries for tests."""
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    overrides = {
        "forms": {
            "platforms": {
                "meta": {
                    "app_secret": META_SECRET,
                    "verify_token": "test-verify-token",
                    "page_access_token": "test-page-token",
                    "graph_url": f"{standin_url}/graph",
                },
                "linkedin": {
                    "client_secret": LINKEDIN_SECRET,
                    "access_token": "test-li-token",
                    "api_url": f"{standin_url}/linkedin",
                },
                "tiktok": {"client_secret": TIKTOK_SECRET},
                "webhooks": {"acme-leads": {"secrets": ["old-secret", VENDOR_SECRET]}},
                "retrieval": {
                    "initial_backoff_seconds": 0.05,
                    "max_backoff_seconds": 0.2,
                    "poll_seconds": 0.5,
                    "timeout_seconds": 2,
                },
            },
            "demo-request": {
                "sources": {"google": {"form_ids": [GOOGLE_FORM], "google_key": GOOGLE_KEY}},
            },
            **(forms or {}),
        }
    }
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"leadflow-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(_merge(data, overrides), sort_keys=False))
    return path


@dataclass
class Route:
    """A stand-in route: answers `body` once healthy, a platform error before."""

    body: Any
    healthy: bool = True
    failures: int = 0
    hits: int = 0


@dataclass
class PlatformStandin:
    """A real local HTTP server playing the Graph API, LinkedIn's API and captcha siteverify."""

    url: str = ""
    routes: dict[str, Route] = field(default_factory=dict)
    posts: list[dict[str, list[str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def serve(self, path: str, body: Any, healthy: bool = True) -> Route:
        route = Route(body, healthy)
        with self.lock:
            self.routes[path] = route
        return route

    def answer(self, path: str) -> tuple[int, bytes]:
        with self.lock:
            route = self.routes.get(path)
            if route is None:
                return 404, b'{"error": {"message": "unknown path", "code": 100}}'
            route.hits += 1
            if not route.healthy:
                route.failures += 1
                return (
                    500,
                    b'{"error": {"message": "unavailable", "code": 2, "is_transient": true}}',
                )
            return 200, json.dumps(route.body).encode()


def _handler(standin: PlatformStandin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._send(*standin.answer(urlsplit(self.path).path))

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode())
            with standin.lock:
                standin.posts.append(form)
            # Siteverify: only the token "good-token" passes.
            passed = form.get("response") == ["good-token"]
            self._send(200, json.dumps({"success": passed}).encode())

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextlib.contextmanager
def platform_standin() -> Iterator[PlatformStandin]:
    standin = PlatformStandin()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(standin))
    server.daemon_threads = True
    standin.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield standin
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def graph_lead(leadgen_id: str, email: str, phone: str = "+14155550123", **extra: Any) -> dict:
    """A Graph API lead object as GET /{leadgen_id}?fields=... answers it."""
    return {
        "id": leadgen_id,
        "created_time": "2026-11-22T10:00:00+0000",
        "ad_id": "120211234567890123",
        "form_id": "1234567890123456789",
        "campaign_id": "120211234567890999",
        "field_data": [
            {"name": "email", "values": [email]},
            {"name": "full_name", "values": ["Meta Person"]},
            {"name": "phone_number", "values": [phone]},
            {"name": "what_is_your_budget?", "values": ["10k"]},
        ],
        **extra,
    }


def meta_signature(body: bytes, secret: str = META_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def vendor_signature(body: bytes, secret: str = VENDOR_SECRET, t: int | None = None) -> str:
    t = int(time.time()) if t is None else t
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def tiktok_signature(body: bytes, secret: str = TIKTOK_SECRET, t: int | None = None) -> str:
    t = int(time.time()) if t is None else t
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},s={digest}"


def linkedin_signature(body: bytes, secret: str = LINKEDIN_SECRET) -> str:
    return hmac.new(secret.encode(), b"hmacsha256=" + body, hashlib.sha256).hexdigest()


async def captured_events(
    bootstrap: str, expected: int, timeout: float = 10.0
) -> list[LeadCaptured]:
    """The lead.captured events on the broker once `expected` arrived (or the timeout)."""
    records = await consume_all(bootstrap, "leads.captured", expected, timeout)
    return [e.data for e in (decode(r.value, r.headers) for r in records)]  # type: ignore[misc]


async def exactly(bootstrap: str, expected: int, settle: float = 1.5) -> list[LeadCaptured]:
    """The captured events, asserting that no more than `expected` arrive."""
    events = await captured_events(bootstrap, expected)
    assert len(events) == expected, events
    more = await captured_events(bootstrap, expected + 1, timeout=settle)
    assert len(more) == expected, [e.submission_id for e in more]
    return events


async def erased_events(bootstrap: str, expected: int, timeout: float = 10.0) -> list[LeadErased]:
    records = await consume_all(bootstrap, "leads.erasure", expected, timeout)
    return [e.data for e in (decode(r.value, r.headers) for r in records)]  # type: ignore[misc]


async def count_rows(runtime: Any, table: str, where: str = "1=1") -> int:
    async with runtime.uow() as uow:
        result = await uow.session.execute(sa.text(f"SELECT count(*) FROM {table} WHERE {where}"))
        return int(result.scalar())


async def metric(client: Any, name: str, **labels: str) -> float:
    """A sample's value from the service's /metrics (0 when absent)."""
    text = (await client.get("/metrics")).text
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and all(part in line for part in wanted.split(",")):
            return float(line.rsplit(" ", 1)[1])
        if line.startswith(f"{name} ") and not labels:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


class TcpProxy:
    """A loopback TCP proxy whose stop() cuts every connection, as a database outage does."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers.update({writer, up_writer})

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()


@contextlib.asynccontextmanager
async def tcp_proxy(target_port: int) -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy(target_port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()
