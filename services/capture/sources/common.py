"""Shared vocabulary of the lead sources: the parsed lead, the errors, and exact JSON.

Every platform adapter in this package turns a raw webhook body (and, where the
platform only sends ids, one retrieval call) into :class:`InboundLead` values.
Nothing here performs I/O.

The file is over 300 lines because it is the one place for the exact-JSON reader and
the typed field readers every adapter uses, so none of them carries its own copy.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

#: The lead's own fields (a form maps its inputs to these or to custom names).
LEAD_FIELDS = (
    "email",
    "phone",
    "first_name",
    "last_name",
    "full_name",
    "company",
    "job_title",
    "country",
)
#: The answer keys every adapter normalizes to; anything else is kept under its own key.
STANDARD_FIELDS = frozenset({*LEAD_FIELDS, "city", "postal_code"})

# Alternative spellings the platforms and lead vendors use for the standard keys.
FIELD_ALIASES: Mapping[str, str] = {
    "email": "email",
    "email_address": "email",
    "e_mail": "email",
    "phone": "phone",
    "phone_number": "phone",
    "mobile": "phone",
    "mobile_phone": "phone",
    "mobile_number": "phone",
    "telephone": "phone",
    "first_name": "first_name",
    "firstname": "first_name",
    "given_name": "first_name",
    "last_name": "last_name",
    "lastname": "last_name",
    "surname": "last_name",
    "family_name": "last_name",
    "full_name": "full_name",
    "fullname": "full_name",
    "name": "full_name",
    "company": "company",
    "company_name": "company",
    "organization": "company",
    "job_title": "job_title",
    "jobtitle": "job_title",
    "country": "country",
    "city": "city",
    "postal_code": "postal_code",
    "postcode": "postal_code",
    "post_code": "postal_code",
    "zip": "postal_code",
    "zip_code": "postal_code",
    "zipcode": "postal_code",
    "work_email": "work_email",
    "work_phone": "work_phone",
    "work_phone_number": "work_phone",
}

# A work address or number fills the standard key only when the person gave no
# personal one; it is always kept under its own key too, so nothing is lost.
_FALLBACKS: Mapping[str, str] = {"work_email": "email", "work_phone": "phone"}

_SLUG_STRIP = re.compile(r"[^a-z0-9]+")
_MAX_KEY_LENGTH = 64


@dataclass(frozen=True)
class InboundLead:
    """One lead as a platform delivered it, before identity matching and attribution."""

    source: str  # "meta" | "google" | "linkedin" | "tiktok" | "webhook"
    external_id: str | None  # platform lead id, always a string (ids exceed 2^53); dedupe key
    fields: dict[str, str]  # answers by normalized key, plus custom question keys
    form_id: str | None = None
    campaign_id: str | None = None
    ad_id: str | None = None
    adgroup_id: str | None = None
    is_test: bool = False
    created_at: datetime | None = None  # UTC-aware
    raw_platform: dict[str, str] = field(default_factory=dict)  # other ids worth keeping


@dataclass(eq=False, repr=False)
class _Refusal(Exception):
    """An error told by its message and its details (the dataclass fields after it).

    The repr names the details in field order, then the message; a field declared with
    ``repr=False`` is left out of it.
    """

    message: str

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __repr__(self) -> str:
        details = [f for f in fields(self) if f.repr and f.name != "message"]
        said = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in details)
        return f"{type(self).__name__}({said}, message={self.message!r})"


@dataclass(eq=False, repr=False, kw_only=True)
class SourceError(_Refusal, ValueError):
    """A webhook request the route must refuse, with the HTTP status to answer."""

    status: int = 400
    code: str = "invalid_payload"
    field: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        """The JSON error body a route can answer with (no request data echoed back)."""
        return {"error": self.code, "field": self.field, "message": self.message}


@dataclass(eq=False, repr=False, kw_only=True)
class RetrievalError(_Refusal):
    """A platform API call that did not yield the lead; ``retryable`` tells the queue what to do."""

    retryable: bool
    status: int | None = None
    code: str = "retrieval_failed"
    retry_after: float | None = field(default=None, repr=False)


def secrets_equal(given: str | bytes, expected: str | bytes) -> bool:
    """Compare two secrets in constant time (str values are compared as UTF-8)."""
    given_bytes = given.encode() if isinstance(given, str) else given
    expected_bytes = expected.encode() if isinstance(expected, str) else expected
    return hmac.compare_digest(given_bytes, expected_bytes)


class JsonFloat(str):
    """A JSON number that had a fraction or exponent, kept as its exact source text."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads_exact(raw: bytes | str, *, what: str = "body") -> Any:
    """Parse JSON with every number kept as its exact text, never through float.

    Integers become ``str`` and other numbers :class:`JsonFloat`, so a 64-bit id such
    as 120211234567890123 survives intact. Malformed input raises SourceError 400.
    """
    if isinstance(raw, bytes | bytearray):
        try:
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SourceError(
                f"{what} is not UTF-8 encoded", code="invalid_encoding", field=None
            ) from exc
    else:
        text = raw
    if not text.strip():
        raise SourceError(f"{what} is empty", code="empty_body")
    try:
        value = json.loads(
            text, parse_int=str, parse_float=JsonFloat, parse_constant=_reject_constant
        )
    except RecursionError:
        raise SourceError(f"{what} is nested too deeply", code="malformed_json") from None
    except ValueError as exc:
        # The position helps the sender find the mistake; the content is never echoed.
        where = (
            f" at line {exc.lineno} column {exc.colno}"
            if isinstance(exc, json.JSONDecodeError)
            else ""
        )
        raise SourceError(f"{what} is not valid JSON{where}", code="malformed_json") from exc
    culprit = nul_path(value)
    if culprit is not None:
        raise SourceError(
            f"{culprit} contains a NUL character", code="invalid_character", field=culprit
        )
    return value


