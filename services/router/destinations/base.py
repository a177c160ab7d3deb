"""What every destination shares: the delivery item, the result, HTTP error handling, mapping."""

from __future__ import annotations

import email.utils
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from jinja2 import Undefined
from jinja2.sandbox import SandboxedEnvironment

from shared.clock import utc_now

log = logging.getLogger(__name__)

DELIVERED, RETRY, FAILED = "delivered", "retry", "failed"

_templates = SandboxedEnvironment(undefined=Undefined, autoescape=False)


@dataclass(frozen=True)
class Item:
    """One claimed delivery and the document to send."""

    delivery_id: str
    lead_id: str
    purpose: str
    claims: int
    document: dict[str, Any]
    progress: dict[str, Any] = field(default_factory=dict)


@dataclass
class DeliveryResult:
    """How one delivery attempt ended."""

    status: str
    error: str | None = None
    http_status: int | None = None
    retry_after: float | None = None
    external_id: str | None = None
    progress: dict[str, Any] | None = None
    counts_as_attempt: bool = True

    @classmethod
    def delivered(
        cls, external_id: str | None = None, http_status: int | None = None
    ) -> DeliveryResult:
        return cls(DELIVERED, external_id=external_id, http_status=http_status)

    @classmethod
    def failed(cls, error: str, http_status: int | None = None) -> DeliveryResult:
        """A permanent failure: the request itself is wrong; no retry."""
        return cls(FAILED, error, http_status)


@dataclass
class Pause:
    """The destination asked us to wait (429, quota headers): no request before `seconds`."""

    seconds: float


class Destination:
    """A place leads are delivered to; subclasses implement `deliver_batch`."""

    kind = "base"
    max_batch = 1
    # Requests in flight at once; 1 where the answer says whether to send the next one.
    concurrency = 8

    def __init__(self, name: str, config: Any) -> None:
        self.name = name
        self.config = config
        self.pause: Pause | None = None

    async def deliver_batch(self, items: list[Item]) -> list[DeliveryResult]:
        """Deliver `items` (at most `max_batch`); one result per item, in order.

        By default one after the other, each by `deliver_one`."""
        return [await self.deliver_one(item) for item in items]

    async def deliver_one(self, item: Item) -> DeliveryResult:
        """Deliver one item (destinations that do not override `deliver_batch`)."""
        raise NotImplementedError

    def render(self, default: Mapping[str, Any], document: Mapping[str, Any]) -> dict[str, Any]:
        """Apply the configured (or default) field mapping to a document."""
        mapping = self.config.mapping if self.config.mapping is not None else default
        return render_mapping(mapping, template_context(document, self.name))

    def note_pause(self, seconds: float | None) -> None:
        if seconds is not None and seconds > 0:
            current = self.pause.seconds if self.pause else 0.0
            self.pause = Pause(max(current, seconds))


class HttpDestination(Destination):
    """A destination reached over HTTP, through the router's one shared client."""

    def __init__(self, name: str, config: Any, client: httpx.AsyncClient) -> None:
        super().__init__(name, config)
        self.client = client


def template_context(document: Mapping[str, Any], destination: str) -> dict[str, Any]:
    """What mapping templates see: lead, rep (with this destination's owner id), assignment."""
    rep = dict(document.get("rep") or {})
    rep["owner_id"] = (rep.get("owner_ids") or {}).get(destination, "")
    return {
        "lead": document.get("lead", {}),
        "rep": rep,
        "assignment": document.get("assignment", {}),
        "ack_url": document.get("ack_url", ""),
        "event": document.get("event", ""),
        "document": document,
    }


def render_mapping(
    mapping: Mapping[str, Any],
    context: Mapping[str, Any],
    templates: SandboxedEnvironment = _templates,
) -> dict[str, Any]:
    """Render each string value as a Jinja2 template; empty results are left out."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        rendered: Any
        if isinstance(value, str):
            rendered = templates.from_string(value).render(**context).strip()
            if rendered == "" or rendered == "None":
                continue
        elif isinstance(value, Mapping):
            rendered = render_mapping(value, context, templates)
        else:
            rendered = value
        out[key] = rendered
    return out


def one_line(value: Any) -> Any:
    """A value a lead typed, on one line: a line break must not forge a line of a message."""
    if not isinstance(value, str):
        return value
    return " ".join(value.splitlines())


def render_text(template: str, document: Mapping[str, Any], destination: str) -> str:
    return _templates.from_string(template).render(**template_context(document, destination))


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or utc_now())).total_seconds(), 0.0)


def short_error(response: httpx.Response, limit: int = 300) -> str:
    """`HTTP 400: <start of the body>` for the delivery's last error."""
    body = response.text.strip().replace("\n", " ")
    return (
        f"HTTP {response.status_code}: {body[:limit]}" if body else f"HTTP {response.status_code}"
    )


def result_of(response: httpx.Response, destination: Destination) -> DeliveryResult | None:
    """The result of a failed response; None for a 2xx (the caller reads the body).

    429: retried after Retry-After, and the whole destination pauses. 408, 425 and 5xx:
    retried with backoff. Other 4xx: permanent, the request itself is wrong (no retry).
    """
    status = response.status_code
    if status < 300:
        return None
    if status == 429:
        wait = retry_after_seconds(response.headers.get("retry-after"))
        destination.note_pause(wait if wait is not None else 1.0)
        return DeliveryResult(
            RETRY,
            short_error(response),
            status,
            retry_after=wait,
            counts_as_attempt=False,
        )
    if status in (408, 425) or status >= 500:
        return DeliveryResult(
            RETRY,
            short_error(response),
            status,
            retry_after=retry_after_seconds(response.headers.get("retry-after")),
        )
    return DeliveryResult(FAILED, short_error(response), status)


def transport_error(exc: Exception) -> DeliveryResult:
    """A connection refused, reset or timed out: the destination is down, retry."""
    return DeliveryResult(RETRY, f"{type(exc).__name__}: {exc}"[:300])
