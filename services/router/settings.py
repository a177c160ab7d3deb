"""The router's configuration: the `routing` section (reps, rules, destinations, SLA).

The module is over 300 lines because the section is one model tree that `load`
validates whole: rules name reps and destinations, the SLA names destinations, and
every mistake is reported with its place in the file.
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from shared.config import (
    CrossCheckedModel,
    Found,
    RawConfig,
    StrictModel,
    TimeZoneName,
    load_checked,
)

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Strategy = Literal["round_robin", "weighted", "capacity"]


class WorkingHours(StrictModel):
    """When a rep takes leads, in the rep's time zone."""

    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(
        default_factory=lambda: ["mon", "tue", "wed", "thu", "fri"]  # type: ignore[arg-type]
    )
    start: time = time(9, 0)
    end: time = time(17, 30)

    @model_validator(mode="after")
    def _start_before_end(self) -> WorkingHours:
        if self.start >= self.end:
            raise ValueError("start must be before end")
        return self


class Absence(StrictModel):
    """Out of office from `start` to `end` (dates are whole days, inclusive)."""

    start: date | datetime = Field(alias="from")
    end: date | datetime = Field(alias="until")


class Rep(StrictModel):
    """A sales rep who can be assigned leads."""

    name: str | None = None
    email: str | None = Field(default=None, description="Where rep notifications by email go.")
    active: bool = True
    weight: int = Field(default=1, ge=1, description="Share of leads under the weighted strategy.")
    max_open_per_day: int | None = Field(
        default=None, ge=1, description="At most this many leads a day (capacity)."
    )
    timezone: TimeZoneName = "UTC"
    working_hours: WorkingHours | None = Field(
        default=None, description="None: the rep takes leads at any time."
    )
    out_of_office: list[Absence] = Field(default_factory=list)
    owner_ids: dict[str, str] = Field(
        default_factory=dict,
        description="destination name → the rep's user id there (HubSpot owner, Salesforce "
        "OwnerId, Pipedrive user id, Slack member id).",
    )


class Range(StrictModel):
    """A numeric range; either bound may be left out."""

    min: float | None = None
    max: float | None = None


class Match(StrictModel):
    """Conditions a lead must meet (all given ones); lists mean "any of"."""

    country: list[str] | None = None
    territory: list[str] | None = Field(default=None, description="Names from `territories`.")
    channel: list[str] | None = None
    form: list[str] | None = Field(default=None, description="Form ids.")
    form_type: list[str] | None = None
    company_size: Range | None = Field(
        default=None, description="Read from the lead's `company_size` field."
    )
    product_interest: list[str] | None = Field(
        default=None, description="Any of these in the lead's `product_interest` field."
    )
    grade: list[Literal["hot", "warm", "cold"]] | None = None
    min_score: float | None = None
    fields: dict[str, str | list[str]] = Field(
        default_factory=dict, description="Other lead fields: name → value or values."
    )

    @field_validator("country", mode="after")
    @classmethod
    def _upper(cls, value: list[str] | None) -> list[str] | None:
        return [c.upper() for c in value] if value else value


class Rule(StrictModel):
    """First matching rule wins: it names the pool of reps, the strategy and destinations."""

    id: str = Field(min_length=1, max_length=100)
    match: Match = Field(default_factory=Match)
    reps: list[str] = Field(min_length=1)
    strategy: Strategy = "round_robin"
    destinations: list[str] = Field(default_factory=list)
    sla_minutes: float | None = Field(
        default=None, gt=0, description="Overrides `sla.minutes` for this rule."
    )


class Fallback(StrictModel):
    """Where a lead goes when no rule matches or no rep of the pool can take it."""

    rep: str | None = None
    queue: str = "unassigned"
    destinations: list[str] = Field(default_factory=list)


