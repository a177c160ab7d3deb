"""LinkedIn Lead Sync: webhook validation, X-LI-Signature, lead notifications and retrieval.

A lead notification names a ``leadGenFormResponse`` URN; the answers are read from
the ``leadFormResponses`` API with a token holding ``r_marketing_leadgen_automation``.

Documentation followed:
- https://learn.microsoft.com/en-us/linkedin/shared/api-guide/webhook-validation
- https://learn.microsoft.com/en-us/linkedin/marketing/lead-sync/leadsync
- https://learn.microsoft.com/en-us/linkedin/marketing/lead-sync/lead-sync-schema
- https://learn.microsoft.com/en-us/linkedin/marketing/versioning

Validation and signatures (documented):
- GET ``?challengeCode=<uuid>`` must be answered within 3 s with JSON
  ``{"challengeCode": ..., "challengeResponse": hex(HMAC-SHA256(clientSecret, challengeCode))}``.
  Parent-child applications also receive ``applicationId``; pick that application's
  secret before calling :func:`challenge_response`.
- Each POST carries ``X-LI-Signature``: hex(HMAC-SHA256(clientSecret, "hmacsha256=" + raw body)).

Assumptions where the documentation is thin:
- A lead notification is one JSON object per POST (``type == "LEAD_ACTION"``); a JSON
  array of such objects is accepted too. Other notification types are ignored.
- ``leadAction == "DELETED"`` notifications are returned (``is_deletion``) so the
  caller can start an erasure instead of a retrieval.
- The single-response GET accepts the same field projection the documented finder
  uses, so question definitions arrive with ``form:(...)``; when they do not, the form
  is read once from ``/leadForms/{id}`` to name the answers.
- Answers without a predefined field are keyed by a slug of the question's ``name``
  (else its localized text, else ``question_<questionId>``); multiple-choice answers are
  the option labels joined with ", ".

The file is over 300 lines because the webhook side (validation, signature,
notifications) and the retrieval side (form responses, questions, API errors) read
the same LinkedIn shapes and are kept together.
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
    require_header,
    require_match,
    require_secret,
)

SIGNATURE_HEADER = "X-LI-Signature"
DEFAULT_API_URL = "https://api.linkedin.com/rest"
DEFAULT_API_VERSION = "202601"
RESPONSE_PROJECTION = (
    "id,owner,leadType,versionedLeadGenFormUrn,submittedAt,testLead,formResponse,"
    "leadMetadata,associatedEntity,form:(hiddenFields,creationLocale,name,id,content)"
)

# predefinedField values with a standard key; other predefined fields use their lower-cased name.
PREDEFINED_KEYS: Mapping[str, str] = {
    "FIRST_NAME": "first_name",
    "LAST_NAME": "last_name",
    "EMAIL": "email",
    "PHONE_NUMBER": "phone",
    "WORK_EMAIL": "work_email",
    "WORK_PHONE_NUMBER": "work_phone",
    "COMPANY_NAME": "company",
    "JOB_TITLE": "job_title",
    "COUNTRY": "country",
    "CITY": "city",
    "ZIP_CODE": "postal_code",
    "POSTAL_CODE": "postal_code",
    "STATE": "state",
}

_RESPONSE_URN = "urn:li:leadGenFormResponse:"
_FORM_URN = re.compile(r"urn:li:leadGenForm:(\d+)(?:\s*,\s*(\d+))?")
_URN_ID = re.compile(r"^urn:li:[A-Za-z]+:(\d+)$")
_RESPONSE_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")


@dataclass(frozen=True)
class LinkedInLeadNotification:
    """One LEAD_ACTION notification: which form response to fetch (or forget)."""

    response_id: str
    response_urn: str
    action: str  # "CREATED" or "DELETED"
    form_id: str | None = None
    form_version: str | None = None
    lead_type: str | None = None
    owner_urn: str | None = None
    occurred_at: datetime | None = None

    @property
    def is_deletion(self) -> bool:
        """True when LinkedIn reports the member deleted the lead."""
        return self.action == "DELETED"


def challenge_response(params: Mapping[str, str], client_secret: str) -> dict[str, str]:
    """The JSON body answering a webhook validation GET (?challengeCode=...)."""
    if not client_secret:
        raise common.SourceError(
            "LinkedIn client secret is not configured", status=403, code="not_configured"
        )
    code = params.get("challengeCode", "")
    if not code or len(code) > 256:
        raise common.SourceError(
            "challengeCode is missing or malformed", code="bad_challenge", field="challengeCode"
        )
    digest = hmac.new(client_secret.encode(), code.encode(), hashlib.sha256).hexdigest()
    return {"challengeCode": code, "challengeResponse": digest}


def expected_signature(raw_body: bytes, client_secret: str) -> str:
    """The X-LI-Signature value LinkedIn computes for ``raw_body`` (useful in tests)."""
    return hmac.new(client_secret.encode(), b"hmacsha256=" + raw_body, hashlib.sha256).hexdigest()


def verify_signature(raw_body: bytes, header: str | None, client_secret: str) -> None:
    """Verify X-LI-Signature over the exact raw bytes; 401 when absent, 403 when wrong."""
    require_secret(client_secret, "LinkedIn client secret is not configured")
    header = require_header(header, SIGNATURE_HEADER)
    given = header.strip().lower()
    # Tolerate the string-to-sign prefix if a proxy or SDK echoes it in the header.
    given = given.removeprefix("hmacsha256=")
    require_match(given, expected_signature(raw_body, client_secret), SIGNATURE_HEADER)


def parse_notifications(raw_body: bytes) -> list[LinkedInLeadNotification]:
    """Parse a lead notification body (one object or an array) into notifications."""
    payload = common.loads_exact(raw_body)
    items = payload if isinstance(payload, list) else [common.require_object(payload, "body")]
    notifications: list[LinkedInLeadNotification] = []
    for index, item in enumerate(items):
        path = "body" if not isinstance(payload, list) else f"[{index}]"
        item = common.require_object(item, path)
        if item.get("type") != "LEAD_ACTION":
            continue
        prefix = "" if path == "body" else f"{path}."
        urn = common.text_or_none(item.get("leadGenFormResponse"))
        response_id = response_id_from_urn(urn or "", f"{prefix}leadGenFormResponse")
        form_id, form_version = _form_ids(common.text_or_none(item.get("leadGenForm")))
        action = common.text_or_none(item.get("leadAction")) or "CREATED"
        notifications.append(
            LinkedInLeadNotification(
                response_id=response_id,
                response_urn=urn or "",
                action=action.upper(),
                form_id=form_id,
                form_version=form_version,
                lead_type=common.text_or_none(item.get("leadType")),
                owner_urn=_first_urn(item.get("owner")),
                occurred_at=common.datetime_from_epoch(
                    item.get("occurredAt"), f"{prefix}occurredAt", millis=True
                ),
            )
        )
    return notifications


def response_id_from_urn(urn: str, path: str = "leadGenFormResponse") -> str:
    """The form response id inside ``urn:li:leadGenFormResponse:<id>``."""
    if not urn.startswith(_RESPONSE_URN) or not _RESPONSE_ID.fullmatch(urn[len(_RESPONSE_URN) :]):
        raise common.SourceError(
            f"{path} must be a urn:li:leadGenFormResponse URN", code="invalid_urn", field=path
        )
    return urn[len(_RESPONSE_URN) :]


def lead_from_form_response(
    payload: Mapping[str, Any], form: Mapping[str, Any] | None = None
) -> common.InboundLead:
    """Map a leadFormResponses element (plus its form's questions) to an InboundLead."""
    form = form if form is not None else _mapping(payload.get("form"))
    questions = {
        str(q.get("questionId")): q
        for q in _list(_mapping(form.get("content")).get("questions"))
        if isinstance(q, dict) and q.get("questionId") is not None
    }
    form_response = common.require_object(payload.get("formResponse") or {}, "formResponse")
    pairs: list[tuple[str, str | None]] = []
    for index, answer in enumerate(
        common.require_list(form_response.get("answers") or [], "answers")
    ):
        answer = common.require_object(answer, f"formResponse.answers[{index}]")
        question_id = str(answer.get("questionId"))
        question = questions.get(question_id, {})
        pairs.append((_question_key(question, question_id), _answer_text(answer, question)))

    raw: dict[str, str | None] = {
        "lead_type": common.text_or_none(payload.get("leadType")),
        "owner": _first_urn(payload.get("owner")),
        "associated_entity": _first_urn(payload.get("associatedEntity")),
    }
    for hidden in _list(form.get("hiddenFields")):
        if isinstance(hidden, dict) and common.text_or_none(hidden.get("name")):
            raw[f"hidden_{common.slugify(str(hidden['name']))}"] = common.text_or_none(
                hidden.get("value")
            )
    for consent in _list(form_response.get("consentResponses")):
        if isinstance(consent, dict) and consent.get("consentId") is not None:
            accepted = consent.get("accepted")
            raw[f"consent_{consent['consentId']}"] = "true" if accepted is True else "false"

    form_id, form_version = _form_ids(common.text_or_none(payload.get("versionedLeadGenFormUrn")))
    raw["form_version"] = form_version
    campaign_urn = common.text_or_none(
        _mapping(_mapping(payload.get("leadMetadata")).get("sponsoredLeadMetadata")).get("campaign")
    )
    creative_urn = common.text_or_none(
        _mapping(payload.get("associatedEntity")).get("associatedCreative")
    )
    return common.InboundLead(
        source="linkedin",
        external_id=common.id_or_none(payload.get("id"), "id"),
        fields=common.build_fields(pairs),
        form_id=form_id,
        campaign_id=_urn_id(campaign_urn),
        ad_id=_urn_id(creative_urn),
        is_test=common.bool_or_none(payload.get("testLead"), "testLead") or False,
        created_at=common.datetime_from_epoch(
            payload.get("submittedAt"), "submittedAt", millis=True
        ),
        raw_platform=common.compact(raw),
    )


class LeadSyncClient(PlatformApiClient):
    """Reads lead form responses from the LinkedIn Marketing API (versioned /rest endpoints)."""

    name = "LinkedIn API"
    default_url = DEFAULT_API_URL

    def __init__(
        self,
        access_token: str,
        *,
        api_version: str = DEFAULT_API_VERSION,
        **options: Unpack[ClientOptions],
    ) -> None:
        headers = {
            "Authorization": f"Bearer {access_token}",
            "LinkedIn-Version": api_version,
            "X-Restli-Protocol-Version": "2.0.0",
            "Accept": "application/json",
        }
        super().__init__(headers, **options)

    async def fetch_form_response(self, response_id: str) -> common.InboundLead:
        """GET /leadFormResponses/{id} (with question definitions) and map it to an InboundLead."""
        if not _RESPONSE_ID.fullmatch(response_id):
            raise common.RetrievalError(
                "response id is not a LinkedIn form response id", retryable=False, code="invalid_id"
            )
        payload = await self._get_json(
            f"leadFormResponses/{quote(response_id, safe='')}", {"fields": RESPONSE_PROJECTION}
        )
        form = _mapping(payload.get("form"))
        if not _list(_mapping(form.get("content")).get("questions")):
            form_id, _ = _form_ids(common.text_or_none(payload.get("versionedLeadGenFormUrn")))
            if form_id is not None:
                form = await self._get_json(f"leadForms/{form_id}", None)
        try:
            return lead_from_form_response(payload, form)
        except common.SourceError as exc:
            raise unexpected_response("LinkedIn response", exc) from exc

    async def _get_json(self, path: str, params: dict[str, str] | None) -> dict[str, Any]:
        response = await self._get(path, params=params)
        if response.status_code != 200:
            raise _linkedin_error(response)
        try:
            return common.require_object(
                common.loads_exact(response.content, what="LinkedIn response"), "body"
            )
        except common.SourceError as exc:
            raise unexpected_response("LinkedIn response", exc) from exc


def _linkedin_error(response: httpx.Response) -> common.RetrievalError:
    body = error_body(response, "LinkedIn error")
    service_code = common.text_or_none(body.get("serviceErrorCode")) or common.text_or_none(
        body.get("code")
    )
    detail = f" (serviceErrorCode {service_code})" if service_code else ""
    return refused(response, f"LinkedIn API answered {response.status_code}{detail}")


def _question_key(question: Mapping[str, Any], question_id: str) -> str:
    predefined = common.text_or_none(question.get("predefinedField"))
    if predefined:
        return PREDEFINED_KEYS.get(predefined.upper(), common.slugify(predefined))
    for label in (common.text_or_none(question.get("name")), _localized(question.get("question"))):
        if label and common.slugify(label):
            return common.slugify(label)
    return f"question_{common.slugify(question_id) or 'unknown'}"


def _answer_text(answer: Mapping[str, Any], question: Mapping[str, Any]) -> str | None:
    details = _mapping(answer.get("answerDetails"))
    text = _mapping(details.get("textQuestionAnswer"))
    if "answer" in text:
        return common.text_or_none(text.get("answer"))
    choice = _mapping(details.get("multipleChoiceAnswer"))
    if "options" in choice:
        option_details = _mapping(
            _mapping(question.get("questionDetails")).get("multipleChoiceQuestionDetails")
        )
        labels = {
            str(option.get("id")): _localized(option.get("text")) or str(option.get("id"))
            for option in _list(option_details.get("options"))
            if isinstance(option, dict)
        }
        chosen = [labels.get(str(option), str(option)) for option in _list(choice.get("options"))]
        return ", ".join(label for label in chosen if label) or None
    return None


def _localized(value: Any) -> str | None:
    if isinstance(value, str):
        return value.strip() or None
    localized = _mapping(_mapping(value).get("localized"))
    for text in localized.values():
        if isinstance(text, str) and text.strip():
            return text.strip()
    return None


def _form_ids(urn: str | None) -> tuple[str | None, str | None]:
    match = _FORM_URN.search(urn or "")
    if not match:
        return None, None
    return match.group(1), match.group(2)


def _urn_id(urn: str | None) -> str | None:
    match = _URN_ID.match(urn or "")
    return match.group(1) if match else None


def _first_urn(value: Any) -> str | None:
    if isinstance(value, str):
        return value.strip() or None
    for item in _mapping(value).values():
        if isinstance(item, str) and item.startswith("urn:li:"):
            return item
    return None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
