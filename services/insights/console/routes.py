"""The console's pages, under /console: sign-in here; the funnel, the leads and the
operations pages in their own modules.

Pages need a signed-in session (else a 303 to the login page); every POST needs
the session's CSRF token and a same-origin request (else 403).
"""

from __future__ import annotations

import asyncio
import math

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from services.insights.console import funnel_pages, lead_pages, operations_pages
from services.insights.console.pages import (
    COOKIE,
    ConsoleDep,
    FormDep,
    UserDep,
    see_other,
    start_session,
)

router = APIRouter(prefix="/console", include_in_schema=False)


def _safe_next(target: str | None) -> str:
    """Only a console path: never an open redirect."""
    if target and target.startswith("/console") and not target.startswith("//"):
        return target
    return "/console/funnel"


# Login -----------------------------------------------------------------------------------


@router.get("")
async def home(_: UserDep) -> RedirectResponse:
    return see_other("/console/funnel")


@router.get("/login")
async def login_page(request: Request, console: ConsoleDep, next: str | None = None) -> Response:
    return console.render(request, "login.html", {"next": _safe_next(next), "error": None})


@router.post("/login")
async def login(request: Request, console: ConsoleDep, form: FormDep) -> Response:
    name = str(form.get("username", ""))[:200]
    password = str(form.get("password", ""))[:1000]
    target = _safe_next(str(form.get("next", "")))
    address = request.client.host if request.client else None
    wait = console.throttle.retry_after(name, address)
    if wait is not None:
        minutes = math.ceil(wait / 60)
        context = {
            "next": target,
            "error": "Too many failed sign-ins: try again in "
            + (f"{minutes} minutes." if minutes > 1 else "a minute."),
        }
        response = console.render(request, "login.html", context, status=429)
        response.headers["Retry-After"] = str(wait)
        return response
    attempt = console.throttle.attempt(name, address)
    # scrypt takes a while: off the event loop.
    if not await asyncio.to_thread(console.auth.check, name, password):
        context = {"next": target, "error": "Wrong user name or password."}
        if not console.auth.configured:
            context["error"] = (
                "No console user is configured: set LEADFLOW_ADMIN_TOKEN, "
                "LEADFLOW_CONSOLE_PASSWORD or LEADFLOW_CONSOLE_USERS."
            )
        return console.render(request, "login.html", context, status=401)
    console.throttle.succeeded(name, address, attempt)
    response = see_other(target)
    start_session(console, response, name, https=request.url.scheme == "https")
    return response


@router.post("/logout")
async def logout(_: FormDep) -> Response:
    response = see_other("/console/login")
    response.delete_cookie(COOKIE, path="/console")
    return response


for pages in (funnel_pages, lead_pages, operations_pages):
    router.include_router(pages.router)
