"""Nurture's use cases: enroll, exit, track engagement, confirm consent, unsubscribe, forget.

Kafka consumers and HTTP routes reach the same functions; each runs inside one
unit of work, so the state change and the events it announces (through the
outbox) commit together.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from services.nurture import domain, store
from services.nurture.batch import leads_of
from services.nurture.config import NurtureConfig
from services.nurture.sequence_config import ALWAYS_EXIT
from shared import metrics
from shared.db import UnitOfWork
from shared.events import (
    Envelope,
    LeadCaptured,
    LeadConverted,
    LeadDisqualified,
    LeadEngaged,
    LeadErased,
    LeadScored,
    LeadUnsubscribed,
)

log = logging.getLogger(__name__)

Wake = Callable[[], None]
OPEN_RUNS = (store.ACTIVE, store.FAILED_RUN)


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


def after_commit(uow: UnitOfWork, callback: Callable[[], None]) -> None:
    """Run `callback` once this unit of work's transaction has committed (never on rollback)."""
    sa.event.listen(uow.session.sync_session, "after_commit", lambda _s: callback(), once=True)


def wake_after_commit(uow: UnitOfWork, wake: Wake | None) -> None:
    """Wake the scheduler once this transaction commits."""
    session = uow.session
    if wake is None or session.info.get("nurture_wake"):
        return
    session.info["nurture_wake"] = True
    after_commit(uow, wake)


# Enrollment and exits -------------------------------------------------------------------


async def enroll_if_eligible(
    uow: UnitOfWork, config: NurtureConfig, lead: Any, now: datetime, wake: Wake | None
) -> str | None:
    """Enroll the lead in the first sequence it may enter; the enrollment id, or None."""
    repo = leads_of(uow)
    suppressed = bool(lead.email) and await repo.is_suppressed(domain.email_hash(lead.email))
    facts = domain.lead_facts(lead, suppressed)
    runs = await repo.lead_enrollments(lead.lead_id)
    history = [domain.past_run(r) for r in runs]
    sequence_id = domain.choose_sequence(config, facts, history, now)
    if sequence_id is None:
        return None
    enrollment_id = str(uuid.uuid4())
    await repo.insert_enrollment(
        enrollment_id=enrollment_id,
        lead_id=lead.lead_id,
        sequence_id=sequence_id,
        run=1 + sum(1 for r in history if r.sequence_id == sequence_id),
        status=store.ACTIVE,
        enrolled_at=now,
    )
    await schedule_step(uow, config, enrollment_id, lead.lead_id, sequence_id, 1, now)
    metrics.nurture_enrollments_total.labels(sequence_id).inc()
    log.info("enrolled in %s", sequence_id, extra={"lead_id": lead.lead_id})
    wake_after_commit(uow, wake)
    return enrollment_id


async def schedule_step(
    uow: UnitOfWork,
    config: NurtureConfig,
    enrollment_id: str,
    lead_id: str,
    sequence_id: str,
    number: int,
    after: datetime,
) -> None:
    """Queue step `number`, due its delay after `after` (enrollment or the previous send)."""
    sequence = config.sequences[sequence_id]
    due = after + sequence.steps[number - 1].delay
    await leads_of(uow).insert_send(
        send_id=uuid.uuid4().hex,
        kind=store.STEP,
        lead_id=lead_id,
        enrollment_id=enrollment_id,
        sequence_id=sequence_id,
        step=number,
        step_id=sequence.step_id(number),
        status=store.SCHEDULED,
        due_at=due,
        created_at=after,
    )


