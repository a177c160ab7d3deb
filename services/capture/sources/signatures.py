"""The signature checks every signed source shares: the same refusals, the same answers.

A missing header is 401 `missing_signature`, a header of the wrong shape 401
`malformed_signature`, a stamp outside the window 403 `stale_timestamp`, a signature
that does not match the body 403 `bad_signature`, and a source without a configured
secret 403 `not_configured`.
"""

from __future__ import annotations

from services.capture.sources.common import SourceError, secrets_equal


def require_secret(configured: object, message: str) -> None:
    """Refuse (403) when the source has no secret to check signatures with."""
    if not configured:
        raise SourceError(message, status=403, code="not_configured")


def require_header(header: str | None, name: str) -> str:
    """The signature header, present and not blank (else 401)."""
    if not header or not header.strip():
        raise SourceError(
            f"{name} header is missing", status=401, code="missing_signature", field=name
        )
    return header


def malformed(name: str, shape: str) -> SourceError:
    """A header that does not look like `shape` (401)."""
    return SourceError(
        f"{name} must look like {shape}", status=401, code="malformed_signature", field=name
    )


def require_fresh(timestamp: int, now: float, tolerance: float, name: str) -> None:
    """Refuse (403) a stamp outside the accepted window around `now`."""
    if abs(now - timestamp) > tolerance:
        raise SourceError(
            "signature timestamp is outside the accepted window",
            status=403,
            code="stale_timestamp",
            field=name,
        )


def require_match(given: str, expected: str, name: str) -> None:
    """Refuse (403) a signature that is not the body's, compared in constant time."""
    if not secrets_equal(given, expected):
        raise bad_signature(name)


def bad_signature(name: str) -> SourceError:
    return SourceError(
        "signature does not match the body", status=403, code="bad_signature", field=name
    )
