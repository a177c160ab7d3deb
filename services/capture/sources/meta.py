"""Meta (Facebook / Instagram) Lead Ads: webhook handshake, signature, notifications, retrieval.

A leadgen webhook carries ids only; the answers are read from the Graph API with a
Page access token that has the leads_retrieval permission.

Documentation followed:
- https://developers.facebook.com/docs/graph-api/webhooks/getting-started
- https://developers.facebook.com/docs/graph-api/webhooks/getting-started/webhooks-for-leadgen
- https://developers.facebook.com/documentation/ads-commerce/marketing-api/guides/lead-ads/quickstart/webhooks-integration
- https://developers.facebook.com/docs/marketing-api/guides/lead-ads/retrieving
- https://developers.facebook.com/docs/graph-api/guides/error-handling/
- https://developers.facebook.com/docs/graph-api/overview/rate-limiting/
- https://developers.facebook.com/docs/graph-api/securing-requests/ (appsecret_proof)

Notes on the wire format:
- Notifications are batched: several ``entry`` items, each with several ``changes``;
  only ``field == "leadgen"`` changes describe leads, others are ignored.
- Ids arrive as JSON numbers or strings depending on the sender (the App Dashboard
  "Test" button sends strings such as "444444444"); both are kept as exact strings.
- In the notification, ``adgroup_id`` is Meta's legacy name for the *ad*; it is kept
  in ``raw_platform["meta_adgroup_id"]``. ``InboundLead.adgroup_id`` carries the ad set
  (``adset_id`` from the Graph API), which is what "ad group" means on other platforms.
- The Graph API answers most application errors, including rate limiting, with HTTP
  400 and a numeric ``error.code``; throttling codes are therefore retryable even
  though the status is 4xx.

The file is over 300 lines because the webhook side (handshake, signature,
notifications) and the Graph API side (lead mapping, errors) read the same Meta
shapes and are kept together.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Unpack
from urllib.parse import quote

import httpx

from services.capture.sources import common
from services.capture.sources.api_client import (
    ClientOptions,
    PlatformApiClient,
    error_body,
    refused,
    unexpected_response,
)
from services.capture.sources.signatures import (
    malformed,
    require_header,
    require_match,
    require_secret,
)

SIGNATURE_HEADER = "X-Hub-Signature-256"
DEFAULT_GRAPH_URL = "https://graph.facebook.com/v21.0"
LEAD_FIELDS = "id,field_data,created_time,ad_id,adset_id,form_id,campaign_id,is_organic,platform"

# Graph API error codes that mean "temporary, try later" (service errors, throttling):
# 1, 2 unknown/service; 4, 17, 32, 613 rate limits; 341 app limit; 368 temporary block.
_TRANSIENT_ERROR_CODES = frozenset({1, 2, 4, 17, 32, 341, 368, 613})
# Business Use Case rate limits (80005 is the LeadGen one).
_BUC_RATE_LIMIT_CODES = range(80000, 80015)

_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{1,128}")
_GRAPH_ID = re.compile(r"[0-9]{1,32}")


@dataclass(frozen=True)
class MetaLeadNotification:
    """One leadgen change from a webhook: the ids needed to retrieve the lead."""

    leadgen_id: str
    page_id: str | None = None
    form_id: str | None = None
    ad_id: str | None = None
    adgroup_id: str | None = None  # Meta's legacy name for the ad
    created_at: datetime | None = None


def verify_handshake(params: Mapping[str, str], verify_token: str) -> str:
    """Check a subscription verification GET and return the hub.challenge to echo back."""
    if not verify_token:
        raise common.SourceError(
            "Meta verify token is not configured", status=403, code="not_configured"
        )
    if params.get("hub.mode") != "subscribe":
        raise common.SourceError(
            "hub.mode must be 'subscribe'", status=403, code="bad_handshake", field="hub.mode"
        )
    if not common.secrets_equal(params.get("hub.verify_token", ""), verify_token):
        raise common.SourceError(
            "hub.verify_token does not match",
            status=403,
            code="bad_verify_token",
            field="hub.verify_token",
        )
    challenge = params.get("hub.challenge", "")
    # Meta sends an integer; refusing anything else keeps the echo free of markup.
    if not _CHALLENGE.fullmatch(challenge):
        raise common.SourceError(
            "hub.challenge is missing or malformed",
            code="bad_challenge",
            field="hub.challenge",
        )
    return challenge


def expected_signature(raw_body: bytes, app_secret: str) -> str:
    """The X-Hub-Signature-256 value Meta computes for ``raw_body`` (useful in tests)."""
    digest = hmac.new(app_secret.encode(), raw_body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(raw_body: bytes, header: str | None, app_secret: str) -> None:
    """Verify X-Hub-Signature-256 over the exact raw bytes; 401 when absent, 403 when wrong."""
    require_secret(app_secret, "Meta app secret is not configured")
    header = require_header(header, SIGNATURE_HEADER)
    scheme, _, given = header.strip().partition("=")
    if scheme.lower() != "sha256" or not given:
        raise malformed(SIGNATURE_HEADER, "sha256=<hex>")
    expected = hmac.new(app_secret.encode(), raw_body, hashlib.sha256).hexdigest()
    require_match(given.lower(), expected, SIGNATURE_HEADER)


def parse_notifications(raw_body: bytes) -> list[MetaLeadNotification]:
    """Extract every leadgen change from a (possibly batched) Page webhook body."""
    payload = common.require_object(common.loads_exact(raw_body), "body")
    if payload.get("object") != "page":
        raise common.SourceError(
            "only Page webhooks (object = 'page') are accepted",
            code="unsupported_object",
            field="object",
        )
    notifications: list[MetaLeadNotification] = []
    seen: set[str] = set()
    for e_index, entry in enumerate(common.require_list(payload.get("entry"), "entry")):
        entry_path = f"entry[{e_index}]"
        entry = common.require_object(entry, entry_path)
        changes = entry.get("changes")
        if changes is None:
            continue  # other Page events (e.g. messaging) carry no changes
        for c_index, change in enumerate(common.require_list(changes, f"{entry_path}.changes")):
            change_path = f"{entry_path}.changes[{c_index}]"
            change = common.require_object(change, change_path)
            if change.get("field") != "leadgen":
                continue
            notification = _notification(
                change.get("value"), f"{change_path}.value", entry.get("id"), f"{entry_path}.id"
            )
            if notification.leadgen_id not in seen:
                seen.add(notification.leadgen_id)
                notifications.append(notification)
    return notifications


def _notification(value: Any, path: str, entry_id: Any, entry_id_path: str) -> MetaLeadNotification:
    value = common.require_object(value, path)
    return MetaLeadNotification(
        leadgen_id=common.require_id(value.get("leadgen_id"), f"{path}.leadgen_id"),
        # The entry id is the Page id, used when the change value leaves it out.
        page_id=common.id_or_none(value.get("page_id"), f"{path}.page_id")
        or common.id_or_none(entry_id, entry_id_path),
        form_id=common.id_or_none(value.get("form_id"), f"{path}.form_id"),
        ad_id=common.id_or_none(value.get("ad_id"), f"{path}.ad_id"),
        adgroup_id=common.id_or_none(value.get("adgroup_id"), f"{path}.adgroup_id"),
        created_at=common.datetime_from_any(value.get("created_time"), f"{path}.created_time"),
    )


def lead_from_graph(
    payload: Mapping[str, Any], notification: MetaLeadNotification | None = None
) -> common.InboundLead:
    """Map a Graph API lead object (``field_data`` [{name, values}]) to an InboundLead."""
    pairs: list[tuple[str, str | None]] = []
    field_data = payload.get("field_data")
    for index, item in enumerate(common.require_list(field_data or [], "field_data")):
        item = common.require_object(item, f"field_data[{index}]")
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            continue
        values = item.get("values")
        if isinstance(values, list):
            answer = ", ".join(str(v).strip() for v in values if v is not None and str(v).strip())
        else:
            answer = str(values).strip() if values is not None else ""
        pairs.append((_meta_field_key(name), answer))

    leadgen_id = common.id_or_none(payload.get("id"), "id") or (
        notification.leadgen_id if notification else None
    )
    ad_id = common.id_or_none(payload.get("ad_id"), "ad_id")
    form_id = common.id_or_none(payload.get("form_id"), "form_id")
    is_organic = common.bool_or_none(payload.get("is_organic"), "is_organic")
    platform = payload.get("platform")
    created_at = common.datetime_from_any(payload.get("created_time"), "created_time")
    if notification is not None:
        ad_id = ad_id or notification.ad_id
        form_id = form_id or notification.form_id
        created_at = created_at or notification.created_at
    raw = common.compact(
        {
            "page_id": notification.page_id if notification else None,
            "meta_adgroup_id": notification.adgroup_id if notification else None,
            "platform": platform if isinstance(platform, str) else None,
            "is_organic": None if is_organic is None else str(is_organic).lower(),
        }
    )
    return common.InboundLead(
        source="meta",
        external_id=leadgen_id,
        fields=common.build_fields(pairs),
        form_id=form_id,
        campaign_id=common.id_or_none(payload.get("campaign_id"), "campaign_id"),
        ad_id=ad_id,
        adgroup_id=common.id_or_none(payload.get("adset_id"), "adset_id"),
        is_test=False,
        created_at=created_at,
        raw_platform=raw,
    )


def _meta_field_key(name: str) -> str:
    # Standard questions map to the shared keys; custom questions keep Meta's key as given.
    return common.FIELD_ALIASES.get(common.slugify(name)) or name.strip()


class GraphApiClient(PlatformApiClient):
    """Reads leads from the Graph API; one instance per access token (or pass one per call)."""

    name = "Graph API"
    default_url = DEFAULT_GRAPH_URL

    def __init__(
        self,
        access_token: str,
        *,
        app_secret: str | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        super().__init__({"Accept": "application/json"}, **options)
        self._access_token = access_token
        self._app_secret = app_secret

    async def fetch_lead(
        self,
        leadgen_id: str,
        *,
        notification: MetaLeadNotification | None = None,
        access_token: str | None = None,
    ) -> common.InboundLead:
        """GET /{leadgen_id} and map it; raises RetrievalError (retryable or not) on failure."""
        if not _GRAPH_ID.fullmatch(leadgen_id):
            raise common.RetrievalError(
                "leadgen_id must be a numeric Graph id", retryable=False, code="invalid_id"
            )
        token = access_token or self._access_token
        params = {"fields": LEAD_FIELDS}
        if self._app_secret:
            # appsecret_proof binds the token to our app, as Meta recommends for server calls.
            params["appsecret_proof"] = hmac.new(
                self._app_secret.encode(), token.encode(), hashlib.sha256
            ).hexdigest()
        # The token travels in a header, never in the URL, so it stays out of access logs.
        response = await self._get(
            quote(leadgen_id, safe=""),
            params=params,
            headers={"Authorization": f"Bearer {token}"},
        )
        if response.status_code != 200:
            raise _graph_error(response)
        try:
            payload = common.require_object(
                common.loads_exact(response.content, what="Graph response"), "body"
            )
            if "field_data" not in payload:
                raise common.SourceError("field_data missing", field="field_data")
            return lead_from_graph(payload, notification)
        except common.SourceError as exc:
            raise unexpected_response("Graph API response", exc) from exc


def _graph_error(response: httpx.Response) -> common.RetrievalError:
    error = error_body(response, "Graph error").get("error")
    if not isinstance(error, dict):
        error = {}
    code = _int_or_none(error.get("code"))
    transient = error.get("is_transient") is True or (
        code is not None and (code in _TRANSIENT_ERROR_CODES or code in _BUC_RATE_LIMIT_CODES)
    )
    detail = ", ".join(
        part
        for part in (
            f"error {code}" if code is not None else None,
            str(error.get("type")) if error.get("type") else None,
            f"fbtrace_id {error.get('fbtrace_id')}" if error.get("fbtrace_id") else None,
        )
        if part
    )
    return refused(
        response,
        f"Graph API answered {response.status_code}" + (f" ({detail})" if detail else ""),
        code=f"graph_error_{code}" if code is not None else None,
        transient=transient,
    )


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None
