"""A service's app from its parts: settings, config, runtime, workers, routes and state.

Every service's `app.py` (its composition root) reads its config, builds its runtime,
wires its own parts (buses, workers, clients) and then hands them to `service_app`,
which makes the FastAPI app with the shared operations routes and a lifespan that
starts and stops everything in the right order.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from fastapi import APIRouter, FastAPI

from shared.config import RawConfig, load_config
from shared.http import create_app
from shared.service import ServiceRuntime, Worker
from shared.settings import Settings

log = logging.getLogger(__name__)

ConfigT = TypeVar("ConfigT")
Cleanup = Callable[[], Awaitable[Any]]


def configure(
    service: str,
    settings: Settings | None,
    load: Callable[[RawConfig], ConfigT],
    outbox: sa.Table,
    inbox: sa.Table,
    *,
    plan_with_values: bool = False,
) -> tuple[ServiceRuntime, ConfigT]:
    """The service's runtime (on `settings`, else the environment's) and its validated
    config sections (`load` reads them from the config file the settings name).

    `plan_with_values`: PostgreSQL plans every statement with its values (see
    `shared.db.engine.Database`).
    """
    settings = settings or Settings()
    config = load(load_config(settings.config))
    runtime = ServiceRuntime(service, settings, outbox, inbox, plan_with_values=plan_with_values)
    return runtime, config


def service_app(
    runtime: ServiceRuntime,
    *,
    title: str,
    description: str,
    version: str,
    routers: Sequence[APIRouter],
    workers: Mapping[str, Worker] | None = None,
    state: Mapping[str, Any] | None = None,
    drain: Sequence[Cleanup] = (),
    close: Sequence[Cleanup] = (),
    admin: str | None = None,
    warn_open_admin: bool = True,
    **edge: Any,
) -> FastAPI:
    """The service's FastAPI app: health, readiness, metrics and the error shape
    (`shared.http.create_app`) and its `routers`.

    - `workers`: background loops by name (`PollingWorker.run`), started with the runtime.
    - `state`: set on `app.state`, besides `runtime` and `settings` (always set).
    - The lifespan starts the runtime (database, relay, consumers, workers); on the way
      out it awaits `drain` (work in hand, before the runtime stops), stops the
      runtime, then awaits `close` (HTTP clients), each in order, whatever fails.
    - `admin`: what LEADFLOW_ADMIN_TOKEN guards, as the warning reads it without a
      token (e.g. "admin endpoints are": "... are open (development)" / "... are refused");
      `warn_open_admin=False` keeps quiet about open admin routes in development.
    - `edge`: options of the edge middleware (`max_in_flight`, `shed_delay`).
    """
    settings = runtime.settings
    for name, worker in (workers or {}).items():
        runtime.add_worker(name, worker)
    if admin is not None and not settings.admin_token.get_secret_value():
        if settings.env == "development":
            if warn_open_admin:
                log.warning("LEADFLOW_ADMIN_TOKEN is not set: %s open (development)", admin)
        else:
            log.warning("LEADFLOW_ADMIN_TOKEN is not set: %s refused", admin)
    runtime_lifespan = runtime.lifespan()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for cleanup in reversed(close):
                stack.push_async_callback(cleanup)
            await stack.enter_async_context(runtime_lifespan(app))
            for cleanup in reversed(drain):
                stack.push_async_callback(cleanup)
            yield

    app = create_app(
        service=runtime.service,
        title=title,
        description=description,
        version=version,
        lifespan=lifespan,
        readiness=runtime.readiness,
        routers=routers,
        max_body_bytes=settings.max_body_bytes,
        opentelemetry=settings.opentelemetry,
        **edge,
    )
    app.state.runtime = runtime
    app.state.settings = settings
    for name, value in (state or {}).items():
        setattr(app.state, name, value)
    return app


def freeze_heap_once_started(app: FastAPI) -> None:
    """Freeze the start-up heap (`freeze_startup_heap`) once `app`'s lifespan has started
    (the runtime, its connections and clients built), before the first request.

    For a served process only (`leadflow serve`): frozen objects are never collected,
    so in a test process, which builds and drops many apps, whatever one of them leaked
    would stay for good (an unclosed aiosqlite connection's thread keeps the
    interpreter from exiting).
    """
    started = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[Any]:
        async with started(app) as state:
            freeze_startup_heap()
            yield state

    app.router.lifespan_context = lifespan


def freeze_startup_heap(young_threshold: int = 20_000) -> None:
    """Keep the garbage collector off what start-up built, for a steady tail latency.

    Imports, models, compiled statements and clients are some 10^5 objects that live as
    long as the process. Every full collection walks all of them: ~70 ms with the event
    loop stopped, a few times a minute under load, which is most of a busy service's
    p99. Collected once here and then frozen (`gc.freeze`), they are never walked
    again; collections see only what requests allocate. A larger young generation
    (`young_threshold`, CPython's default is 700) runs the collector less often, so
    fewer objects of requests still in flight are promoted into the old generations,
    whose growth is what triggers the full collections.
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, old)
