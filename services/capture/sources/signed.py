"""Generic signed webhook for lead vendors (Stripe-style HMAC with a replay window).

The sender signs every request with a shared secret::

    Leadflow-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + raw body>

Several ``v1`` entries may be present so a secret can be rotated without downtime:
the request is accepted when any of them matches any configured secret. Requests
whose timestamp is further than ``tolerance`` seconds from now (in either direction)
are refused, which bounds replay of a captured request. Unknown schemes (``v0`` ...)
are ignored, so the header can evolve.

Body: one lead object, or ``{"leads": [ ... ]}``. A lead carries ``external_id`` (or
``id``) and either a ``fields`` object or its answers as flat keys next to the ids.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Any

from services.capture.sources import common
from services.capture.sources.signatures import (
    bad_signature,
    malformed,
    require_fresh,
    require_header,
    require_secret,
)

SIGNATURE_HEADER = "Leadflow-Signature"
DEFAULT_TOLERANCE = 300
MAX_LEADS_PER_REQUEST = 500

# Lead-level keys that describe the lead rather than answer a question.
_ID_KEYS = ("form_id", "campaign_id", "ad_id", "adgroup_id")
_META_KEYS = frozenset({"external_id", "id", "fields", "is_test", "created_at", "raw_platform"})
_CLICK_IDS = frozenset({"gclid", "gbraid", "wbraid", "fbclid", "ttclid", "msclkid", "li_fat_id"})


def sign(raw_body: bytes, secret: str, t: int) -> str:
    """The Leadflow-Signature header value for ``raw_body`` signed at unix time ``t``."""
    return f"t={t},v1={_digest(raw_body, secret, str(t))}"


def verify(
    raw_body: bytes,
    header: str | None,
    secrets: Sequence[str],
    now: float,
    tolerance: float = DEFAULT_TOLERANCE,
) -> None:
    """Verify a Leadflow-Signature header; 401 when missing or malformed, 403 when refused."""
    usable = [secret for secret in secrets if secret]
    require_secret(usable, "no signing secret is configured")
    header = require_header(header, SIGNATURE_HEADER)
    timestamp, signatures = _parse_header(header)
    require_fresh(int(timestamp), now, tolerance, SIGNATURE_HEADER)
    expected = [_digest(raw_body, secret, timestamp) for secret in usable]
    # Every pair is compared so timing does not reveal which secret or entry matched.
    matched = False
    for given in signatures:
        for digest in expected:
            matched |= common.secrets_equal(given, digest)
    if not matched:
        raise bad_signature(SIGNATURE_HEADER)


def replay_key(raw_body: bytes, header: str) -> str:
    """The same for an exact replay of a verified request (its timestamp and body)."""
    timestamp, _ = _parse_header(header)
    return hashlib.sha256(timestamp.encode() + b"." + raw_body).hexdigest()[:40]


def _digest(raw_body: bytes, secret: str, timestamp: str) -> str:
    return hmac.new(
        secret.encode(), timestamp.encode() + b"." + raw_body, hashlib.sha256
    ).hexdigest()


def _parse_header(header: str) -> tuple[str, list[str]]:
    timestamp: str | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            timestamp = value.strip()
        elif key == "v1" and value.strip():
            signatures.append(value.strip().lower())
    # ASCII digits only ("²".isdigit() holds), and few enough for int().
    if (
        timestamp is None
        or not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12)
        or not signatures
    ):
        raise malformed(SIGNATURE_HEADER, "t=<unix seconds>,v1=<hex>")
    return timestamp, signatures


def parse_generic(
    raw_body: bytes, *, max_leads: int = MAX_LEADS_PER_REQUEST
) -> list[common.InboundLead]:
    """Parse one lead object or {"leads": [...]} into InboundLead values (source "webhook")."""
    payload = common.require_object(common.loads_exact(raw_body), "body")
    if "leads" in payload:
        items = common.require_list(payload["leads"], "leads")
        if not items:
            raise common.SourceError("leads must not be empty", code="empty_batch", field="leads")
        if len(items) > max_leads:
            raise common.SourceError(
                f"at most {max_leads} leads per request",
                status=413,
                code="too_many_leads",
                field="leads",
            )
        return [_lead(item, f"leads[{index}]") for index, item in enumerate(items)]
    return [_lead(payload, "body")]


def _lead(item: Any, path: str) -> common.InboundLead:
    item = common.require_object(item, path)
    prefix = "" if path == "body" else f"{path}."
    external_id = common.id_or_none(
        item.get("external_id"), f"{prefix}external_id"
    ) or common.id_or_none(item.get("id"), f"{prefix}id")
    raw_platform: dict[str, str] = {}
    if "raw_platform" in item:
        for key, value in common.require_object(
            item["raw_platform"], f"{prefix}raw_platform"
        ).items():
            text = common.text_or_none(value)
            if text is not None:
                raw_platform[str(key)] = text

    pairs: list[tuple[str, str | None]] = []
    if "fields" in item:
        answers = common.require_object(item["fields"], f"{prefix}fields")
        answers_prefix = f"{prefix}fields."
    else:
        answers = {
            key: value
            for key, value in item.items()
            if key not in _META_KEYS and key not in _ID_KEYS
        }
        answers_prefix = prefix
    for name, value in answers.items():
        key = common.normalize_key(str(name))
        if isinstance(value, dict | list):
            raise common.SourceError(
                f"{answers_prefix}{name} must be a string, number or boolean",
                code="invalid_type",
                field=f"{answers_prefix}{name}",
            )
        # Attribution parameters are ids about the click, not answers from the person.
        if key.startswith("utm_") or key in _CLICK_IDS:
            text = common.text_or_none(value)
            if text is not None:
                raw_platform.setdefault(key, text)
            continue
        pairs.append((key, common.text_or_none(value)))

    fields = common.build_fields(pairs)
    if not fields:
        raise common.SourceError(
            f"{path} has no answers", code="no_fields", field=f"{prefix}fields"
        )
    return common.InboundLead(
        source="webhook",
        external_id=external_id,
        fields=fields,
        form_id=common.id_or_none(item.get("form_id"), f"{prefix}form_id"),
        campaign_id=common.id_or_none(item.get("campaign_id"), f"{prefix}campaign_id"),
        ad_id=common.id_or_none(item.get("ad_id"), f"{prefix}ad_id"),
        adgroup_id=common.id_or_none(item.get("adgroup_id"), f"{prefix}adgroup_id"),
        is_test=common.bool_or_none(item.get("is_test"), f"{prefix}is_test") or False,
        created_at=common.datetime_from_any(item.get("created_at"), f"{prefix}created_at"),
        raw_platform=raw_platform,
    )
