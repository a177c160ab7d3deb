"""Capture's submission use cases: every intake door ends in `handle_capture_leads`.

A batch of submissions (a lone form post is a batch of one) reads what it may look up
with one query per table, decides each submission in memory in arrival order and
writes through `uow.submissions`, which the unit of work flushes before it commits.
Handlers never commit: the bus does.

The file is over 300 lines because accepting a submission (new lead or new touch,
contact merge, consent record, the lead.captured event) is one decision best read in
one place.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from services.capture import store
from services.capture.commands import (
    Captured,
    CaptureLead,
    CaptureLeads,
    NotReleasable,
)
from services.capture.domain import (
    InvalidLead,
    NormalizedLead,
    build_attribution,
    marketing_consent,
    normalize_submission,
)
from services.capture.repository import CaptureUnitOfWork, SubmissionRepository
from services.capture.settings import CaptureConfig
from services.capture.spam import is_disposable
from shared import metrics
from shared.clock import Clock, utc_now
from shared.events import Attribution, Contact, LeadCaptured

# The variant nibble of a version-4 UUID (binary 10xx), from a random one.
_VARIANT = {f"{n:x}": "89ab"[n & 3] for n in range(16)}


def new_id() -> str:
    """A random (version 4) UUID as text, like `new_id()` but without building
    the UUID object: a submission takes three."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


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


async def handle_capture_leads(
    batch: CaptureLeads, uow: CaptureUnitOfWork, config: CaptureConfig, clock: Clock = utc_now
) -> list[Captured | InvalidLead]:
    """Store each submission of the batch; a result per submission, in order.

    A submission refused as invalid gets its InvalidLead in its place (it wrote
    nothing; the others are stored).
    """
    prepared = await preload(batch.commands, uow.submissions, config)
    results: list[Captured | InvalidLead] = []
    for command, normalized in zip(batch.commands, prepared, strict=True):
        try:
            results.append(await capture_lead(command, uow, config, clock(), normalized))
        except InvalidLead as exc:  # refused before anything was written
            results.append(exc)
    return results


async def preload(
    commands: tuple[CaptureLead, ...], submissions: SubmissionRepository, config: CaptureConfig
) -> list[NormalizedLead | InvalidLead]:
    """Each submission normalized; what they may look up read with one query per table."""
    keys: list[str] = []
    emails: list[str] = []
    phones: list[str] = []
    prepared = [prepare(command, config) for command in commands]
    for command, normalized in zip(commands, prepared, strict=True):
        key = dedupe_key_of(command)
        if key:
            keys.append(key)
        if isinstance(normalized, NormalizedLead):
            emails += [normalized.contact.email] if normalized.contact.email else []
            phones += [normalized.contact.phone] if normalized.contact.phone else []
    await submissions.preload(keys, emails, phones)
    return prepared


async def capture_lead(
    command: CaptureLead,
    uow: CaptureUnitOfWork,
    config: CaptureConfig,
    now: datetime,
    prepared: NormalizedLead | InvalidLead,
) -> Captured:
    """Store a submission as a new lead, a new touch of its person, or quarantined spam.

    Invalid input raises InvalidLead before anything is written. `prepared` is
    `prepare(command, config)`, its addresses preloaded into `uow.submissions`.
    """
    writes = uow.submissions
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
    normalized = None if isinstance(prepared, InvalidLead) else prepared
    if isinstance(prepared, InvalidLead):
        if reason is None and not command.from_platform:
            raise prepared
        reason = reason or "invalid_contact"
        detail = f"{prepared.field}: {prepared.message}"[:200]
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
    return await accept_submission(uow, command, config, normalized, touch, dedupe_key, now, None)


async def _quarantine(
    writes: SubmissionRepository,
    command: CaptureLead,
    normalized: NormalizedLead | None,
    touch: Attribution,
    dedupe_key: str | None,
    reason: str,
    detail: str | None,
    now: datetime,
) -> Captured:
    submission_id = new_id()
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


async def accept_submission(
    uow: CaptureUnitOfWork,
    command: CaptureLead,
    config: CaptureConfig,
    normalized: NormalizedLead,
    touch: Attribution,
    dedupe_key: str | None,
    now: datetime,
    release: sa.Row[Any] | None,
) -> Captured:
    writes = uow.submissions
    form = config.forms.get(command.form_id) if command.form_id else None
    consent = marketing_consent(form, command.data)
    contact = normalized.contact
    existing_lead = await writes.lead_of(contact.email, contact.phone)
    touch_json = touch.model_dump(mode="json", exclude_none=True)
    if existing_lead is None:
        lead_id, touch_number, is_new = new_id(), 1, True
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
        submission_id = new_id()
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
        consent_id=new_id(),
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


def count_capture(result: Captured) -> None:
    """Count a committed capture."""
    if result.status == "duplicate":
        metrics.leads_deduplicated_total.labels(result.source).inc()
    elif result.status == "quarantined":
        metrics.leads_quarantined_total.labels(result.source, result.reason or "unknown").inc()
    else:
        metrics.leads_captured_total.labels(
            result.source, result.channel, "new" if result.is_new_lead else "repeat"
        ).inc()
