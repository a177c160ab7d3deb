"""What every service's HTTP app has: health, readiness, metrics, one error shape, limits.

Errors always look like
`{"error": {"code": "...", "message": "...", "field": "...", "details": [...]}}`,
with `field` naming the offending input where there is one.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, suppress
from typing import Annotated, Any
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared import metrics
from shared.settings import Settings

ReadinessCheck = Callable[[], Awaitable[dict[str, str]]]

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "Malformed request"},
    413: {"description": "Body larger than the limit"},
    422: {"description": "A field is missing or invalid; `error.field` names it"},
}


class ApiError(Exception):
    """An error answered with leadflow's error shape."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.details = details or []
        self.headers = headers


def error_body(
    code: str, message: str, field: str | None = None, details: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The error shape, as a dict."""
    error: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    if details:
        error["details"] = details
    return {"error": error}


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        error_body(code, message, field, details), status_code=status, headers=headers
    )


def _field_of(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error with the one shape; a 500 never leaks a traceback."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(
            exc.status, exc.code, exc.message, exc.field, exc.details, exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"field": _field_of(e.get("loc", ())), "message": e.get("msg", "invalid")}
            for e in exc.errors()
        ]
        first = details[0] if details else {"field": "body", "message": "invalid"}
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            return error_response(400, "invalid_json", "the body is not valid JSON", "body")
        return error_response(
            422, "invalid_field", f"{first['field']}: {first['message']}", first["field"], details
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {
            400: "invalid_body",
            404: "not_found",
            405: "method_not_allowed",
            401: "unauthorized",
            403: "forbidden",
            413: "payload_too_large",
            415: "unsupported_media_type",
            429: "rate_limited",
        }.get(exc.status_code, "http_error")
        return error_response(
            exc.status_code,
            code,
            str(exc.detail),
            # FastAPI's 400 is a body it could not parse (not UTF-8, nested too deeply...).
            field="body" if exc.status_code == 400 else None,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        from shared.db.engine import is_transient_db_error

        if is_transient_db_error(exc):
            return error_response(
                503,
                "unavailable",
                "the database is unavailable; retry later",
                headers={"Retry-After": "5"},
            )
        import logging

        logging.getLogger("leadflow.http").exception("unhandled error")
        return error_response(500, "internal_error", "internal error")


async def get_settings(request: Request) -> Settings:
    """The process settings (`app.state.settings`), as a route dependency."""
    return request.app.state.settings  # type: ignore[no-any-return]


SettingsDep = Annotated[Settings, Depends(get_settings)]


def bearer_token(request: Request) -> str | None:
    """The token of `Authorization: Bearer <token>`, if any."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def is_admin(request: Request, settings: Settings) -> bool:
    """A valid admin bearer token (or no token configured, in development only)."""
    expected = settings.admin_token.get_secret_value()
    if not expected:
        return settings.env == "development"
    given = bearer_token(request)
    # Bytes: compare_digest refuses non-ASCII str, and a header may hold any byte.
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


async def require_admin(request: Request, settings: SettingsDep) -> None:
    """Admin endpoints: `Authorization: Bearer $LEADFLOW_ADMIN_TOKEN`.

    Without a configured token they are open in development and refused elsewhere.
    """
    if is_admin(request, settings):
        return
    if not settings.admin_token.get_secret_value():
        raise ApiError(
            403,
            "admin_disabled",
            "set LEADFLOW_ADMIN_TOKEN to use admin endpoints",
            field="authorization",
        )
    if bearer_token(request) is None:
        raise ApiError(
            401,
            "unauthorized",
            "send Authorization: Bearer <admin token>",
            field="authorization",
            headers={"WWW-Authenticate": "Bearer"},
        )
    raise ApiError(403, "forbidden", "the admin token is wrong", field="authorization")


AdminDep = Annotated[None, Depends(require_admin)]
ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No admin token"},
    403: {"description": "Wrong admin token (or none configured, outside development)"},
}