class Sla(StrictModel):
    """Speed-to-lead: reps acknowledge within `minutes` or the lead moves on."""

    minutes: float = Field(default=15, gt=0)
    check_seconds: float = Field(default=30, gt=0, description="How often breaches are looked for.")
    max_reassignments: int = Field(
        default=2, ge=0, description="Then the lead stays with its last rep, escalated."
    )
    escalate_to: list[str] = Field(
        default_factory=list, description="Destinations notified of every breach (Slack, email)."
    )


class Delivery(StrictModel):
    """Retries of the delivery queue."""

    max_attempts: int = Field(
        default=10, ge=1, description="Failed attempts (429s excluded) before giving up."
    )
    max_age_minutes: float = Field(
        default=24 * 60, gt=0, description="Give up on a delivery older than this."
    )
    backoff_seconds: float = Field(default=1.0, gt=0, description="First retry delay.")
    backoff_max_seconds: float = Field(default=300, gt=0)
    poll_seconds: float = Field(
        default=1.0, gt=0, description="Fallback poll; new work wakes the worker at once."
    )
    timeout_seconds: float = Field(default=10, gt=0, description="Per request.")
    batch_size: int = Field(default=50, ge=1)


class RateLimit(StrictModel):
    """At most `requests` per `per_seconds` to one destination (shared by all replicas)."""

    requests: int = Field(ge=1)
    per_seconds: float = Field(gt=0)


class _Destination(StrictModel):
    enabled: bool = True
    on_reassign: bool = Field(
        default=True, description="Deliver again when an SLA breach moves the lead to a new rep."
    )
    rate_limit: RateLimit | None = None
    mapping: dict[str, Any] | None = Field(
        default=None,
        description="Field → Jinja2 template ({{ lead.email }}, {{ rep.name }}, ...); "
        "None: the destination's default mapping.",
    )


class FileDestination(_Destination):
    """One JSON line per routed lead, appended to `path` (fsync'd)."""

    type: Literal["file"]
    path: str = Field(min_length=1)


class WebhookDestination(_Destination):
    """An HMAC-signed JSON POST (Leadflow-Signature: t=<unix>,v1=<hex>); empty url: disabled."""

    type: Literal["webhook"]
    url: str = ""
    secret: str = ""
    headers: dict[str, str] = Field(default_factory=dict)


class HubSpotDestination(_Destination):
    """HubSpot contacts batch upsert keyed on email."""

    type: Literal["hubspot"]
    base_url: str = "https://api.hubapi.com"
    token: str = Field(default="", description="Private app access token.")
    batch_size: int = Field(default=100, ge=1, le=100)
    rate_limit: RateLimit | None = RateLimit(requests=190, per_seconds=10)


class SalesforceDestination(_Destination):
    """Salesforce Lead create; a duplicate-rule match updates the matched record instead."""

    type: Literal["salesforce"]
    instance_url: str = Field(min_length=1)
    token: str = Field(default="", description="OAuth access token.")
    api_version: str = "v60.0"
    on_duplicate: Literal["update", "skip", "fail"] = "update"


class PipedriveDestination(_Destination):
    """Pipedrive person (found by email, else created) plus a lead in the Leads Inbox."""

    type: Literal["pipedrive"]
    base_url: str = "https://api.pipedrive.com"
    token: str = Field(default="", description="API token (sent as x-api-token).")


class SlackDestination(_Destination):
    """A Slack incoming webhook: tells the rep (and the channel) about the lead."""

    type: Literal["slack"]
    webhook_url: str = ""


class EmailDestination(_Destination):
    """An email to the assigned rep over SMTP."""

    type: Literal["email"]
    host: str = "127.0.0.1"
    port: int = 1025
    username: str = ""
    password: str = ""
    starttls: bool = False
    sender: str = Field(default="leadflow <leads@localhost>", alias="from")
    to: list[str] = Field(
        default_factory=list, description="Fixed recipients (escalations); default: the rep."
    )


