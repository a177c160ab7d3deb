"""The edge of every service's HTTP app: one pure-ASGI layer that every request passes.

Metrics per route template, load shedding, the body limit and the NUL guard (see
`EdgeMiddleware`); its refusals have the one error shape of `shared.http_errors`.
It also calls a service's busiest routes directly (`direct_routes`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from contextlib import suppress
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared import metrics
from shared.db.engine import is_transient_db_error
from shared.http_errors import database_unavailable, error_body, error_response

log = logging.getLogger(__name__)

# While the database is unavailable, one log line this often counts the 503s answered.
UNAVAILABLE_LOG_SECONDS = 5.0


class EdgeMiddleware:
    """What every request passes first, in one pure-ASGI layer (one call, one send and
    one receive wrapper per request instead of one per concern), in this order:

    - metrics: RED metrics per route template (bounded labels: never the raw path);
    - load shedding: past `max_in_flight` concurrent requests, answer 503 + Retry-After.
      Queueing without bound would raise every request's latency and the process's
      memory; refusing early keeps the accepted requests fast, and well-behaved
      clients (and ad platforms) retry. Health, readiness and metrics are never shed;
    - body limit: 413 for bodies over the limit, on Content-Length and on the bytes read;
    - database unavailable: a request that failed because the database is down or cut
      off is answered 503 + Retry-After here, counted as 503, and logged as one line
      every few seconds (not a traceback per request, as a server error would be);
    - NUL guard: 400 for a NUL character in the path or the query string. No database
      stores NUL in text (PostgreSQL refuses it), and no legitimate URL carries one:
      refusing at the door keeps it away from every route and query;
    - direct routes (`direct`): their requests are answered by calling the endpoint
      here, with the app's exception handlers, instead of going down the router's
      layers (exception middleware, exit stacks, route matching over every route,
      dependency solving, response validation): on a form post those cost as much as
      the submission's own work. Only endpoints taking the request alone qualify
      (see `shared.http.direct_route`).
    """

    EXEMPT = frozenset({"/healthz", "/readyz", "/metrics"})

    def __init__(
        self,
        app: ASGIApp,
        service: str,
        max_body_bytes: int,
        max_in_flight: int,
        shed_delay: float = 0.5,
        direct: Sequence[Route] = (),
    ) -> None:
        self.app = app
        self.direct = tuple(direct)
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
        # Requests answered 503 for want of the database since the last log line.
        self._unavailable = 0
        self._unavailable_logged_at = -UNAVAILABLE_LOG_SECONDS

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
                    route = self._direct_route(scope) if self.direct else None
                    if route is not None:
                        await self._call_direct(route, scope, receive, send_wrapper)
                    else:
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
        except Exception as exc:
            if started or not is_transient_db_error(exc):
                raise
            # The database is down or cut off: a 503 the client retries, counted as one,
            # and one log line every few seconds, not a traceback per request.
            status = 503
            self._database_unavailable(exc)
            await database_unavailable()(scope, receive, send)
        finally:
            self._observe(scope, status, time.perf_counter() - began)

    def _database_unavailable(self, exc: Exception) -> None:
        self._unavailable += 1
        now = time.monotonic()
        if now - self._unavailable_logged_at >= UNAVAILABLE_LOG_SECONDS:
            log.warning(
                "database unavailable: %d request(s) answered 503 (%s: %s)",
                self._unavailable,
                type(exc).__name__,
                exc,
            )
            self._unavailable, self._unavailable_logged_at = 0, now

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

    def _direct_route(self, scope: Scope) -> Route | None:
        """The direct route this request is for, with its path parameters set in `scope`."""
        if scope.get("root_path"):
            return None  # mounted under a prefix: the router knows how to strip it
        method, path = scope["method"], scope["path"]
        for route in self.direct:
            if route.methods is not None and method not in route.methods:
                continue
            match = route.path_regex.match(path)
            if match is not None:
                params = {
                    name: route.param_convertors[name].convert(value)
                    for name, value in match.groupdict().items()
                }
                scope["route"] = route
                scope["endpoint"] = route.endpoint
                scope["path_params"] = {**scope.get("path_params", {}), **params}
                return route
        return None

    @staticmethod
    async def _call_direct(route: Route, scope: Scope, receive: Receive, send: Send) -> None:
        """The endpoint's answer, or its exception answered by the app's handler for it
        (as the exception middleware would); an exception with no handler goes on up to
        the server-error handler, as on the router's road."""
        request = Request(scope, receive, send)
        try:
            response = await route.endpoint(request)
        except Exception as exc:
            handlers = scope["app"].exception_handlers
            handler = handlers.get(exc.status_code) if isinstance(exc, HTTPException) else None
            if handler is None:
                handler = next((handlers[k] for k in type(exc).__mro__ if k in handlers), None)
            if handler is None or handler is handlers.get(Exception):
                raise
            response = await handler(request, exc)
            exc.__traceback__ = None
        await response(scope, receive, send)

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
        error = error_body("overloaded", "too many requests in flight; retry after the given delay")
        await _send_error(send, 503, error, ((b"retry-after", b"1"),))

    async def _too_large(self, send: Send) -> None:
        error = error_body(
            "payload_too_large", f"the body is larger than {self.max_bytes} bytes", "body"
        )
        await _send_error(send, 413, error)


async def _send_error(
    send: Send, status: int, error: dict[str, Any], headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    """An error answer sent straight to the server (no route has started one)."""
    body = orjson.dumps(error)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                *headers,
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _BodyTooLarge(Exception):
    pass