class EdgeMiddleware:
    """What every request passes first, in one pure-ASGI layer (one call, one send and
    one receive wrapper per request instead of one per concern), in this order:

    - metrics: RED metrics per route template (bounded labels: never the raw path);
    - load shedding: past `max_in_flight` concurrent requests, answer 503 + Retry-After.
      Queueing without bound would raise every request's latency and the process's
      memory; refusing early keeps the accepted requests fast, and well-behaved
      clients (and ad platforms) retry. Health, readiness and metrics are never shed;
    - body limit: 413 for bodies over the limit, on Content-Length and on the bytes read;
    - NUL guard: 400 for a NUL character in the path or the query string. No database
      stores NUL in text (PostgreSQL refuses it), and no legitimate URL carries one:
      refusing at the door keeps it away from every route and query.
    """

    EXEMPT = frozenset({"/healthz", "/readyz", "/metrics"})

    def __init__(
        self,
        app: ASGIApp,
        service: str,
        max_body_bytes: int,
        max_in_flight: int,
        shed_delay: float = 0.5,
    ) -> None:
        self.app = app
        self.service = service
        self.max_bytes = max_body_bytes
        self.max_in_flight = max_in_flight
        # The 503 goes out after a pause: a client that retries at once (ignoring
        # Retry-After) would otherwise spend the process's CPU on refusals and starve
        # the requests it did accept. A paused refusal holds no slot and no work.
        self.shed_delay = shed_delay
        self.in_flight = 0
        # Metric children by label values: `.labels()` costs a lock and a lookup per call.
        self._counters: dict[tuple[str, str, str], Any] = {}
        self._histograms: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500
        rejected = started = counted = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started
            # A route that catches the cut-off body (FastAPI answers 400 "error parsing
            # the body") does not get to answer: the 413 below does.
            if rejected and not started:
                return
            if message["type"] == "http.response.start":
                status = message["status"]
            started = True
            await send(message)

        try:
            # Health, readiness and metrics are never shed (nor counted as in flight).
            if scope["path"] not in self.EXEMPT:
                if self.in_flight >= self.max_in_flight:
                    status = 503
                    await self._shed(scope, send)
                    return
                self.in_flight += 1
                counted = True
            try:
                length = self._content_length(scope)
                if length is not None and length > self.max_bytes:
                    status = 413
                    await self._too_large(send)
                    return
                field = self._nul_culprit(scope)
                if field is not None:
                    await error_response(
                        400, "invalid_character", "NUL characters are not allowed", field
                    )(scope, receive, send_wrapper)
                    return
                if length is not None:
                    # The server frames the body by Content-Length: it cannot grow past it.
                    await self.app(scope, receive, send_wrapper)
                    return
                received = 0

                async def limited_receive() -> Message:
                    nonlocal received, rejected
                    message = await receive()
                    if message["type"] == "http.request":
                        received += len(message.get("body", b""))
                        if received > self.max_bytes:
                            rejected = True
                            raise _BodyTooLarge
                    return message

                with suppress(_BodyTooLarge):
                    await self.app(scope, limited_receive, send_wrapper)
                if rejected and not started:
                    status = 413
                    await self._too_large(send)
            finally:
                if counted:
                    self.in_flight -= 1
        finally:
            self._observe(scope, status, time.perf_counter() - began)

    def _observe(self, scope: Scope, status: int, seconds: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        if template == "/metrics":
            return
        method = scope.get("method", "GET")
        key = (method, template, str(status))
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = metrics.http_requests_total.labels(self.service, *key)
        counter.inc()
        histogram = self._histograms.get(key[:2])
        if histogram is None:
            histogram = self._histograms[key[:2]] = metrics.http_request_duration_seconds.labels(
                self.service, method, template
            )
        histogram.observe(seconds)

    @staticmethod
    def _content_length(scope: Scope) -> int | None:
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    return int(value)
                except ValueError:
                    return None
        return None

    @staticmethod
    def _nul_culprit(scope: Scope) -> str | None:
        if "\x00" in scope.get("path", ""):
            return "path"
        query: bytes = scope.get("query_string", b"")
        if b"\x00" in query or b"%00" in query:
            for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
                if "\x00" in name or "\x00" in value:
                    return name.replace("\x00", "") or "query"
            return "query"
        return None

    async def _shed(self, scope: Scope, send: Send) -> None:
        metrics.http_requests_shed_total.labels(scope.get("method", "GET")).inc()
        await asyncio.sleep(self.shed_delay)
        body = orjson.dumps(
            error_body("overloaded", "too many requests in flight; retry after the given delay")
        )
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"retry-after", b"1"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _too_large(self, send: Send) -> None:
        body = orjson.dumps(
            error_body(
                "payload_too_large", f"the body is larger than {self.max_bytes} bytes", "body"
            )
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _BodyTooLarge(Exception):
    pass


def create_app(
    *,
    service: str,
    title: str,
    description: str,
    version: str,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]],
    readiness: ReadinessCheck,
    routers: Sequence[APIRouter],
    max_body_bytes: int = 64 * 1024,
    max_in_flight: int = 512,
    shed_delay: float = 0.5,
) -> FastAPI:
    """A service's FastAPI app with health, readiness, metrics and the error shape."""
    app = FastAPI(
        title=title,
        description=description,
        version=version,
        lifespan=lifespan,
        responses=ERROR_RESPONSES,
    )
    install_error_handlers(app)
    metrics.build_info.labels(service).info({"version": version})

    @app.get("/healthz", tags=["operations"], summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="Readiness: database and broker reachable",
        responses={503: {"description": "A dependency is unreachable"}},
    )
    async def readyz() -> Response:
        checks = await readiness()
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "unavailable", "checks": checks},
            status_code=200 if ready else 503,
            headers=None if ready else {"Retry-After": "5"},
        )

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics", response_class=Response)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    for router in routers:
        app.include_router(router)
    app.add_middleware(
        EdgeMiddleware,
        service=service,
        max_body_bytes=max_body_bytes,
        max_in_flight=max_in_flight,
        shed_delay=shed_delay,
    )
    return app
