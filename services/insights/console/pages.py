"""What every console page shares: the `Console` (templates, sign-in, other services,
the bus), the session and CSRF checks, the signed-in `Page`, and the refusals that
become error pages."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.datastructures import FormData

from services.insights.console.auth import (
    COOKIE,
    LOGIN_COOKIE,
    Authenticator,
    ConsoleSettings,
    LoginThrottle,
    Session,
    SessionCodec,
)
from services.insights.console.services import Services
from services.insights.settings import InsightsConfig
from shared.messagebus import MessageBus
from shared.service import ServiceRuntime
from shared.settings import Settings

HERE = Path(__file__).parent
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class LoginRequired(Exception):
    """No valid session: go to the login page, then back here."""

    def __init__(self, target: str) -> None:
        self.target = target


class Refused(Exception):
    """A console error page with this status (bad input, cross-site, unknown item)."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message


class Console:
    """What the console's pages share."""

    def __init__(
        self,
        runtime: ServiceRuntime,
        bus: MessageBus,
        config: InsightsConfig,
        settings: Settings,
        console: ConsoleSettings | None = None,
    ) -> None:
        self.runtime = runtime
        self.bus = bus
        self.config = config
        self.settings = console or ConsoleSettings()
        self.codec = SessionCodec(settings.secret_key.get_secret_value())
        self.auth = Authenticator(
            settings.admin_token.get_secret_value(), self.settings, settings.env
        )
        self.services = Services(settings, self.settings)
        self.throttle = LoginThrottle()
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.templates.env.filters["when"] = _when
        self.templates.env.filters["duration"] = _duration

    def session_of(self, request: Request) -> Session | None:
        return self.codec.decode(request.cookies.get(COOKIE))

    def render(
        self,
        request: Request,
        template: str,
        context: dict[str, Any],
        status: int = 200,
    ) -> Response:
        """A page with the session's CSRF token and the security headers."""
        session = self.session_of(request)
        new_cookie = None
        if session is None and template == "login.html":
            # The login form's CSRF token lives in a cookie of its own: a login page
            # reached from another site (which gets no SameSite=Strict cookie) must not
            # replace the session of a signed-in user.
            session = self.codec.decode(request.cookies.get(LOGIN_COOKIE))
            if session is None:
                session = new_cookie = Session.anonymous(self.settings.console_session_hours)
        if session is None:
            session = Session(None, "", 0)
        context = {"csrf": session.csrf, "user": session.user, **context}
        response = self.templates.TemplateResponse(request, template, context, status_code=status)
        response.headers.update(SECURITY_HEADERS)
        if new_cookie is not None:
            _set_cookie(
                self, response, new_cookie, https=request.url.scheme == "https", name=LOGIN_COOKIE
            )
        return response


def _set_cookie(
    console: Console, response: Response, session: Session, https: bool, name: str = COOKIE
) -> None:
    response.set_cookie(
        name,
        console.codec.encode(session),
        max_age=int(console.settings.console_session_hours * 3600),
        path="/console",
        httponly=True,
        samesite="strict",
        secure=https,
    )


def start_session(console: Console, response: Response, user: str, https: bool) -> None:
    """A new session (and CSRF token) for a user who just logged in."""
    session = Session.anonymous(console.settings.console_session_hours)
    _set_cookie(console, response, Session(user, session.csrf, session.expires), https)
    response.delete_cookie(LOGIN_COOKIE, path="/console")


async def get_console(request: Request) -> Console:
    return request.app.state.console  # type: ignore[no-any-return]


async def current_user(request: Request) -> str:
    """The signed-in user, or a redirect to the login page."""
    console: Console = request.app.state.console
    session = console.session_of(request)
    if session is None or session.user is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(target)
    return session.user


def _same_origin(request: Request) -> bool:
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin") or request.headers.get("referer")
    if origin is None or origin == "null":
        return origin is None
    parts = urlsplit(origin)
    return f"{parts.scheme}://{parts.netloc}" == f"{request.url.scheme}://{request.url.netloc}"


async def csrf_form(request: Request) -> FormData:
    """The posted form, once it is proven to come from a console page of this origin."""
    console: Console = request.app.state.console
    if not _same_origin(request):
        raise Refused(403, "Refused: this request came from another site.")
    sessions = [console.codec.decode(request.cookies.get(name)) for name in (COOKIE, LOGIN_COOKIE)]
    form = await request.form()
    token = form.get("csrf")
    if not isinstance(token, str) or not any(
        s is not None and hmac.compare_digest(token.encode(), s.csrf.encode()) for s in sessions
    ):
        raise Refused(403, "Refused: the form is stale or did not come from the console.")
    return form


def _when(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value.replace("T", " ")[:19]
    return str(value.strftime("%Y-%m-%d %H:%M:%S"))


def _duration(ms: Any) -> str:
    if ms is None:
        return "—"
    seconds = ms / 1000
    if seconds < 90:
        return f"{seconds:.1f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


UserDep = Annotated[str, Depends(current_user)]
ConsoleDep = Annotated[Console, Depends(get_console)]
FormDep = Annotated[FormData, Depends(csrf_form)]


@dataclass(frozen=True)
class Page:
    """A signed-in user's request for a console page, and the console that answers it."""

    request: Request
    console: Console

    def render(self, template: str, context: dict[str, Any], status: int = 200) -> Response:
        """The page (the signed-in user and the CSRF token are added to `context`)."""
        return self.console.render(self.request, template, context, status)


async def signed_in_page(request: Request, _: UserDep, console: ConsoleDep) -> Page:
    """The request's page, once its user is signed in (else a redirect to the login page)."""
    return Page(request, console)


PageDep = Annotated[Page, Depends(signed_in_page)]


def see_other(url: str) -> RedirectResponse:
    """After a form: go there (303, so the browser asks with GET)."""
    return RedirectResponse(url, status_code=303)


def checked(answer: Any) -> Any:
    """Another service's answer, or its refusal as this page's (5xx becomes 502)."""
    if not answer.ok:
        raise Refused(answer.status if 400 <= answer.status < 500 else 502, answer.error or "")
    return answer
