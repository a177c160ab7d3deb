"""The console's wiring: routes, static files and error pages on the insights app.

`install(app, runtime, bus, config, settings)` mounts it at /console.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from services.insights.console.pages import HERE, Console, LoginRequired, Refused
from services.insights.console.routes import router
from services.insights.settings import InsightsConfig
from shared.messagebus import MessageBus
from shared.service import ServiceRuntime
from shared.settings import Settings


def install(
    app: FastAPI,
    runtime: ServiceRuntime,
    bus: MessageBus,
    config: InsightsConfig,
    settings: Settings,
) -> None:
    """Mount the console on the insights app."""
    console = Console(runtime, bus, config, settings)
    app.state.console = console
    app.include_router(router)
    app.mount("/console/static", StaticFiles(directory=HERE / "static"), name="console-static")

    @app.exception_handler(LoginRequired)
    async def _login(_: Request, exc: LoginRequired) -> Response:
        return RedirectResponse(
            f"/console/login?next={quote(exc.target, safe='/')}", status_code=303
        )

    @app.exception_handler(Refused)
    async def _refused(request: Request, exc: Refused) -> Response:
        return console.render(
            request, "error.html", {"status": exc.status, "message": exc.message}, status=exc.status
        )
