"""Capture's use cases: every intake door ends in `handle_capture_lead`."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from services.capture import store
from services.capture.domain import build_attribution, marketing_consent, normalize_submission
from services.capture.settings import CaptureConfig
from shared import metrics
from shared.db import UnitOfWork
from shared.events import Attribution, Contact, LeadCaptured, LeadErased


@dataclass(frozen=True)
class CaptureLead:
    """Store one submission and announce it."""

    source: str
    data: Mapping[str, Any]
    form_id: str | None = None
    dedupe_key: str | None = None
    client_ip: str | None = None
    is_test: bool = False
    cost: Decimal | None = None
    attribution: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Captured:
    """What the caller learns: the lead, the submission and what happened."""

    lead_id: str
    submission_id: str
    status: str  # accepted | duplicate | quarantined
    is_new_lead: bool = False


def hash_api_key(key: str) -> str:
    """API keys are stored as SHA-256 hashes: a leaked table does not leak keys."""
    return hashlib.sha256(key.encode()).hexdigest()


async def handle_capture_lead(
    command: CaptureLead, uow: UnitOfWork, config: CaptureConfig, now: datetime | None = None
) -> Captured:
    """Store a submission as a new lead or a new touch of its person; emit lead.captured."""
    now = now or datetime.now(UTC)
    session = uow.session
    dedupe_key = f"{command.source}:{command.dedupe_key}" if command.dedupe_key else None
    if dedupe_key:
        existing = await store.find_submission_by_key(session, dedupe_key)
        if existing is not None:
            metrics.leads_deduplicated_total.labels(command.source).inc()
            return Captured(existing.lead_id or "", existing.submission_id, "duplicate")
    form = config.forms.get(command.form_id) if command.form_id else None
    normalized = normalize_submission(command.data, form)
    touch = build_attribution(
        config.channels,
        command.source,
        command.form_id,
        {**normalized.attribution, **command.attribution},
    )
    consent = marketing_consent(form, command.data)
    contact = normalized.contact
    submission_id = str(uuid.uuid4())
    existing_lead = await store.find_lead(session, contact.email, contact.phone)
    touch_json = touch.model_dump(mode="json", exclude_none=True)
    if existing_lead is None:
        lead_id, touch_number, is_new = str(uuid.uuid4()), 1, True
        first_touch = touch
        await store.insert_lead(
            session,
            lead_id=lead_id,
            email=contact.email,
            phone=contact.phone,
            contact=contact.model_dump(mode="json"),
            first_touch=touch_json,
            last_touch=touch_json,
            touches=1,
            created_at=now,
            updated_at=now,
        )
        captured_at = now
    else:
        lead_id, is_new = existing_lead.lead_id, False
        touch_number = existing_lead.touches + 1
        first_touch = Attribution.model_validate(existing_lead.first_touch)
        merged = _merge_contact(Contact.model_validate(existing_lead.contact or {}), contact)
        contact = merged
        await store.update_lead(
            session,
            lead_id,
            touches=touch_number,
            last_touch=touch_json,
            contact=merged.model_dump(mode="json"),
            email=existing_lead.email or merged.email,
            phone=existing_lead.phone or merged.phone,
            updated_at=now,
        )
        captured_at = existing_lead.created_at
    await store.insert_submission(
        session,
        submission_id=submission_id,
        lead_id=lead_id,
        source=command.source,
        form_id=command.form_id,
        dedupe_key=dedupe_key,
        status="accepted",
        channel=touch.channel,
        payload=dict(normalized.fields),
        attribution=touch_json,
        consent={
            "marketing": consent,
            "text": form.consent.text if form else None,
            "version": form.consent.version if form else None,
            "double_opt_in": bool(form and form.consent.double_opt_in),
            "at": now.isoformat(),
            "ip": command.client_ip,
            "source": command.source,
        },
        client_ip=command.client_ip,
        is_test=command.is_test,
        received_at=now,
    )
    uow.publish(
        LeadCaptured(
            lead_id=lead_id,
            submission_id=submission_id,
            is_new_lead=is_new,
            touch_number=touch_number,
            source=command.source,
            form_id=command.form_id,
            form_type=form.type if form else None,
            channel=touch.channel,
            attribution=touch,
            first_touch=first_touch,
            contact=contact,
            fields=dict(normalized.fields),
            marketing_consent=consent,
            double_opt_in=bool(form and form.consent.double_opt_in),
            is_test=command.is_test,
            cost=command.cost,
            captured_at=captured_at,
        )
    )
    await uow.commit()
    metrics.leads_captured_total.labels(
        command.source, touch.channel, "new" if is_new else "repeat"
    ).inc()
    return Captured(lead_id, submission_id, "accepted", is_new)


def _merge_contact(known: Contact, new: Contact) -> Contact:
    """The newest non-empty value of each contact field wins; identity keys never change."""
    values = known.model_dump()
    for name, value in new.model_dump().items():
        if value and not (name in ("email", "phone") and values.get(name)):
            values[name] = value
    return Contact(**values)


@dataclass(frozen=True)
class EraseLead:
    """Forget a person, found by email, phone or lead id."""

    email: str | None = None
    phone: str | None = None
    lead_id: str | None = None


async def handle_erase_lead(command: EraseLead, uow: UnitOfWork) -> str | None:
    """Remove the person's PII here and tell every service; None when unknown."""
    session = uow.session
    lead = (
        await store.get_lead(session, command.lead_id)
        if command.lead_id
        else await store.find_lead(session, command.email, command.phone)
    )
    if lead is None:
        return None
    now = datetime.now(UTC)
    await store.erase_lead(session, lead.lead_id, now)
    uow.publish(LeadErased(lead_id=lead.lead_id, erased_at=now))
    await uow.commit()
    return str(lead.lead_id)


@dataclass(frozen=True)
class CreateApiKey:
    """Issue an API key for a lead vendor or server-to-server source."""

    name: str
    source: str
    cost_per_lead: Decimal | None = None
    scopes: tuple[str, ...] = ("leads:write",)


async def handle_create_api_key(command: CreateApiKey, uow: UnitOfWork) -> str:
    """Store the key's hash; return the key itself (shown once)."""
    key = "lf_" + secrets.token_urlsafe(32)
    await store.insert_api_key(
        uow.session,
        key_id=str(uuid.uuid4()),
        key_hash=hash_api_key(key),
        name=command.name,
        source=command.source,
        cost_per_lead=command.cost_per_lead,
        scopes=list(command.scopes),
        created_at=datetime.now(UTC),
    )
    await uow.commit()
    return key


async def capture(command: CaptureLead, uow_factory: Any, config: CaptureConfig) -> Captured:
    """Run `handle_capture_lead`, retrying when a concurrent first touch of the same person won."""
    from sqlalchemy.exc import IntegrityError

    for attempt in range(3):
        try:
            async with uow_factory() as uow:
                return await handle_capture_lead(command, uow, config)
        except IntegrityError:
            # Two first submissions of one person raced; the loser finds the winner's lead.
            if attempt == 2:
                raise
    raise AssertionError("unreachable")
