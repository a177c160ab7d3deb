"""Request and response examples for capture's OpenAPI document.

The file is over 300 lines because it is data: one documented example per route,
platform body and error answer.
"""

from __future__ import annotations

from typing import Any

#: The `responses=` of a route: documented answers by status.
Responses = dict[int | str, dict[str, Any]]

LEAD_ID = "6f1c2b1e-8a0e-4d57-9a53-1d1c7f3f2a10"
SUBMISSION_ID = "0b7d5d1e-3c39-4b7e-9a55-2b1f3a4c5d6e"


def json_response(description: str, example: Any, headers: dict[str, Any] | None = None) -> dict:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"example": example}},
    }
    if headers:
        response["headers"] = headers
    return response


def error_response(
    description: str,
    code: str,
    message: str,
    field: str | None = None,
    headers: dict[str, Any] | None = None,
) -> dict:
    """A documented refusal: the error shape with an example code, message and field."""
    body: dict[str, Any] = {"code": code, "message": message}
    if field:
        body["field"] = field
    return json_response(description, {"error": body}, headers)


def json_body(examples: dict[str, Any], schema: dict[str, Any] | None = None) -> dict[str, Any]:
    content: dict[str, Any] = {
        "examples": {name: {"value": value} for name, value in examples.items()}
    }
    content["schema"] = schema or {"type": "object"}
    return {"requestBody": {"required": True, "content": {"application/json": content}}}


RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}}

ACCEPTED = {"lead_id": LEAD_ID, "submission_id": SUBMISSION_ID, "status": "accepted"}

FORM_JSON = {
    "work_email": "ada@example.com",
    "name": "Ada Lovelace",
    "title": "Director of Engineering",
    "marketing_consent": "yes",
    "utm_source": "facebook",
    "utm_medium": "cpc",
    "utm_campaign": "spring",
    "fbclid": "IwAR2x",
    "referrer": "https://www.facebook.com/",
    "landing_page": "https://example.com/demo?utm_source=facebook",
    "lf_elapsed_ms": "8400",
}

FORM_RESPONSES: Responses = {
    202: json_response("Stored (JSON and fetch clients)", ACCEPTED),
    303: {"description": "HTML form post: redirect to the thank-you page (or back, on error)"},
    404: error_response("Unknown form", "unknown_form", "no form 'x' is configured", "form_id"),
    415: error_response(
        "Unsupported content type",
        "unsupported_media_type",
        "send application/json, ...",
        "content-type",
    ),
    422: error_response(
        "A field is missing or invalid", "invalid_field", "work_email: is required", "work_email"
    ),
    429: error_response(
        "Rate limited (per IP or per form)",
        "rate_limited",
        "too many submissions; retry after 12 seconds",
        headers=RETRY_AFTER,
    ),
}

FORM_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"type": "object"}, "example": FORM_JSON},
            "application/x-www-form-urlencoded": {
                "schema": {"type": "object"},
                "example": {"work_email": "ada@example.com", "name": "Ada Lovelace"},
            },
            "multipart/form-data": {
                "schema": {"type": "object"},
                "example": {"work_email": "ada@example.com", "name": "Ada Lovelace"},
            },
        },
    }
}

IDEMPOTENCY_KEY_DESCRIPTION = (
    "Retries with the same key are the same submission (≤ 200 characters)."
)
IDEMPOTENCY_KEY_EXAMPLE = "2f1d9c1e-5b3a-4c8e-9f7a-1d2c3b4a5e6f"

# The form route reads its path and header straight from the request (it is the busiest
# route: no dependency solving), so its parameters are documented here.
FORM_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "form_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "title": "Form Id"},
    },
    {
        "name": "idempotency-key",
        "in": "header",
        "required": False,
        "schema": {
            "anyOf": [{"type": "string"}, {"type": "null"}],
            "description": IDEMPOTENCY_KEY_DESCRIPTION,
            "examples": [IDEMPOTENCY_KEY_EXAMPLE],
            "title": "Idempotency-Key",
        },
        "description": IDEMPOTENCY_KEY_DESCRIPTION,
    },
]

LEADS_EXAMPLES: dict[str, Any] = {
    "one lead": {
        "email": "ada@example.com",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "company": "Analytical Engines",
        "promo_code": "SPRING26",
        "external_id": "v-1001",
    },
    "batch": {
        "leads": [
            {"email": "ada@example.com", "external_id": "v-1001"},
            {"phone": "+44 20 7946 0958", "external_id": "v-1002", "promo_code": "RADIO26"},
        ]
    },
}

LEADS_RESPONSES: Responses = {
    202: json_response("Every lead stored (one lead: its result)", ACCEPTED),
    207: json_response(
        "Batch with some leads rejected: a result per item",
        {
            "results": [
                {
                    "index": 0,
                    "status": "accepted",
                    "lead_id": LEAD_ID,
                    "submission_id": SUBMISSION_ID,
                },
                {
                    "index": 1,
                    "status": "rejected",
                    "error": {"code": "invalid_field", "field": "email", "message": "..."},
                },
            ]
        },
    ),
    401: error_response("No API key", "missing_api_key", "send an API key", "authorization"),
    403: error_response("Unknown or revoked key", "invalid_api_key", "...", "authorization"),
    413: error_response("More than 500 leads", "batch_too_large", "at most 500", "leads"),
    415: error_response("Not JSON", "unsupported_media_type", "send JSON", "content-type"),
}

