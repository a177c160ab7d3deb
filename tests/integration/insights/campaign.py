"""A simulated campaign with known spend and outcomes, and the report it must produce.

November 2024, report window 2024-11-01 … 2024-11-10 (10 days):

- google_ads: monthly_spend 3000.00 → 100.00 a day → 1000.00. Four leads: g1 hot,
  routed after 30 s, won 4800.00 (and 250.005 EUR, kept apart); g2 hot, routed after
  90 s (and a repeat touch through facebook_ads); g3 warm (and a repeat touch through
  google_ads); g4 cold, captured at 23:59:59.999 on the last day (its repeat touch a
  minute later is outside the window).
  g0 was captured a second before the window.
- facebook_ads: monthly_spend 1550.00 (51.666… a day), a configured day (11-02: 80.00,
  10 000 impressions, 250 clicks) and a posted day (11-03: 20.25, 5 000 impressions,
  100 clicks, posted over an earlier 999.99) → 8 * 1550/30 + 80 + 20.25 = 513.58.
  f1 hot, routed after 45 s, won twice (1200.50 + 99.99); f2 scored warm then cold
  (the cold score is published first: the newer score must win); f3 warm, engaged,
  unsubscribed.
- radio: one configured day (11-05: 800.00). r1 cold; a test lead that never counts.
- vendor_x (no config): v1, v2 bought at 12.50 each → 25.00. v1 warm, routed after
  600 s, disqualified by the CRM, one failed delivery; v2 cold, then erased.
- An engagement of a lead no capture ever named (no channel): never counted.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from shared.events import (
    Attribution,
    Contact,
    Envelope,
    Event,
    LeadCaptured,
    LeadConverted,
    LeadDeliveryFailed,
    LeadDisqualified,
    LeadEngaged,
    LeadErased,
    LeadRouted,
    LeadScored,
    LeadUnsubscribed,
)

SINCE, UNTIL = "2024-11-01", "2024-11-10"

CONFIG_YAML = """\
channels:
  currency: USD
  default: direct
  channels:
    google_ads:
      label: Google Ads
      monthly_spend: 3000.00
    facebook_ads:
      label: Facebook Ads
      monthly_spend: 1550.00
      spend:
        - {date: 2024-11-02, amount: 80.00, impressions: 10000, clicks: 250}
    radio:
      spend:
        - {date: 2024-11-05, amount: 800.00}
        - {date: 2024-12-01, amount: 5000.00}
