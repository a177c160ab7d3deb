"""The event contracts: frozen, versioned, past-tense models.

A consumer ignores fields it does not know; a breaking change is a new type
version (`.v2`) and a new model. `docs/events/` holds the exported JSON Schema
and AsyncAPI document; tests fail when a contract changes without a bump.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

import shared.events.topics as topics

Grade = Literal["hot", "warm", "cold"]
FieldValue = str | int | float | bool | None


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Event(_Frozen):
    """Base of every event body; `TYPE` is the CloudEvents type, `TOPIC` where it goes."""

    TYPE: ClassVar[str]
    TOPIC: ClassVar[str]

    lead_id: str = Field(
        description="The lead this event is about (the Kafka key).",
        examples=["6f1c2b1e-8a0e-4d57-9a53-1d1c7f3f2a10"],
    )


class Attribution(_Frozen):
    """Where one touch came from."""

    channel: str = Field(description="Resolved channel name.", examples=["facebook_ads"])
    source: str = Field(
        description="Intake door: form, api, meta, google, linkedin, tiktok, webhook.",
        examples=["form"],
    )
    utm_source: str | None = Field(default=None, examples=["facebook"])
    utm_medium: str | None = Field(default=None, examples=["cpc"])
    utm_campaign: str | None = Field(default=None, examples=["spring-launch"])
    utm_term: str | None = Field(default=None, examples=[None])
    utm_content: str | None = Field(default=None, examples=[None])
    gclid: str | None = Field(default=None, description="Google click id.", examples=[None])
    fbclid: str | None = Field(default=None, description="Meta click id.", examples=[None])
    msclkid: str | None = Field(default=None, description="Microsoft click id.", examples=[None])
    ttclid: str | None = Field(default=None, description="TikTok click id.", examples=[None])
    li_fat_id: str | None = Field(default=None, description="LinkedIn click id.", examples=[None])
    promo_code: str | None = Field(default=None, examples=["SPRING26"])
    referrer: str | None = Field(default=None, examples=["https://www.google.com/"])
    landing_page: str | None = Field(default=None, examples=["https://example.com/demo"])
    campaign_id: str | None = Field(
        default=None,
        description="Ad platform campaign id, as a string (platform ids exceed 2^53).",
        examples=[None],
    )
    ad_id: str | None = Field(
        default=None, description="Ad platform ad id, as a string.", examples=[None]
    )


class Contact(_Frozen):
    """The person, normalized: email lower-cased, phone in E.164."""

    email: str | None = Field(default=None, examples=["ada@example.com"])
    phone: str | None = Field(default=None, description="E.164.", examples=["+14155550123"])
    first_name: str | None = Field(default=None, examples=["Ada"])
    last_name: str | None = Field(default=None, examples=["Lovelace"])
    company: str | None = Field(default=None, examples=["Analytical Engines Ltd"])
    job_title: str | None = Field(default=None, examples=["Director of Engineering"])
    country: str | None = Field(default=None, description="ISO 3166-1 alpha-2.", examples=["GB"])


class LeadCaptured(Event):
    """A submission was accepted: a new lead, or a new touch of a known one."""

    TYPE: ClassVar[str] = "leadflow.lead.captured.v1"
    TOPIC: ClassVar[str] = topics.LEADS_CAPTURED

    submission_id: str = Field(
        description="This submission's id.", examples=["0b7d5d1e-3c39-4b7e-9a55-2b1f3a4c5d6e"]
    )
    is_new_lead: bool = Field(
        description="False when the person was already known (a repeat touch).", examples=[True]
    )
    touch_number: int = Field(
        ge=1, description="1 for the first submission of this person.", examples=[1]
    )
    source: str = Field(
        description="Intake door: form, api, meta, google, linkedin, tiktok, webhook.",
        examples=["form"],
    )
    form_id: str | None = Field(default=None, examples=["demo-request"])
    form_type: str | None = Field(
        default=None,
        description="The form's purpose, e.g. demo_request, newsletter, contact_me.",
        examples=["demo_request"],
    )
    channel: str = Field(description="This touch's channel.", examples=["facebook_ads"])
    attribution: Attribution = Field(description="This touch's attribution (last touch).")
    first_touch: Attribution = Field(description="The person's first touch.")
    contact: Contact
    fields: dict[str, FieldValue] = Field(
        default_factory=dict,
        description="Other submitted fields, mapped by the form config.",
        examples=[{"company_size": 120}],
    )
    marketing_consent: bool = Field(
        description="Marketing consent given with this submission.", examples=[True]
    )
    double_opt_in: bool = Field(
        default=False,
        description="Consent counts only after the confirmation email is clicked.",
        examples=[False],
    )
    is_test: bool = Field(
        default=False,
        description="A platform test lead: counted, never routed by default.",
        examples=[False],
    )
    cost: Decimal | None = Field(
        default=None,
        description="Price paid for this lead (lead vendors), in the report currency.",
        examples=["12.50"],
    )
    captured_at: datetime = Field(
        description="When capture committed the submission (UTC); "
        "the speed-to-lead clock starts here."
    )


class LeadEngaged(Event):
    """The lead engaged: opened, clicked, replied, confirmed consent."""

    TYPE: ClassVar[str] = "leadflow.lead.engaged.v1"
    TOPIC: ClassVar[str] = topics.LEADS_ENGAGEMENT

    kind: Literal["open", "click", "reply", "repeat_visit", "confirm"] = Field(examples=["click"])
    sequence_id: str | None = Field(default=None, examples=["welcome"])
    step: int | None = Field(default=None, examples=[1])
    link_id: str | None = Field(
        default=None, description="Which tracked link was clicked.", examples=["case-study"]
    )
    occurred_at: datetime


class LeadUnsubscribed(Event):
    """The lead asked for no more marketing email."""

    TYPE: ClassVar[str] = "leadflow.lead.unsubscribed.v1"
    TOPIC: ClassVar[str] = topics.LEADS_ENGAGEMENT

    method: Literal["one_click", "page", "reply", "complaint", "bounce"] = Field(
        examples=["one_click"]
    )
    occurred_at: datetime


class ScoreReason(_Frozen):
    """One rule that fired and what it added."""

    rule_id: str = Field(examples=["title_director"])
    kind: Literal["fit", "engagement"] = Field(examples=["fit"])
    points: float = Field(examples=[15])
    detail: str | None = Field(default=None, examples=["job_title contains 'director'"])


class LeadScored(Event):
    """A lead was (re)scored. Carries the lead snapshot routing and nurture need."""

    TYPE: ClassVar[str] = "leadflow.lead.scored.v1"
    TOPIC: ClassVar[str] = topics.LEADS_SCORED

    score: float = Field(description="fit + engagement.", examples=[72])
    fit: float = Field(examples=[35])
    engagement: float = Field(examples=[37])
    grade: Grade = Field(examples=["hot"])
    previous_grade: Grade | None = Field(default=None, examples=["warm"])
    sales_ready: bool = Field(examples=[True])
    became_sales_ready: bool = Field(
        description="True exactly once per qualification: the event that crossed into sales-ready.",
        examples=[True],
    )
    disqualified: bool = Field(
        default=False, description="A disqualifying rule fired.", examples=[False]
    )
    model_version: str = Field(description="Hash of the scoring config.", examples=["3f2a9c1b7d4e"])
    reasons: list[ScoreReason] = Field(default_factory=list)
    cause_event_id: str = Field(description="The event that caused this score.")
    cause_type: str = Field(examples=["leadflow.lead.captured.v1"])
    channel: str = Field(examples=["facebook_ads"])
    form_id: str | None = None
    form_type: str | None = None
    contact: Contact
    fields: dict[str, FieldValue] = Field(default_factory=dict)
    marketing_consent: bool = False
    double_opt_in: bool = False
    is_test: bool = False
    captured_at: datetime = Field(description="First capture of the lead (speed-to-lead clock).")
    scored_at: datetime


class LeadRouted(Event):
    """A sales-ready lead was assigned to a rep and queued for its destinations."""

    TYPE: ClassVar[str] = "leadflow.lead.routed.v1"
    TOPIC: ClassVar[str] = topics.LEADS_ROUTED

    assignment_id: str
    rep_id: str = Field(examples=["rep-alice"])
    rule_id: str = Field(examples=["emea-enterprise"])
    destinations: list[str] = Field(default_factory=list, examples=[["hubspot", "slack"]])
    channel: str
    reassigned: bool = Field(default=False, description="A reassignment after an SLA breach.")
    captured_at: datetime
    routed_at: datetime


class LeadDeliveryFailed(Event):
    """A destination could not take the lead after all retries."""

    TYPE: ClassVar[str] = "leadflow.lead.delivery_failed.v1"
    TOPIC: ClassVar[str] = topics.LEADS_ROUTED

    assignment_id: str | None = None
    destination: str = Field(examples=["hubspot"])
    error: str = Field(examples=["HTTP 400: Property values were not valid"])
    attempts: int = Field(examples=[5])
    failed_at: datetime


class LeadConverted(Event):
    """The CRM reports the lead became a customer."""

    TYPE: ClassVar[str] = "leadflow.lead.converted.v1"
    TOPIC: ClassVar[str] = topics.LEADS_OUTCOMES

    value: Decimal = Field(default=Decimal("0"), examples=["4800.00"])
    currency: str = Field(default="USD", examples=["USD"])
    outcome_id: str = Field(description="Idempotency key of the outcome (deal id, ...).")
    occurred_at: datetime


class LeadDisqualified(Event):
    """The CRM reports the lead will not buy."""

    TYPE: ClassVar[str] = "leadflow.lead.disqualified.v1"
    TOPIC: ClassVar[str] = topics.LEADS_OUTCOMES

    reason: str | None = Field(default=None, examples=["no budget"])
    outcome_id: str
    occurred_at: datetime


class LeadErased(Event):
    """The person asked to be forgotten: every service removes their PII."""

    TYPE: ClassVar[str] = "leadflow.lead.erased.v1"
    TOPIC: ClassVar[str] = topics.LEADS_ERASURE

    erased_at: datetime


EVENT_TYPES: dict[str, type[Event]] = {
    model.TYPE: model
    for model in (
        LeadCaptured,
        LeadEngaged,
        LeadUnsubscribed,
        LeadScored,
        LeadRouted,
        LeadDeliveryFailed,
        LeadConverted,
        LeadDisqualified,
        LeadErased,
    )
}
