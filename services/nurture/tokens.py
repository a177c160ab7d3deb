"""Signed tokens for the links in emails: open pixel, click, unsubscribe, confirm.

A token is `<payload>.<signature>`, both base64url: the payload is compact JSON,
the signature an HMAC-SHA256 (truncated to 128 bits) under a key derived from
`LEADFLOW_SECRET_KEY` and the token's purpose, so a click token can never pass
for an unsubscribe token. Tokens carry ids only, never an email address.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime
from typing import Any

import orjson

OPEN, CLICK, UNSUBSCRIBE, CONFIRM = "open", "click", "unsubscribe", "confirm"
_SIGNATURE_BYTES = 16


class BadToken(ValueError):
    """A token that was not signed by us, or was altered."""


class ExpiredToken(BadToken):
    """A genuine token past its validity."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _key(secret: str, purpose: str) -> bytes:
    return hmac.new(
        secret.encode(), f"leadflow-nurture:{purpose}".encode(), hashlib.sha256
    ).digest()


def _signature(secret: str, purpose: str, payload: bytes) -> bytes:
    return hmac.new(_key(secret, purpose), payload, hashlib.sha256).digest()[:_SIGNATURE_BYTES]


def sign(secret: str, purpose: str, payload: dict[str, Any]) -> str:
    """A token carrying `payload`, valid for `purpose` only."""
    body = orjson.dumps(payload)
    return f"{_b64(body)}.{_b64(_signature(secret, purpose, body))}"


def verify(
    secret: str,
    purpose: str,
    token: str,
    *,
    max_age_seconds: float | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The payload of a genuine token; BadToken (or ExpiredToken) otherwise.

    With `max_age_seconds`, the payload's `t` (issued at, Unix seconds) must be recent.
    """
    body_text, dot, signature_text = token.partition(".")
    if not dot or not body_text or not signature_text or len(token) > 1000:
        raise BadToken("malformed token")
    try:
        body, signature = _unb64(body_text), _unb64(signature_text)
    except (ValueError, TypeError):
        raise BadToken("malformed token") from None
    if not hmac.compare_digest(signature, _signature(secret, purpose, body)):
        raise BadToken("bad signature")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadToken("malformed token") from None
    if not isinstance(payload, dict):
        raise BadToken("malformed token")
    if max_age_seconds is not None:
        issued = payload.get("t")
        if not isinstance(issued, int | float) or now is None:
            raise BadToken("token without issue time")
        if now.timestamp() - issued > max_age_seconds:
            raise ExpiredToken("token expired")
    return payload