"""

POSTED_SPEND = [
    ("facebook_ads", {"date": "2024-11-03", "amount": "999.99"}),
    ("facebook_ads", {"date": "2024-11-03", "amount": 20.25, "impressions": 5000, "clicks": 100}),
    ("google_ads", {"date": "2024-11-11", "amount": "12345.00"}),  # outside the window
]


def at(day: int, hour: int = 9, minute: int = 0, second: int = 0, ms: int = 0) -> datetime:
    return datetime(2024, 11, day, hour, minute, second, ms * 1000, tzinfo=UTC)


@dataclass
class Campaign:
    """Builds the campaign's events as CloudEvents envelopes."""

    run: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    envelopes: list[Envelope[Event]] = field(default_factory=list)
    captured_at: dict[str, datetime] = field(default_factory=dict)
    channel_of: dict[str, str] = field(default_factory=dict)

    def lead(self, name: str) -> str:
        return f"{self.run}-{name}"

    def _add(self, data: Event) -> Envelope[Event]:
        envelope: Envelope[Event] = Envelope(data=data, source="leadflow/test")
        self.envelopes.append(envelope)
        return envelope

    def capture(
        self,
        name: str,
        channel: str,
        when: datetime,
        *,
        repeat_via: str | None = None,
        is_test: bool = False,
        cost: str | None = None,
    ) -> Envelope[Event]:
        lead_id = self.lead(name)
        if repeat_via is None:
            self.captured_at[name], self.channel_of[name] = when, channel
        touch_channel = repeat_via or channel
        return self._add(
            LeadCaptured(
                lead_id=lead_id,
                submission_id=str(uuid.uuid4()),
                is_new_lead=repeat_via is None,
                touch_number=2 if repeat_via else 1,
                source="form",
                channel=touch_channel,
                attribution=Attribution(channel=touch_channel, source="form"),
                first_touch=Attribution(channel=channel, source="form"),
                contact=Contact(),
                marketing_consent=True,
                is_test=is_test,
                cost=Decimal(cost) if cost else None,
                captured_at=when,
            )
        )

    def score(
        self, name: str, grade: str, after: timedelta, *, sales_ready: bool = False
    ) -> Envelope[Event]:
        captured = self.captured_at[name]
        return self._add(
            LeadScored(
                lead_id=self.lead(name),
                score=80 if sales_ready else 20,
                fit=10,
                engagement=10,
                grade=grade,  # type: ignore[arg-type]
                sales_ready=sales_ready,
                became_sales_ready=sales_ready,
                model_version="test",
                cause_event_id=str(uuid.uuid4()),
                cause_type=LeadCaptured.TYPE,
                channel=self.channel_of[name],
                contact=Contact(),
                captured_at=captured,
                scored_at=captured + after,
            )
        )

    def route(self, name: str, seconds: float) -> Envelope[Event]:
        captured = self.captured_at[name]
        return self._add(
            LeadRouted(
                lead_id=self.lead(name),
                assignment_id=str(uuid.uuid4()),
                rep_id="rep-alice",
                rule_id="default",
                channel=self.channel_of[name],
                captured_at=captured,
                routed_at=captured + timedelta(seconds=seconds),
            )
        )

    def convert(
        self, name: str, value: str, outcome_id: str, currency: str = "USD"
    ) -> Envelope[Event]:
        return self._add(
            LeadConverted(
                lead_id=self.lead(name),
                value=Decimal(value),
                currency=currency,
                outcome_id=outcome_id,
                occurred_at=self.captured_at[name] + timedelta(days=3),
            )
        )

    def disqualify(self, name: str) -> Envelope[Event]:
        return self._add(
            LeadDisqualified(
                lead_id=self.lead(name),
                reason="no budget",
                outcome_id=f"dq-{name}",
                occurred_at=self.captured_at[name] + timedelta(days=2),
            )
        )

    def engage(self, name: str, lead_id: str | None = None) -> Envelope[Event]:
        return self._add(
            LeadEngaged(
                lead_id=lead_id or self.lead(name),
                kind="click",
                sequence_id="welcome",
                step=1,
                occurred_at=at(6),
            )
        )

    def unsubscribe(self, name: str) -> Envelope[Event]:
        return self._add(
            LeadUnsubscribed(lead_id=self.lead(name), method="one_click", occurred_at=at(7))
        )

    def delivery_failed(self, name: str) -> Envelope[Event]:
        return self._add(
            LeadDeliveryFailed(
                lead_id=self.lead(name),
                destination="hubspot",
                error="HTTP 400",
                attempts=5,
                failed_at=at(8),
            )
        )

    def erase(self, name: str) -> Envelope[Event]:
        return self._add(LeadErased(lead_id=self.lead(name), erased_at=at(9)))


def build_campaign() -> Campaign:
    """Every event of the campaign (in the order a lead's events happen)."""
    c = Campaign()
    minute = timedelta(minutes=1)
    c.capture("g0", "google_ads", datetime(2024, 10, 31, 23, 59, 59, tzinfo=UTC))
    c.score("g0", "hot", minute, sales_ready=True)
    c.route("g0", 20)

    c.capture("g1", "google_ads", at(1, 10))
    c.score("g1", "hot", minute, sales_ready=True)
    c.route("g1", 30)
    c.convert("g1", "4800.00", "deal-g1")
    c.convert("g1", "250.005", "deal-g1-emea", currency="eur")
    c.capture("g2", "google_ads", at(2, 11))
    c.score("g2", "hot", minute, sales_ready=True)
    c.route("g2", 90)
    c.capture("g3", "google_ads", at(3))
    c.score("g3", "warm", minute)
    c.capture("g3", "google_ads", at(8), repeat_via="google_ads")
    c.capture("g4", "google_ads", at(10, 23, 59, 59, 999))
    c.score("g4", "cold", minute)
    c.capture("g2", "google_ads", at(9), repeat_via="facebook_ads")
    c.capture("g4", "google_ads", at(10, 23, 59, 59, 999) + minute, repeat_via="facebook_ads")

    c.capture("f1", "facebook_ads", at(2, 8))
    c.score("f1", "hot", minute, sales_ready=True)
    c.route("f1", 45)
    c.convert("f1", "1200.50", "deal-f1a")
    c.convert("f1", "99.99", "deal-f1b")
    c.capture("f2", "facebook_ads", at(4))
    c.score("f2", "cold", timedelta(days=2))  # newer, published first
    c.score("f2", "warm", minute)
    c.capture("f3", "facebook_ads", at(5))
    c.score("f3", "warm", minute)
    c.engage("f3")
    c.unsubscribe("f3")

    c.capture("r1", "radio", at(5, 12))
    c.score("r1", "cold", minute)
    c.capture("rt", "radio", at(5, 13), is_test=True)
    c.score("rt", "hot", minute, sales_ready=True)

    c.capture("v1", "vendor_x", at(6), cost="12.50")
    c.score("v1", "warm", minute, sales_ready=True)
    c.route("v1", 600)
    c.delivery_failed("v1")
    c.disqualify("v1")
    c.capture("v2", "vendor_x", at(7), cost="12.50")
    c.score("v2", "cold", minute)
    c.erase("v2")

    c.engage("ghost")
    return c