ERASURE_BODY = json_body(
    {"by email": {"email": "ada@example.com"}, "by lead id": {"lead_id": LEAD_ID}}
)
ERASURE_RESPONSES: Responses = {
    202: json_response(
        "Erased here; lead.erased tells the other services",
        {"lead_id": LEAD_ID, "status": "erased"},
    ),
    404: error_response("Nobody matches", "unknown_person", "no lead matches", "email"),
    401: error_response(
        "No API key or admin token", "missing_api_key", "send an API key", "authorization"
    ),
    403: error_response("Unknown or revoked key", "invalid_api_key", "...", "authorization"),
}

WEBHOOK_OK = json_response("Acknowledged", {"received": 1})

META_BODY = json_body(
    {
        "leadgen notification": {
            "object": "page",
            "entry": [
                {
                    "id": "112233445566778",
                    "time": 1733870100,
                    "changes": [
                        {
                            "field": "leadgen",
                            "value": {
                                "leadgen_id": "9007199254740993",
                                "page_id": "112233445566778",
                                "form_id": "1234567890123456789",
                                "ad_id": "120211234567890123",
                                "created_time": 1733870099,
                            },
                        }
                    ],
                }
            ],
        }
    }
)

GOOGLE_BODY = json_body(
    {
        "lead form webhook": {
            "lead_id": "TeSter-123-ABCDEFGHIJKLMNOPQRSTUVWXYZ-abcdefghijklmnopqrstuvwxyz",
            "api_version": "1.0",
            "form_id": 18698608977,
            "campaign_id": 991214827,
            "google_key": "dev-google-key",
            "is_test": True,
            "gcl_id": "TeSter-123-ABCDEFGHIJKLMNOPQRSTUVWXYZ",
            "adgroup_id": 20000000000,
            "creative_id": 30000000000,
            "user_column_data": [
                {
                    "column_name": "Full Name",
                    "string_value": "Ada Lovelace",
                    "column_id": "FULL_NAME",
                },
                {
                    "column_name": "User Email",
                    "string_value": "ada@example.com",
                    "column_id": "EMAIL",
                },
            ],
        }
    }
)

LINKEDIN_BODY = json_body(
    {
        "lead notification": {
            "type": "LEAD_ACTION",
            "leadGenFormResponse": "urn:li:leadGenFormResponse:1a2b3c4d-5e6f-4a5b-9c8d",
            "leadGenForm": "urn:li:versionedLeadGenForm:(urn:li:leadGenForm:5236798,1)",
            "owner": {"sponsoredAccount": "urn:li:sponsoredAccount:522529623"},
            "leadType": "SPONSORED",
            "leadAction": "CREATED",
            "occurredAt": 1686182358881,
        }
    }
)

TIKTOK_BODY = json_body(
    {
        "lead event": {
            "client_key": "bwo2m45353a6k85",
            "event": "lead.create",
            "create_time": 1733870000,
            "content": '{"lead_id": "7301234567890123456", "page_id": "7309876543210987654", '
            '"fields": [{"field_name": "email", "field_value": "jo@example.com"}]}',
        }
    }
)

SIGNED_BODY = json_body(
    {
        "one lead": {
            "external_id": "acme-778",
            "email": "ada@example.com",
            "first_name": "Ada",
            "utm_campaign": "partner-list",
        },
        "batch": {"leads": [{"external_id": "acme-779", "fields": {"email": "bo@example.com"}}]},
    }
)

SIGNATURE_ERRORS: Responses = {
    401: error_response(
        "Signature header missing or malformed",
        "missing_signature",
        "X-Hub-Signature-256 header is missing",
        "X-Hub-Signature-256",
    ),
    403: error_response(
        "Forged signature, stale timestamp or wrong key",
        "bad_signature",
        "signature does not match the body",
        "X-Hub-Signature-256",
    ),
}

QUARANTINE_LIST = json_response(
    "Held-back submissions, newest first",
    {
        "items": [
            {
                "submission_id": SUBMISSION_ID,
                "source": "form",
                "form_id": "demo-request",
                "reason": "honeypot",
                "detail": None,
                "channel": "facebook_ads",
                "email": "bot@example.com",
                "phone": None,
                "fields": {},
                "data": {"work_email": "bot@example.com", "website": "http://spam.example"},
                "received_at": "2026-11-22T10:00:00Z",
            }
        ],
        "next_before": None,
    },
)
RELEASED = json_response(
    "Captured: lead.captured was emitted",
    {"lead_id": LEAD_ID, "submission_id": SUBMISSION_ID, "status": "released"},
)
CONSENTS = json_response(
    "The consent ledger of a lead, oldest first",
    {
        "lead_id": LEAD_ID,
        "consents": [
            {
                "submission_id": SUBMISSION_ID,
                "source": "form",
                "form_id": "demo-request",
                "marketing": True,
                "double_opt_in": False,
                "text": "Send me product news and useful guides. Unsubscribe any time.",
                "version": "2026-11",
                "ip": "203.0.113.7",
                "recorded_at": "2026-11-22T10:00:00Z",
            }
        ],
    },
)
ADMIN_ERRORS: Responses = {
    401: error_response("Wrong or missing admin token", "unauthorized", "...", "authorization"),
    403: error_response(
        "No admin token configured (outside development)",
        "admin_disabled",
        "set LEADFLOW_ADMIN_TOKEN",
        "authorization",
    ),
}