async def exit_lead(
    uow: UnitOfWork, config: NurtureConfig, lead_id: str, reason: str, now: datetime
) -> int:
    """End the lead's open enrollments whose sequence exits on `reason`; cancel their sends."""
    repo = leads_of(uow)
    ended = 0
    for run in await repo.lead_enrollments(lead_id):
        if run.status not in OPEN_RUNS:
            continue
        sequence = config.sequences.get(run.sequence_id)
        if sequence is not None and not sequence.exits_on(reason):
            continue
        await repo.update_enrollment(
            run.enrollment_id, status=store.EXITED, exit_reason=reason, ended_at=now
        )
        cancelled = await repo.cancel_sends(
            lead_id, f"cancelled: {reason}", now, enrollment_ids=[run.enrollment_id]
        )
        metrics.nurture_exits_total.labels(run.sequence_id, reason).inc()
        log.info(
            "left %s (%s); %d email(s) cancelled",
            run.sequence_id,
            reason,
            cancelled,
            extra={"lead_id": lead_id},
        )
        ended += 1
    if reason in ALWAYS_EXIT:
        await repo.cancel_sends(lead_id, f"cancelled: {reason}", now)
    return ended


async def suppress_lead(uow: UnitOfWork, lead: Any, reason: str, now: datetime) -> None:
    """Put the lead's address on the suppression list."""
    if lead.email:
        await leads_of(uow).suppress(domain.email_hash(lead.email), reason, lead.lead_id, now)


async def _maybe_request_confirmation(
    uow: UnitOfWork, config: NurtureConfig, lead: Any, now: datetime, *, new_submission: bool
) -> None:
    """Queue the double opt-in email, unless one is on its way or was sent lately."""
    repo = leads_of(uow)
    if not lead.email or lead.unsubscribed_at or lead.bounced_at:
        return
    if await repo.is_suppressed(domain.email_hash(lead.email)):
        return
    earlier = await repo.lead_sends(lead.lead_id, kind=store.CONFIRM)
    if any(s.status in (store.SCHEDULED, store.SENDING) for s in earlier):
        return
    if earlier:
        last = max(s.sent_at or s.ended_at or s.created_at for s in earlier)
        if not new_submission or now - last < config.double_opt_in.resend_after:
            return
    await repo.insert_send(
        send_id=uuid.uuid4().hex,
        kind=store.CONFIRM,
        lead_id=lead.lead_id,
        status=store.SCHEDULED,
        due_at=now,
        created_at=now,
    )


# Kafka: leads.scored --------------------------------------------------------------------


async def handle_lead_scored(
    envelope: Envelope[LeadScored],
    uow: UnitOfWork,
    *,
    config: NurtureConfig,
    wake: Wake | None = None,
    now: datetime | None = None,
) -> None:
    """Keep the lead's snapshot; leave on sales-ready; ask for confirmation; enroll."""
    data = envelope.data
    now = _now(now)
    repo = leads_of(uow)
    lead = await repo.ensure_lead(data.lead_id, now)
    if lead.erased_at is not None:
        return
    values: dict[str, Any] = {
        "email": (data.contact.email or "").strip().lower() or None,
        "contact": data.contact.model_dump(mode="json"),
        "fields": dict(data.fields),
        "channel": data.channel,
        "form_id": data.form_id,
        "form_type": data.form_type,
        "grade": data.grade,
        "score": data.score,
        "sales_ready": data.sales_ready,
        "disqualified": data.disqualified,
        "is_test": data.is_test,
        "updated_at": now,
    }
    if data.marketing_consent and lead.consent != store.CONSENT_GRANTED:
        if not data.double_opt_in:
            values.update(consent=store.CONSENT_GRANTED, consent_source="form", consent_at=now)
        else:
            values.update(consent=store.CONSENT_PENDING)
    await repo.update_lead(data.lead_id, **values)
    refreshed = await repo.get_lead(data.lead_id)
    assert refreshed is not None
    lead = refreshed
    if lead.unsubscribed_at is not None:
        await suppress_lead(uow, lead, "unsubscribed", now)
    if lead.bounced_at is not None:
        await suppress_lead(uow, lead, "bounced", now)
    if data.sales_ready:
        await exit_lead(uow, config, data.lead_id, "sales_ready", now)
    if data.disqualified:
        await exit_lead(uow, config, data.lead_id, "disqualified", now)
    if lead.consent == store.CONSENT_PENDING and data.marketing_consent and data.double_opt_in:
        await _maybe_request_confirmation(
            uow, config, lead, now, new_submission=data.cause_type == LeadCaptured.TYPE
        )
        wake_after_commit(uow, wake)
    await enroll_if_eligible(uow, config, lead, now, wake)