_ZERO: dict[str, Any] = {
    "impressions": None,
    "clicks": None,
    "ctr": None,
    "repeat_touches": 0,
    "hot": 0,
    "warm": 0,
    "cold": 0,
    "ungraded": 0,
    "sales_ready": 0,
    "routed": 0,
    "converted": 0,
    "disqualified": 0,
    "engaged": 0,
    "unsubscribed": 0,
    "delivery_failed": 0,
    "erased": 0,
    "revenue": "0.00",
    "revenue_other_currencies": {},
    "cost_per_sales_ready": None,
    "cost_per_conversion": None,
    "roas": None,
    "click_to_lead": None,
    "sales_ready_to_routed": None,
    "routed_to_converted": None,
    "speed_to_lead_median_seconds": None,
    "speed_to_lead_p90_seconds": None,
}


def _row(**values: Any) -> dict[str, Any]:
    return {**_ZERO, **values}


EXPECTED_CHANNELS: list[dict[str, Any]] = [
    _row(
        channel="facebook_ads",
        label="Facebook Ads",
        impressions=15000,
        clicks=350,
        ctr=0.0233,
        leads=3,
        repeat_touches=1,
        hot=1,
        warm=1,
        cold=1,
        sales_ready=1,
        routed=1,
        converted=1,
        engaged=1,
        unsubscribed=1,
        revenue="1300.49",
        spend="513.58",
        cost_per_lead="171.19",
        cost_per_sales_ready="513.58",
        cost_per_conversion="513.58",
        roas=2.5322,
        click_to_lead=0.0086,
        lead_to_sales_ready=0.3333,
        sales_ready_to_routed=1.0,
        routed_to_converted=1.0,
        lead_to_converted=0.3333,
        speed_to_lead_median_seconds=45.0,
        speed_to_lead_p90_seconds=45.0,
    ),
    _row(
        channel="google_ads",
        label="Google Ads",
        leads=4,
        repeat_touches=1,
        hot=2,
        warm=1,
        cold=1,
        sales_ready=2,
        routed=2,
        converted=1,
        revenue="4800.00",
        revenue_other_currencies={"EUR": "250.01"},
        spend="1000.00",
        cost_per_lead="250.00",
        cost_per_sales_ready="500.00",
        cost_per_conversion="1000.00",
        roas=4.8,
        lead_to_sales_ready=0.5,
        sales_ready_to_routed=1.0,
        routed_to_converted=0.5,
        lead_to_converted=0.25,
        speed_to_lead_median_seconds=60.0,
        speed_to_lead_p90_seconds=90.0,
    ),
    _row(
        channel="radio",
        label=None,
        leads=1,
        cold=1,
        spend="800.00",
        cost_per_lead="800.00",
        roas=0.0,
        lead_to_sales_ready=0.0,
        lead_to_converted=0.0,
    ),
    _row(
        channel="vendor_x",
        label=None,
        leads=2,
        warm=1,
        cold=1,
        sales_ready=1,
        routed=1,
        disqualified=1,
        delivery_failed=1,
        erased=1,
        spend="25.00",
        cost_per_lead="12.50",
        cost_per_sales_ready="25.00",
        roas=0.0,
        lead_to_sales_ready=0.5,
        sales_ready_to_routed=1.0,
        routed_to_converted=0.0,
        lead_to_converted=0.0,
        speed_to_lead_median_seconds=600.0,
        speed_to_lead_p90_seconds=600.0,
    ),
]

EXPECTED_TOTALS: dict[str, Any] = _row(
    channel="total",
    label=None,
    impressions=15000,
    clicks=350,
    ctr=0.0233,
    leads=10,
    repeat_touches=2,
    hot=3,
    warm=3,
    cold=4,
    sales_ready=4,
    routed=4,
    converted=2,
    disqualified=1,
    engaged=1,
    unsubscribed=1,
    delivery_failed=1,
    erased=1,
    revenue="6100.49",
    revenue_other_currencies={"EUR": "250.01"},
    spend="2338.58",
    cost_per_lead="233.86",
    cost_per_sales_ready="584.65",
    cost_per_conversion="1169.29",
    roas=2.6086,
    click_to_lead=0.0086,
    lead_to_sales_ready=0.4,
    sales_ready_to_routed=1.0,
    routed_to_converted=0.5,
    lead_to_converted=0.2,
    speed_to_lead_median_seconds=67.5,
    speed_to_lead_p90_seconds=600.0,
)
