"""The one error shape of every HTTP answer, and the handlers that give it.

Errors always look like
`{"error": {"code": "...", "message": "...", "field": "...", "details": [...]}}`,
with `field` naming the offending input where there is one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, TypedDict, Unpack

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.db.engine import is_transient_db_error

log = logging.getLogger("leadflow.http")

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

    def response(self) -> JSONResponse:
        """This error as an HTTP answer."""
        body = error_body(self.code, self.message, self.field, self.details)
        return JSONResponse(body, status_code=self.status, headers=self.headers)


class _ErrorExtras(TypedDict, total=False):
    details: list[dict[str, Any]] | None
    headers: dict[str, str] | None


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
    status: int, code: str, message: str, field: str | None = None, **more: Unpack[_ErrorExtras]
) -> JSONResponse:
    """The error shape as an HTTP answer (`details`, `headers` as for `ApiError`)."""
    return ApiError(status, code, message, field=field, **more).response()


def database_unavailable() -> JSONResponse:
    """The answer to a request that failed because the database is down or cut off."""
    return error_response(
        503,
        "unavailable",
        "the database is unavailable; retry later",
        headers={"Retry-After": "5"},
    )


def _field_of(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error with the one shape; a 500 never leaks a traceback."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

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
            422,
            "invalid_field",
            f"{first['field']}: {first['message']}",
            first["field"],
            details=details,
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
        if is_transient_db_error(exc):
            return database_unavailable()
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal error")