# Kafka: leads.engagement, leads.outcomes, leads.erasure ---------------------------------


async def handle_lead_engaged(
    envelope: Envelope[LeadEngaged],
    uow: UnitOfWork,
    *,
    config: NurtureConfig,
    now: datetime | None = None,
) -> None:
    """A reply ends the sequences that exit on replies; opens and clicks are ours already."""
    if envelope.data.kind == "reply":
        await exit_lead(uow, config, envelope.data.lead_id, "replied", _now(now))


async def handle_lead_unsubscribed(
    envelope: Envelope[LeadUnsubscribed],
    uow: UnitOfWork,
    *,
    config: NurtureConfig,
    now: datetime | None = None,
) -> None:
    """No more email, from any sequence, ever (our own unsubscribes come back here too)."""
    data = envelope.data
    now = _now(now)
    repo = leads_of(uow)
    lead = await repo.ensure_lead(data.lead_id, now)
    if data.method == "bounce":
        if lead.bounced_at is None:
            await repo.update_lead(data.lead_id, bounced_at=now, updated_at=now)
        await suppress_lead(uow, lead, "bounced", now)
        await exit_lead(uow, config, data.lead_id, "bounced", now)
        return
    if lead.unsubscribed_at is None:
        await repo.update_lead(data.lead_id, unsubscribed_at=now, updated_at=now)
    reason = "complaint" if data.method == "complaint" else "unsubscribed"
    await suppress_lead(uow, lead, reason, now)
    await exit_lead(uow, config, data.lead_id, "unsubscribed", now)


async def handle_lead_converted(
    envelope: Envelope[LeadConverted],
    uow: UnitOfWork,
    *,
    config: NurtureConfig,
    now: datetime | None = None,
) -> None:
    """A customer now: sequences that exit on conversion end."""
    now = _now(now)
    repo = leads_of(uow)
    lead = await repo.ensure_lead(envelope.data.lead_id, now)
    if lead.converted_at is None:
        await repo.update_lead(lead.lead_id, converted_at=now, updated_at=now)
    await exit_lead(uow, config, lead.lead_id, "converted", now)


async def handle_lead_disqualified(
    envelope: Envelope[LeadDisqualified],
    uow: UnitOfWork,
    *,
    config: NurtureConfig,
    now: datetime | None = None,
) -> None:
    """The CRM says the lead will not buy: sequences that exit on disqualification end."""
    await exit_lead(uow, config, envelope.data.lead_id, "disqualified", _now(now))


async def handle_lead_erased(
    envelope: Envelope[LeadErased],
    uow: UnitOfWork,
    *,
    config: NurtureConfig,
    now: datetime | None = None,
) -> None:
    """Forget the person: PII gone, nothing more sent; the suppression hash stays."""
    now = _now(now)
    repo = leads_of(uow)
    lead = await repo.ensure_lead(envelope.data.lead_id, now)
    if lead.erased_at is not None:
        return
    await exit_lead(uow, config, lead.lead_id, "erased", now)
    await repo.update_lead(
        lead.lead_id,
        email=None,
        contact={},
        fields={},
        consent_ip=None,
        erased_at=now,
        updated_at=now,
    )
    # Links may carry personal data a template put in them; clicks on them stop working.
    await repo.forget_links(lead.lead_id)


async def handle_unsuppress(email: str, uow: UnitOfWork, now: datetime | None = None) -> bool:
    """Take an address off the suppression list (only at the person's own request)."""
    now = _now(now)
    address = email.strip().lower()
    removed = await store.unsuppress(uow.session, domain.email_hash(address))
    await uow.session.execute(
        sa.update(store.leads)
        .where(store.leads.c.email == address)
        .values(unsubscribed_at=None, bounced_at=None, updated_at=now)
    )
    await uow.commit()
    return removed
