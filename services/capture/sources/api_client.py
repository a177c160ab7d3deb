"""What the Meta and LinkedIn API clients share: one connection pool, and the same
answers when the platform cannot be reached or answers with something unexpected."""

from __future__ import annotations

from typing import Any, Self

import httpx

from services.capture.sources.common import RetrievalError, SourceError


class PlatformApiClient:
    """An HTTP client for one platform's API (`name` is said in errors, e.g. "Graph API")."""

    name = "API"

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        transport: httpx.AsyncBaseTransport | None,
        headers: dict[str, str],
    ) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
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


def unexpected_response(what: str, exc: SourceError) -> RetrievalError:
    """A garbled success is not the platform's final word on the lead: the queue retries."""
    return RetrievalError(
        f"unexpected {what}: {exc.message}", retryable=True, status=200, code="bad_response"
    )