DestinationConfig = Annotated[
    FileDestination
    | WebhookDestination
    | HubSpotDestination
    | SalesforceDestination
    | PipedriveDestination
    | SlackDestination
    | EmailDestination,
    Field(discriminator="type"),
]


class Outcomes(StrictModel):
    """The closed loop from the CRM."""

    hubspot_client_secret: str = Field(
        default="", description="Verifies X-HubSpot-Signature-v3 on the deal-stage webhook."
    )
    hubspot_destination: str | None = Field(
        default=None, description="The HubSpot destination whose API resolves deals to leads."
    )
    won_stages: list[str] = Field(default_factory=lambda: ["closedwon"])
    lost_stages: list[str] = Field(default_factory=lambda: ["closedlost"])


class RoutingConfig(CrossCheckedModel):
    """The `routing` section."""

    public_url: str = Field(
        default="", description="Base of acknowledgement links (default: LEADFLOW_PUBLIC_URL)."
    )
    route_test_leads: bool = False
    reps: dict[str, Rep] = Field(default_factory=dict)
    territories: dict[str, list[str]] = Field(default_factory=dict)
    rules: list[Rule] = Field(default_factory=list)
    fallback: Fallback = Field(default_factory=Fallback)
    destinations: dict[str, DestinationConfig] = Field(default_factory=dict)
    sla: Sla = Field(default_factory=Sla)
    delivery: Delivery = Field(default_factory=Delivery)
    outcomes: Outcomes = Field(default_factory=Outcomes)

    def problems(self) -> Found:
        """Names used but not defined (reps, destinations, territories)."""
        return reference_problems(self)

    def destination_enabled(self, name: str) -> bool:
        """Configured, switched on, and (for URL destinations) given a URL."""
        destination = self.destinations.get(name)
        if destination is None or not destination.enabled:
            return False
        if isinstance(destination, WebhookDestination):
            return bool(destination.url.strip())
        if isinstance(destination, SlackDestination):
            return bool(destination.webhook_url.strip())
        return True


def reference_problems(config: RoutingConfig) -> list[tuple[tuple[str | int, ...], str]]:
    """Names used but not defined: reps, destinations, territories (path, message)."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    for i, rule in enumerate(config.rules):
        for j, rep in enumerate(rule.reps):
            if rep not in config.reps:
                problems.append((("rules", i, "reps", j), f"unknown rep {rep!r}"))
        for j, name in enumerate(rule.destinations):
            if name not in config.destinations:
                problems.append((("rules", i, "destinations", j), f"unknown destination {name!r}"))
        for j, territory in enumerate(rule.match.territory or []):
            if territory not in config.territories:
                problems.append(
                    (("rules", i, "match", "territory", j), f"unknown territory {territory!r}")
                )
    if config.fallback.rep and config.fallback.rep not in config.reps:
        problems.append((("fallback", "rep"), f"unknown rep {config.fallback.rep!r}"))
    for j, name in enumerate(config.fallback.destinations):
        if name not in config.destinations:
            problems.append((("fallback", "destinations", j), f"unknown destination {name!r}"))
    for j, name in enumerate(config.sla.escalate_to):
        if name not in config.destinations:
            problems.append((("sla", "escalate_to", j), f"unknown destination {name!r}"))
    hubspot = config.outcomes.hubspot_destination
    if hubspot and not isinstance(config.destinations.get(hubspot), HubSpotDestination):
        problems.append(
            (("outcomes", "hubspot_destination"), f"{hubspot!r} is not a hubspot destination")
        )
    seen: set[str] = set()
    for i, rule in enumerate(config.rules):
        if rule.id in seen:
            problems.append((("rules", i, "id"), f"duplicate rule id {rule.id!r}"))
        seen.add(rule.id)
    return problems


def load(raw: RawConfig) -> RoutingConfig:
    """Validate the router's section of the config file; every mistake names its line."""
    return load_checked(raw, "routing", RoutingConfig)
