"""Google Ads lead form webhooks: the whole lead arrives in one POST, authenticated by google_key.

Documentation followed:
- https://developers.google.com/google-ads/webhook/docs/implementation
- https://developers.google.com/google-ads/webhook/docs/overview
- https://developers.google.com/google-ads/api/reference/rpc/latest/WebhookDelivery
- https://developers.google.com/google-ads/api/reference/rpc/latest/LeadFormFieldUserInputTypeEnum.LeadFormFieldUserInputType

Notes on the wire format:
- ``google_key`` is the secret the advertiser typed into the lead form's webhook
  settings; Google sends it inside the JSON body (there is no signature header), so it
  is checked per form with a constant-time comparison before anything else is trusted.
- ``form_id``, ``campaign_id``, ``adgroup_id``, ``creative_id`` and ``asset_group_id``
  are int64 and are parsed as exact strings. ``lead_id`` is documented as the dedupe key.
- "Send test data" in Google Ads posts a lead with ``is_test: true``.
- ``creative_id`` is the ad, so it fills ``InboundLead.ad_id``.
- Unknown fields are ignored, as the documentation asks, for forward compatibility.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from services.capture.sources import common

# LeadFormFieldUserInputType values with a standard key (others use their column_name slug).
COLUMN_KEYS: Mapping[str, str] = {
    "FULL_NAME": "full_name",
    "FIRST_NAME": "first_name",
    "LAST_NAME": "last_name",
    "EMAIL": "email",
    "PHONE_NUMBER": "phone",
    "WORK_EMAIL": "work_email",
    "WORK_PHONE": "work_phone",
    "COMPANY_NAME": "company",
    "JOB_TITLE": "job_title",
    "COUNTRY": "country",
    "CITY": "city",
    "POSTAL_CODE": "postal_code",
    "REGION": "region",
    "STREET_ADDRESS": "street_address",
}


def parse_google_lead(
    raw_body: bytes, expected_key_for_form: Callable[[str], str | None]
) -> common.InboundLead:
    """Authenticate (google_key per form_id) and parse one Google Ads lead form webhook."""
    payload = common.require_object(common.loads_exact(raw_body), "body")
    _check_google_key(payload, expected_key_for_form)

    pairs: list[tuple[str, str | None]] = []
    columns = payload.get("user_column_data")
    for index, column in enumerate(common.require_list(columns or [], "user_column_data")):
        column = common.require_object(column, f"user_column_data[{index}]")
        key = _column_key(column)
        if key:
            pairs.append((key, common.text_or_none(column.get("string_value"))))

    return common.InboundLead(
        source="google",
        external_id=common.require_id(payload.get("lead_id"), "lead_id"),
        fields=common.build_fields(pairs),
        form_id=common.id_or_none(payload.get("form_id"), "form_id"),
        campaign_id=common.id_or_none(payload.get("campaign_id"), "campaign_id"),
        ad_id=common.id_or_none(payload.get("creative_id"), "creative_id"),
        adgroup_id=common.id_or_none(payload.get("adgroup_id"), "adgroup_id"),
        is_test=common.bool_or_none(payload.get("is_test"), "is_test") or False,
        created_at=common.datetime_from_iso(payload.get("lead_submit_time"), "lead_submit_time"),
        raw_platform=common.compact(
            {
                "gcl_id": common.text_or_none(payload.get("gcl_id")),
                "api_version": common.text_or_none(payload.get("api_version")),
                "creative_id": common.id_or_none(payload.get("creative_id"), "creative_id"),
                "asset_group_id": common.id_or_none(
                    payload.get("asset_group_id"), "asset_group_id"
                ),
                "lead_stage": common.text_or_none(payload.get("lead_stage")),
            }
        ),
    )


def _check_google_key(
    payload: dict[str, Any], expected_key_for_form: Callable[[str], str | None]
) -> None:
    # One answer for every failure (unknown form, no key, wrong key) so a caller
    # probing the endpoint cannot tell which forms exist.
    refused = common.SourceError(
        "google_key does not match the key configured for this form",
        status=403,
        code="bad_google_key",
        field="google_key",
    )
    try:
        form_id = common.id_or_none(payload.get("form_id"), "form_id")
    except common.SourceError:
        raise refused from None
    given = payload.get("google_key")
    if form_id is None or not isinstance(given, str) or not given:
        raise refused
    expected = expected_key_for_form(form_id)
    if not expected or not common.secrets_equal(given, expected):
        raise refused


def _column_key(column: Mapping[str, Any]) -> str:
    column_id = common.text_or_none(column.get("column_id"))
    if column_id and column_id.upper() in COLUMN_KEYS:
        return COLUMN_KEYS[column_id.upper()]
    # Older payloads carry only column_name ("Full Name"), whose slug is the standard key.
    name = common.text_or_none(column.get("column_name"))
    if name:
        slug = common.slugify(name)
        if slug:
            return slug
    return common.slugify(column_id) if column_id else ""
