"""What every service's HTTP app has: health, readiness, metrics, admin auth, limits.

The error shape is in `shared.http_errors` (`ApiError` and `error_response` are
importable from here too), the edge middleware in `shared.http_edge`.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import field_validator

from shared import metrics
from shared.http_edge import EdgeMiddleware
from shared.http_errors import ERROR_RESPONSES, install_error_handlers
from shared.http_errors import ApiError as ApiError
from shared.http_errors import error_response as error_response
from shared.messagebus import MessageBus
from shared.settings import Settings

ReadinessCheck = Callable[[], Awaitable[dict[str, str]]]
Endpoint = TypeVar("Endpoint", bound=Callable[..., Awaitable[Response]])
_DIRECT = "_leadflow_direct_route"


def direct_route(endpoint: Endpoint) -> Endpoint:
    """Mark a busy route's endpoint to be called straight from the edge middleware,
    skipping the router's per-request layers (see `shared.http_edge.EdgeMiddleware`).

    The endpoint takes the request alone (`async def f(request: Request) -> Response`,
    reading its path parameters and headers itself) and no other route may match its
    requests; `create_app` checks both. Put it under the `@router.post(...)` line.
    """
    setattr(endpoint, _DIRECT, True)
    return endpoint


async def get_settings(request: Request) -> Settings:
    """The process settings (`app.state.settings`), as a route dependency."""
    return request.app.state.settings  # type: ignore[no-any-return]


SettingsDep = Annotated[Settings, Depends(get_settings)]


def app_state(name: str) -> Callable[[Request], Awaitable[Any]]:
    """A route dependency answering `app.state.<name>` (set by the app factory)."""

    async def get(request: Request) -> Any:
        return getattr(request.app.state, name)

    get.__name__ = f"get_{name}"
    return get


get_bus = app_state("bus")
BusDep = Annotated[MessageBus, Depends(get_bus)]


def no_nul(value: str | None) -> str | None:
    """`value`, refused when it holds NUL: no database stores NUL in text (PostgreSQL refuses)."""
    if value is not None and "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def refuse_nul(*fields: str) -> Any:
    """A request model's validator refusing NUL characters in `fields`."""
    return field_validator(*fields)(staticmethod(no_nul))


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
    opentelemetry: bool = False,
) -> FastAPI:
    """A service's FastAPI app with health, readiness, metrics and the error shape.

    `opentelemetry`: FastAPI's native OpenTelemetry instrumentation. Left on with no
    provider configured, it still looks the providers up on every request (~8 µs).
    """
    app = FastAPI(
        title=title,
        description=description,
        version=version,
        lifespan=lifespan,
        responses=ERROR_RESPONSES,
        telemetry=None if opentelemetry else {"tracing": False, "metrics": False, "logs": False},
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
        direct=_direct_routes(app, routers),
    )
    return app


def _direct_routes(app: FastAPI, routers: Sequence[APIRouter]) -> list[APIRoute]:
    """The routes of `routers` marked with `direct_route`, checked to be callable
    directly (the routers are included without a prefix: a route's path is its URL)."""
    routes = [
        route
        for router in (app.router, *routers)
        for route in router.routes
        if isinstance(route, APIRoute)
    ]
    direct = [r for r in routes if getattr(r.endpoint, _DIRECT, False)]
    for route in direct:
        dependant = route.dependant
        params = dependant.path_params + dependant.query_params + dependant.header_params
        if params or dependant.body_params or dependant.dependencies or dependant.cookie_params:
            raise ValueError(f"direct route {route.path}: the endpoint must take the request alone")
        for other in routes:
            if other is route or not ((other.methods or set()) & (route.methods or set())):
                continue
            overlap = route.path_regex.match(other.path_format) or other.path_regex.match(
                route.path_format
            )
            if overlap:
                raise ValueError(f"direct route {route.path}: {other.path} takes its requests too")
    return direct
