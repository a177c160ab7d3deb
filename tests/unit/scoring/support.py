"""Events and a model for scoring's unit tests: the shipped example config by default."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.scoring.domain import ScoreUpdate, rescore
from services.scoring.leads import LeadState
from services.scoring.model import RuleModel
from services.scoring.settings import ScoringConfig, load
from services.scoring.signals import Signal, signal_of
from shared.config import load_config
from shared.events import Attribution, Contact, LeadCaptured, LeadEngaged, LeadUnsubscribed

EXAMPLE = Path(__file__).resolve().parents[3] / "leadflow.example.yaml"
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def example_config() -> ScoringConfig:
    """The `scoring` section of leadflow.example.yaml."""
    return load(load_config(EXAMPLE, environ={}))


def example_model() -> RuleModel:
    return RuleModel(example_config())


def captured(
    *,
    lead_id: str | None = None,
    form_id: str = "demo-request",
    form_type: str | None = "demo_request",
    email: str = "ada@analytical-engines.co.uk",
    job_title: str | None = "Director of Engineering",
    country: str | None = "GB",
    company: str | None = None,
    fields: dict[str, Any] | None = None,
    channel: str = "google_ads",
    utm_source: str | None = "google",
    utm_medium: str | None = "cpc",
    touch_number: int = 1,
    marketing_consent: bool = True,
    double_opt_in: bool = False,
    at: datetime = T0,
    source: str = "form",
) -> LeadCaptured:
    """A lead.captured event; by default the demo request of a director in the UK."""
    touch = Attribution(
        channel=channel, source=source, utm_source=utm_source, utm_medium=utm_medium
    )
    return LeadCaptured(
        lead_id=lead_id or str(uuid.uuid4()),
        submission_id=str(uuid.uuid4()),
        is_new_lead=touch_number == 1,
        touch_number=touch_number,
        source=source,
        form_id=form_id,
        form_type=form_type,
        channel=channel,
        attribution=touch,
        first_touch=touch,
        contact=Contact(
            email=email, job_title=job_title, country=country, company=company, first_name="Ada"
        ),
        fields={"company_size": "120"} if fields is None else fields,
        marketing_consent=marketing_consent,
        double_opt_in=double_opt_in,
        captured_at=at,
    )


def engaged(lead_id: str, kind: str = "click", at: datetime = T0, **extra: Any) -> LeadEngaged:
    return LeadEngaged(lead_id=lead_id, kind=kind, occurred_at=at, **extra)  # type: ignore[arg-type]


def unsubscribed(lead_id: str, at: datetime = T0) -> LeadUnsubscribed:
    return LeadUnsubscribed(lead_id=lead_id, method="one_click", occurred_at=at)


def signal(event: Any, sent_at: datetime | None = None) -> Signal:
    """The signal of an event sent at `sent_at` (default: when it says it happened)."""
    when = sent_at or getattr(event, "occurred_at", None) or event.captured_at
    found = signal_of(str(uuid.uuid4()), event, when)
    assert found is not None
    return found


def feed(
    model: RuleModel, events: list[Any], at: datetime = T0, state: LeadState | None = None
) -> tuple[LeadState, list[ScoreUpdate]]:
    """Score events in order at `at`, as the consumer would."""
    state = state or LeadState(lead_id=events[0].lead_id)
    outcomes = []
    for event in events:
        outcome = rescore(state, signal(event), model, at, always=isinstance(event, LeadCaptured))
        state = outcome.state
        outcomes.append(outcome)
    return state, outcomes
