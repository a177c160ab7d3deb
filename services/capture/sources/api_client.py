"""What the Meta and LinkedIn API clients share: one connection pool, the options every
client takes, and the same answers when the platform cannot be reached, refuses, or
answers with something unexpected."""

from __future__ import annotations

from typing import Any, Self, TypedDict

import httpx

from services.capture.sources.common import (
    RetrievalError,
    SourceError,
    loads_exact,
    parse_retry_after,
    retryable_status,
)


class ClientOptions(TypedDict, total=False):
    """Where a platform's API is (else the client's `default_url`), how long a call may
    take, and the transport (tests give one)."""

    base_url: str
    timeout: float
    transport: httpx.AsyncBaseTransport | None


class PlatformApiClient:
    """An HTTP client for one platform's API (`name` is said in errors, e.g. "Graph API")."""

    name = "API"
    default_url = ""

    def __init__(
        self,
        headers: dict[str, str],
        *,
        base_url: str | None = None,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        url = self.default_url if base_url is None else base_url
        self._client = httpx.AsyncClient(
            base_url=url.rstrip("/") + "/",
            timeout=timeout,
            transport=transport,
            headers=headers,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def _get(self, path: str, **options: Any) -> httpx.Response:
        """GET `path`; a timeout or an unreachable platform is a retryable RetrievalError."""
        try:
            return await self._client.get(path, **options)
        except httpx.TimeoutException as exc:
            raise RetrievalError(f"{self.name} timed out", retryable=True, code="timeout") from exc
        except httpx.TransportError as exc:
            raise RetrievalError(
                f"{self.name} unreachable: {type(exc).__name__}",
                retryable=True,
                code="network_error",
            ) from exc


def error_body(response: httpx.Response, what: str) -> dict[str, Any]:
    """The JSON object of an error answer; empty when it is not one (the status still tells)."""
    try:
        body = loads_exact(response.content, what=what)
    except SourceError:
        return {}
    return body if isinstance(body, dict) else {}


def refused(
    response: httpx.Response, message: str, *, code: str | None = None, transient: bool = False
) -> RetrievalError:
    """A platform's answer other than 200: retried when its status (or the platform, by
    `transient`) says it is temporary, after the Retry-After it asks for."""
    status = response.status_code
    return RetrievalError(
        message,
        retryable=retryable_status(status) or transient,
        status=status,
        code=code or f"http_{status}",
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
    )


def unexpected_response(what: str, exc: SourceError) -> RetrievalError:
    """A garbled success is not the platform's final word on the lead: the queue retries."""
    return RetrievalError(
        f"unexpected {what}: {exc.message}", retryable=True, status=200, code="bad_response"
    )
