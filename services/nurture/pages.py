"""The pages people see after following a link in an email, never cached.

People (browsers asking for HTML) get a page; mail clients and scripts get
leadflow's JSON error shape.
"""

from __future__ import annotations

import html
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from shared.http import ApiError

NO_STORE = {"Cache-Control": "no-store, no-cache, must-revalidate, private", "Pragma": "no-cache"}


def wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def page(title: str, text: str, *, status: int = 200, form: str | None = None) -> HTMLResponse:
    button = (
        f'<form method="post"><button type="submit" style="font-size:16px;padding:10px 20px">'
        f"{html.escape(form)}</button></form>"
        if form
        else ""
    )
    body = (
        "<!doctype html><html lang=en><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        '<body style="font-family:Helvetica,Arial,sans-serif;max-width:36em;margin:4em auto;'
        'padding:0 1em;color:#1f2933">'
        f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>{button}</body></html>"
    )
    return HTMLResponse(body, status_code=status, headers=NO_STORE)


def either(description: str, *media: str) -> dict[str, Any]:
    """An OpenAPI response answered as a page to people and otherwise as `media`."""
    return {"description": description, "content": {m: {} for m in ("text/html", *media)}}


def error_page(request: Request, error: ApiError) -> Response:
    """People get a page; mail clients and scripts get the JSON error shape."""
    if wants_html(request):
        return page("This link does not work", error.message, status=error.status)
    raise error