def nul_path(value: Any, root: str = "") -> str | None:
    """Where a NUL character hides in parsed JSON (a dotted path), or None.

    No database stores NUL in text (PostgreSQL refuses it), so such input is refused
    at the door. Iterative: the value may be nested as deep as the parser allows.
    """
    stack: list[tuple[str, Any]] = [(root, value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return path or "body"
        elif isinstance(item, dict):
            for key, child in item.items():
                child_path = f"{path}.{key}" if path else str(key)
                if "\x00" in str(key):
                    return child_path
                stack.append((child_path, child))
        elif isinstance(item, list):
            stack.extend((f"{path}[{index}]", child) for index, child in enumerate(item))
    return None


def require_object(value: Any, path: str) -> dict[str, Any]:
    """Return ``value`` if it is a JSON object, else raise SourceError 400 naming ``path``."""
    if not isinstance(value, dict):
        raise SourceError(f"{path} must be a JSON object", code="invalid_type", field=path)
    return value


def require_list(value: Any, path: str) -> list[Any]:
    """Return ``value`` if it is a JSON array, else raise SourceError 400 naming ``path``."""
    if not isinstance(value, list):
        raise SourceError(f"{path} must be a JSON array", code="invalid_type", field=path)
    return value


def id_or_none(value: Any, path: str) -> str | None:
    """An identifier as an exact string (JSON integer or string); None when absent or empty."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, JsonFloat) or not isinstance(value, str):
        raise SourceError(
            f"{path} must be an integer or string identifier", code="invalid_id", field=path
        )
    text = value.strip()
    if not text:
        return None
    if len(text) > 256 or any(ch.isspace() for ch in text):
        raise SourceError(f"{path} is not a valid identifier", code="invalid_id", field=path)
    return text


def require_id(value: Any, path: str) -> str:
    """Like :func:`id_or_none` but the identifier must be present."""
    ident = id_or_none(value, path)
    if ident is None:
        raise SourceError(f"{path} is required", code="missing_field", field=path)
    return ident


def bool_or_none(value: Any, path: str) -> bool | None:
    """A JSON boolean (or the strings "true"/"false"); None when absent."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "false"}:
        return value.strip().lower() == "true"
    raise SourceError(f"{path} must be a boolean", code="invalid_type", field=path)


def text_or_none(value: Any) -> str | None:
    """A scalar JSON value as stripped text; None for null, empty, objects and arrays."""
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).strip()
    return text or None


def datetime_from_epoch(value: Any, path: str, *, millis: bool = False) -> datetime | None:
    """A UTC datetime from epoch seconds (or milliseconds); None when absent."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    digits = text.removeprefix("-")
    # ASCII only ("²".isdigit() holds) and short enough for int() and a date.
    if isinstance(value, bool) or not (digits.isascii() and digits.isdigit()) or len(text) > 20:
        raise SourceError(f"{path} must be an epoch timestamp", code="invalid_time", field=path)
    try:
        seconds = int(text) / 1000 if millis else int(text)
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise SourceError(f"{path} is out of range", code="invalid_time", field=path) from exc


def datetime_from_iso(value: Any, path: str) -> datetime | None:
    """A UTC datetime from an ISO 8601 string; naive values are taken as UTC."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or isinstance(value, JsonFloat):
        raise SourceError(f"{path} must be an ISO 8601 time", code="invalid_time", field=path)
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise SourceError(
            f"{path} must be an ISO 8601 time", code="invalid_time", field=path
        ) from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def datetime_from_any(value: Any, path: str) -> datetime | None:
    """Epoch seconds, epoch milliseconds (13+ digits) or ISO 8601, as UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str) and not isinstance(value, JsonFloat) and value.strip().isdigit():
        return datetime_from_epoch(value, path, millis=len(value.strip()) >= 13)
    return datetime_from_iso(value, path)


def slugify(text: str) -> str:
    """A lower-case snake_case key for free text ("What's your budget?" -> whats_your_budget)."""
    slug = _SLUG_STRIP.sub("_", text.replace("'", "").replace("\u2019", "").lower()).strip("_")
    return slug[:_MAX_KEY_LENGTH].rstrip("_")


def normalize_key(name: str) -> str:
    """The standard key for a known answer name, else its slug."""
    slug = slugify(name)
    return FIELD_ALIASES.get(slug, slug)


def build_fields(pairs: Iterable[tuple[str, str | None]]) -> dict[str, str]:
    """Assemble (key, answer) pairs into the fields mapping of an InboundLead.

    Empty answers are dropped, a repeated key gets a numeric suffix rather than
    overwriting the first answer, work e-mail/phone fill the standard keys only when
    missing, and full_name is derived from first and last name when absent.
    """
    fields: dict[str, str] = {}
    for key, value in pairs:
        if not key or value is None:
            continue
        answer = value.strip()
        if not answer:
            continue
        unique = key
        suffix = 2
        while unique in fields:
            unique = f"{key}_{suffix}"
            suffix += 1
        fields[unique] = answer
    for alternative, standard in _FALLBACKS.items():
        if standard not in fields and alternative in fields:
            fields[standard] = fields[alternative]
    if "full_name" not in fields:
        parts = [fields[k] for k in ("first_name", "last_name") if k in fields]
        if parts:
            fields["full_name"] = " ".join(parts)
    return fields


def compact(mapping: Mapping[str, str | None]) -> dict[str, str]:
    """Drop None and empty values, for raw_platform dictionaries."""
    return {key: value for key, value in mapping.items() if value}


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header given in seconds; None for absent or HTTP-date forms."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def retryable_status(status: int) -> bool:
    """Whether an HTTP status from a platform API means "try again later"."""
    return status >= 500 or status in {408, 425, 429}
