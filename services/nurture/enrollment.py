"""The sequence rules applied to nurture's tables: enroll, queue steps, exit, suppress.

The consumer's handlers, the engagement commands and the recording of send results
all reach these, inside the caller's unit of work (they never commit).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from services.nurture import domain, store
from services.nurture.config import NurtureConfig
from services.nurture.lead_cache import leads_of
from services.nurture.sequence_config import ALWAYS_EXIT
from shared import metrics
from shared.db import UnitOfWork

log = logging.getLogger(__name__)

Wake = Callable[[], None]
OPEN_RUNS = (store.ACTIVE, store.FAILED_RUN)


def wake_after_commit(uow: UnitOfWork, wake: Wake | None) -> None:
    """Wake the scheduler once this transaction commits (once, however many emails it queued)."""
    if wake is not None:
        uow.on_commit(wake, once_key="nurture-wake")


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


async def request_confirmation(
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
