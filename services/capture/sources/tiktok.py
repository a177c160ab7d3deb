"""TikTok Lead Generation (Instant Form) webhooks: signature and lead payload.

Documentation followed:
- https://developers.tiktok.com/doc/webhooks-overview
- https://developers.tiktok.com/doc/webhooks-verification
- https://developers.tiktok.com/doc/webhooks-events
- https://business-api.tiktok.com/portal/docs?id=1709486073255937 (Leads: subscribe to leads)

Signature (documented): header ``TikTok-Signature: t=<unix seconds>,s=<hex>`` where the
hex is HMAC-SHA256 keyed with the app's client_secret over ``"<t>." + raw body``. The
timestamp is signed, so a stale one is refused to bound replay. TikTok retries
deliveries for up to 72 hours and may deliver an event more than once: dedupe on the
lead id.

Assumptions, because the lead payload itself is thinly documented:
- The body is either TikTok's webhook envelope (``client_key``, ``event``,
  ``create_time``, ``content``) whose ``content`` is a serialized JSON string (or an
  object) holding the lead, or a lead object directly; ``data``, ``leads`` and
  ``data.leads`` / ``data.list`` wrappers are unwrapped, so several leads may arrive.
- A lead has ``lead_id`` (or ``id``); the instant form is ``page_id`` (or ``form_id``);
  ``advertiser_id``, ``campaign_id``, ``adgroup_id``, ``ad_id`` are int64 ids kept as
  exact strings; ``create_time`` is epoch seconds, milliseconds or ISO 8601.
- Answers come as ``field_data`` ([{name, values}]), or as ``fields`` / ``answers`` /
  ``lead_data`` / ``user_info`` in either list form ([{field_name|name|key|question,
  field_value|value|values|answer}]) or object form ({name: value}). Built-in question
  names (name, email, phone_number, zip_code, company_name, ...) map to the standard
  keys; custom questions are keyed by their slug.
- Documented non-lead events (authorization.removed, video.*) yield no leads.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from services.capture.sources import common
from services.capture.sources.signatures import (
    malformed,
    require_fresh,
    require_header,
    require_match,
    require_secret,
)

SIGNATURE_HEADER = "TikTok-Signature"
DEFAULT_TOLERANCE = 300

_NON_LEAD_EVENTS = frozenset(
    {"authorization.removed", "video.upload.failed", "video.publish.completed"}
)
_ANSWER_CONTAINERS = ("field_data", "fields", "answers", "lead_data", "user_info")
_NAME_KEYS = ("field_name", "name", "key", "question", "label")
_VALUE_KEYS = ("field_value", "value", "values", "answer")


def sign(raw_body: bytes, client_secret: str, t: int) -> str:
    """The TikTok-Signature header value for ``raw_body`` at unix time ``t`` (for tests/docs)."""
    digest = hmac.new(client_secret.encode(), f"{t}.".encode() + raw_body, hashlib.sha256)
    return f"t={t},s={digest.hexdigest()}"


def verify_signature(
    raw_body: bytes,
    header: str | None,
    client_secret: str,
    now: float,
    tolerance: float = DEFAULT_TOLERANCE,
) -> None:
    """Verify TikTok-Signature; 401 when missing or malformed, 403 when stale or wrong."""
    require_secret(client_secret, "TikTok client secret is not configured")
    header = require_header(header, SIGNATURE_HEADER)
    parts: dict[str, str] = {}
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        parts[key] = value.strip()
    timestamp = parts.get("t", "")
    given = parts.get("s", "").lower()
    # ASCII digits only ("²".isdigit() holds), and few enough for int().
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12) or not given:
        raise malformed(SIGNATURE_HEADER, "t=<unix seconds>,s=<hex>")
    require_fresh(int(timestamp), now, tolerance, SIGNATURE_HEADER)
    expected = sign(raw_body, client_secret, int(timestamp)).rpartition("s=")[2]
    require_match(given, expected, SIGNATURE_HEADER)


def parse_leads(raw_body: bytes) -> list[common.InboundLead]:
    """Parse a TikTok lead webhook body into InboundLead values (empty for non-lead events)."""
    payload = common.require_object(common.loads_exact(raw_body), "body")
    envelope: dict[str, Any] = {}
    if "content" in payload and ("event" in payload or "client_key" in payload):
        envelope = payload
        event = common.text_or_none(payload.get("event"))
        if event in _NON_LEAD_EVENTS:
            return []
        content = payload.get("content")
        payload = common.require_object(
            common.loads_exact(content, what="content") if isinstance(content, str) else content,
            "content",
        )
    leads = [
        _lead(item, path, envelope)
        for path, item in _lead_objects(payload, "content" if envelope else "body")
    ]
    if not leads:
        raise common.SourceError("no lead found in the payload", code="no_lead", field="body")
    return leads


def _lead_objects(payload: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    data = payload.get("data")
    if isinstance(data, dict):
        return _lead_objects(data, f"{path}.data")
    for wrapper in ("leads", "list"):
        items = payload.get(wrapper)
        if isinstance(items, list):
            return [
                (f"{path}.{wrapper}[{i}]", common.require_object(item, f"{path}.{wrapper}[{i}]"))
                for i, item in enumerate(items)
            ]
    return [(path, payload)]


def _lead(item: dict[str, Any], path: str, envelope: Mapping[str, Any]) -> common.InboundLead:
    pairs: list[tuple[str, str | None]] = []
    for container in _ANSWER_CONTAINERS:
        if container in item:
            pairs.extend(_answers(item[container], f"{path}.{container}"))
    external_id = common.id_or_none(item.get("lead_id"), f"{path}.lead_id") or common.id_or_none(
        item.get("id"), f"{path}.id"
    )
    fields = common.build_fields(pairs)
    if external_id is None and not fields:
        raise common.SourceError(
            f"{path} has neither a lead id nor answers", code="no_lead", field=path
        )
    created = item.get("create_time", item.get("created_time"))
    return common.InboundLead(
        source="tiktok",
        external_id=external_id,
        fields=fields,
        form_id=common.id_or_none(item.get("page_id"), f"{path}.page_id")
        or common.id_or_none(item.get("form_id"), f"{path}.form_id"),
        campaign_id=common.id_or_none(item.get("campaign_id"), f"{path}.campaign_id"),
        ad_id=common.id_or_none(item.get("ad_id"), f"{path}.ad_id"),
        adgroup_id=common.id_or_none(item.get("adgroup_id"), f"{path}.adgroup_id"),
        is_test=bool(
            common.bool_or_none(item.get("is_test"), f"{path}.is_test")
            or common.bool_or_none(item.get("test_lead"), f"{path}.test_lead")
        ),
        created_at=common.datetime_from_any(created, f"{path}.create_time")
        or common.datetime_from_any(envelope.get("create_time"), "create_time"),
        raw_platform=common.compact(
            {
                "advertiser_id": common.id_or_none(
                    item.get("advertiser_id"), f"{path}.advertiser_id"
                ),
                "ttclid": common.text_or_none(item.get("ttclid")),
                "event": common.text_or_none(envelope.get("event")),
            }
        ),
    )


def _answers(value: Any, path: str) -> list[tuple[str, str | None]]:
    if isinstance(value, dict):
        return [
            (common.normalize_key(str(name)), _joined(answer)) for name, answer in value.items()
        ]
    if not isinstance(value, list):
        raise common.SourceError(
            f"{path} must be an array or object", code="invalid_type", field=path
        )
    pairs: list[tuple[str, str | None]] = []
    for index, entry in enumerate(value):
        entry = common.require_object(entry, f"{path}[{index}]")
        names = (common.text_or_none(entry.get(key)) for key in _NAME_KEYS)
        name = next((n for n in names if n), None)
        if name is None:
            continue
        answer = next((entry[k] for k in _VALUE_KEYS if k in entry), None)
        pairs.append((common.normalize_key(name), _joined(answer)))
    return pairs


def _joined(answer: Any) -> str | None:
    if isinstance(answer, list):
        parts = [text for text in (common.text_or_none(a) for a in answer) if text]
        return ", ".join(parts) or None
    return common.text_or_none(answer)
