"""Capture's use cases: every intake door ends in `handle_capture_lead`."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from services.capture import store
from services.capture.domain import (
    InvalidLead,
    NormalizedLead,
    build_attribution,
    marketing_consent,
    normalize_submission,
    parse_cost,
)
from services.capture.settings import CaptureConfig
from services.capture.spam import is_disposable
from services.capture.writes import Writes
from shared import metrics
from shared.db import UnitOfWork
from shared.events import Attribution, Contact, LeadCaptured, LeadErased


@dataclass(frozen=True)
class CaptureLead:
    """Store one submission and announce it (or hold it back as suspected spam)."""

    source: str
    data: Mapping[str, Any]
    form_id: str | None = None
    dedupe_key: str | None = None
    client_ip: str | None = None
    is_test: bool = False
    cost: Decimal | None = None
    attribution: Mapping[str, str] = field(default_factory=dict)
    quarantine: str | None = None  # a spam signal found before the handler (honeypot...)
    spam_checks: bool = False  # landing-page forms: also check the normalized address
    from_platform: bool = False  # ad platforms: no required list, invalid → quarantine
    platform: Mapping[str, str] = field(default_factory=dict)  # platform ids worth keeping


@dataclass(frozen=True)
class Captured:
    """What the caller learns: the lead, the submission and what happened."""

    lead_id: str | None
    submission_id: str
    status: str  # accepted | duplicate | quarantined | released
    is_new_lead: bool = False
    source: str = ""
    channel: str = ""
    reason: str | None = None


class NotReleasable(Exception):
    """The submission is unknown or not held in quarantine."""

    def __init__(self, submission_id: str, status: str | None) -> None:
        super().__init__(f"submission {submission_id} is {status or 'unknown'}")
        self.status = status


def hash_api_key(key: str) -> str:
    """API keys are stored as SHA-256 hashes: a leaked table does not leak keys."""
    return hashlib.sha256(key.encode()).hexdigest()


def dedupe_key_of(command: CaptureLead) -> str | None:
    """The stored dedupe key: the same key from another source is another submission."""
    return f"{command.source}:{command.dedupe_key}" if command.dedupe_key else None


def prepare(command: CaptureLead, config: CaptureConfig) -> NormalizedLead | InvalidLead:
    """The submission normalized, or why it cannot be (no database needed)."""
    form = config.forms.get(command.form_id) if command.form_id else None
    try:
        return normalize_submission(command.data, form, from_platform=command.from_platform)
    except InvalidLead as exc:
        return exc


async def handle_capture_lead(
    command: CaptureLead,
    uow: UnitOfWork,
    config: CaptureConfig,
    now: datetime | None = None,
    *,
    writes: Writes | None = None,
    prepared: NormalizedLead | InvalidLead | None = None,
) -> Captured:
    """Store a submission as a new lead, a new touch of its person, or quarantined spam.

    Writes only into `uow` (through `writes`, which the batched intake replaces by
    one that buffers a whole group); the caller commits. Invalid input raises
    InvalidLead before anything is written. `prepared` is `prepare(command, config)`
    when the caller already has it. Releasing a quarantined submission is
    `handle_release_submission`.
    """
    now = now or datetime.now(UTC)
    writes = writes or Writes(uow.session)
    dedupe_key = dedupe_key_of(command)
    if dedupe_key:
        existing = await writes.submission_by_key(dedupe_key)
        if existing is not None:
            return Captured(
                existing.lead_id,
                existing.submission_id,
                "duplicate",
                source=command.source,
                channel=existing.channel,
            )
    form = config.forms.get(command.form_id) if command.form_id else None
    reason, detail = command.quarantine, None
    outcome = prepared if prepared is not None else prepare(command, config)
    normalized = None if isinstance(outcome, InvalidLead) else outcome
    if isinstance(outcome, InvalidLead):
        if reason is None and not command.from_platform:
            raise outcome
        reason = reason or "invalid_contact"
        detail = f"{outcome.field}: {outcome.message}"[:200]
    if (
        reason is None
        and command.spam_checks
        and form is not None
        and normalized is not None
        and is_disposable(normalized.contact.email, form)
    ):
        reason = "disposable_email"
    touch = build_attribution(
        config.channels,
        command.source,
        command.form_id,
        {**(normalized.attribution if normalized else {}), **command.attribution},
    )
    if reason is not None:
        return await _quarantine(
            writes, command, normalized, touch, dedupe_key, reason, detail, now
        )
    assert normalized is not None
    return await _accept(uow, writes, command, config, normalized, touch, dedupe_key, now, None)


async def _quarantine(
    writes: Writes,
    command: CaptureLead,
    normalized: NormalizedLead | None,
    touch: Attribution,
    dedupe_key: str | None,
    reason: str,
    detail: str | None,
    now: datetime,
) -> Captured:
    submission_id = str(uuid.uuid4())
    contact = normalized.contact if normalized else Contact()
    await writes.insert_submission(
        submission_id=submission_id,
        lead_id=None,
        source=command.source,
        form_id=command.form_id,
        dedupe_key=dedupe_key,
        status="quarantined",
        quarantine_reason=reason,
        quarantine_detail=detail,
        channel=touch.channel,
        email=contact.email,
        phone=contact.phone,
        payload=dict(normalized.fields) if normalized else {},
        raw={
            "data": dict(command.data),
            "attribution": dict(command.attribution),
            "cost": str(command.cost) if command.cost is not None else None,
            "from_platform": command.from_platform,
        },
        platform=dict(command.platform) or None,
        attribution=touch.model_dump(mode="json", exclude_none=True),
        consent={},
        client_ip=command.client_ip,
        is_test=command.is_test,
        received_at=now,
    )
    return Captured(
        None,
        submission_id,
        "quarantined",
        source=command.source,
        channel=touch.channel,
        reason=reason,
    )


async def _accept(
    uow: UnitOfWork,
    writes: Writes,
    command: CaptureLead,
    config: CaptureConfig,
    normalized: NormalizedLead,
    touch: Attribution,
    dedupe_key: str | None,
    now: datetime,
    release: sa.Row[Any] | None,
) -> Captured:
    form = config.forms.get(command.form_id) if command.form_id else None
    consent = marketing_consent(form, command.data)
    contact = normalized.contact
    existing_lead = await writes.lead_of(contact.email, contact.phone)
    touch_json = touch.model_dump(mode="json", exclude_none=True)
    if existing_lead is None:
        lead_id, touch_number, is_new = str(uuid.uuid4()), 1, True
        first_touch = touch
        await writes.insert_lead(
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
        if existing_lead.phone is None and contact.phone:
            holder = await writes.lead_of(None, contact.phone)
            if holder is not None and holder.lead_id != lead_id:
                # Email wins: this is a touch of the email's lead, and the number stays with
                # the lead that holds it (a shared switchboard), one lead per phone.
                contact = contact.model_copy(update={"phone": None})
        contact = _merge_contact(Contact.model_validate(existing_lead.contact or {}), contact)
        await writes.update_lead(
            lead_id,
            touches=touch_number,
            last_touch=touch_json,
            contact=contact.model_dump(mode="json"),
            email=existing_lead.email or contact.email,
            phone=existing_lead.phone or contact.phone,
            updated_at=now,
        )
        captured_at = existing_lead.created_at
    double_opt_in = bool(form and form.consent.double_opt_in)
    consent_record = {
        "marketing": consent,
        "text": form.consent.text if form else None,
        "version": form.consent.version if form else None,
        "double_opt_in": double_opt_in,
        "at": now.isoformat(),
        "ip": command.client_ip,
        "source": command.source,
    }
    values = {
        "lead_id": lead_id,
        "channel": touch.channel,
        "email": normalized.contact.email,
        "phone": normalized.contact.phone,
        "payload": dict(normalized.fields),
        "attribution": touch_json,
        "consent": consent_record,
    }
    if release is not None:
        submission_id = release.submission_id
        changed = await store.release_submission(
            uow.session, submission_id, status="released", raw=None, released_at=now, **values
        )
        if not changed:
            raise NotReleasable(submission_id, "no longer quarantined")
    else:
        submission_id = str(uuid.uuid4())
        await writes.insert_submission(
            submission_id=submission_id,
            source=command.source,
            form_id=command.form_id,
            dedupe_key=dedupe_key,
            status="accepted",
            platform=dict(command.platform) or None,
            client_ip=command.client_ip,
            is_test=command.is_test,
            received_at=now,
            **values,
        )
    await writes.insert_consent(
        consent_id=str(uuid.uuid4()),
        lead_id=lead_id,
        submission_id=submission_id,
        source=command.source,
        form_id=command.form_id,
        marketing=consent,
        double_opt_in=double_opt_in,
        text=consent_record["text"],
        version=consent_record["version"],
        ip=command.client_ip,
        recorded_at=now,
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
            double_opt_in=double_opt_in,
            is_test=command.is_test,
            cost=command.cost,
            captured_at=captured_at,
        )
    )
    return Captured(
        lead_id,
        submission_id,
        "released" if release is not None else "accepted",
        is_new,
        source=command.source,
        channel=touch.channel,
    )


def _merge_contact(known: Contact, new: Contact) -> Contact:
    """The newest non-empty value of each contact field wins; identity keys never change."""
    values = known.model_dump()
    for name, value in new.model_dump().items():
        if value and not (name in ("email", "phone") and values.get(name)):
            values[name] = value
    return Contact(**values)


AfterCapture = Callable[[UnitOfWork, Captured], Awaitable[None]]


async def capture(
    command: CaptureLead,
    uow_factory: Callable[[], UnitOfWork],
    config: CaptureConfig,
    *,
    after: AfterCapture | None = None,
) -> Captured:
    """Run `handle_capture_lead` in its own transaction and commit.

    Retries when a concurrent first touch of the same person (or the same dedupe key)
    won the race: the retry finds the winner's lead. `after` runs in the same
    transaction (the retrieval worker marks its job done there).
    """
    for attempt in range(3):
        try:
            async with uow_factory() as uow:
                result = await handle_capture_lead(command, uow, config)
                if after is not None:
                    await after(uow, result)
                await uow.commit()
        except IntegrityError:
            if attempt == 2:
                raise
            continue
        record_outcome(result)
        return result
    raise AssertionError("unreachable")


def record_outcome(result: Captured) -> None:
    """Count a committed capture."""
    if result.status == "duplicate":
        metrics.leads_deduplicated_total.labels(result.source).inc()
    elif result.status == "quarantined":
        metrics.leads_quarantined_total.labels(result.source, result.reason or "unknown").inc()
    else:
        metrics.leads_captured_total.labels(
            result.source, result.channel, "new" if result.is_new_lead else "repeat"
        ).inc()


async def handle_release_submission(
    submission_id: str, uow: UnitOfWork, config: CaptureConfig
) -> Captured:
    """Let a quarantined submission through: the normal capture path, on the same row."""
    row = await store.get_submission(uow.session, submission_id)
    if row is None or row.status != "quarantined":
        raise NotReleasable(submission_id, row.status if row else None)
    raw = row.raw or {}
    command = CaptureLead(
        source=row.source,
        data=raw.get("data") or {},
        form_id=row.form_id,
        client_ip=row.client_ip,
        is_test=bool(row.is_test),
        cost=Decimal(raw["cost"]) if raw.get("cost") else None,
        attribution=raw.get("attribution") or {},
        from_platform=bool(raw.get("from_platform")),
        platform=row.platform or {},
    )
    form = config.forms.get(command.form_id) if command.form_id else None
    normalized = normalize_submission(command.data, form, from_platform=command.from_platform)
    touch = build_attribution(
        config.channels,
        command.source,
        command.form_id,
        {**normalized.attribution, **command.attribution},
    )
    return await _accept(
        uow, Writes(uow.session), command, config, normalized, touch, None, datetime.now(UTC), row
    )


async def release(
    submission_id: str, uow_factory: Callable[[], UnitOfWork], config: CaptureConfig
) -> Captured:
    """Release and commit, retrying a lost first-touch race like `capture`."""
    for attempt in range(3):
        try:
            async with uow_factory() as uow:
                result = await handle_release_submission(submission_id, uow, config)
                await uow.commit()
        except IntegrityError:
            if attempt == 2:
                raise
            continue
        record_outcome(result)
        return result
    raise AssertionError("unreachable")


async def handle_reject_submission(submission_id: str, uow: UnitOfWork) -> None:
    """Drop a quarantined submission for good: spam keeps no personal data."""
    row = await store.get_submission(uow.session, submission_id)
    if row is None or row.status != "quarantined":
        raise NotReleasable(submission_id, row.status if row else None)
    await store.delete_submission(uow.session, submission_id)
    await uow.commit()


@dataclass(frozen=True)
class EraseLead:
    """Forget a person, found by email, phone or lead id."""

    email: str | None = None
    phone: str | None = None
    lead_id: str | None = None


async def handle_erase_lead(command: EraseLead, uow: UnitOfWork) -> str | None:
    """Remove the person's PII here and tell every service; None when nothing matched.

    Held-back (quarantined) submissions of the same address or number are scrubbed too.
    """
    session = uow.session
    lead = (
        await store.get_lead(session, command.lead_id)
        if command.lead_id
        else await store.find_lead(session, command.email, command.phone)
    )
    now = datetime.now(UTC)
    email = command.email or (lead.email if lead else None)
    phone = command.phone or (lead.phone if lead else None)
    scrubbed = await store.erase_held_submissions(session, email, phone)
    if lead is None:
        if scrubbed:
            await uow.commit()
            return ""
        return None
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
    """Store the key's hash; return the key itself (shown once).

    A cost that is negative, too large or finer than 0.0001 raises ValueError: it is
    never rounded.
    """
    if command.cost_per_lead is not None:
        parse_cost(str(command.cost_per_lead))
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
