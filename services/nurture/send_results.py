"""What became of each email the scheduler took: sent, retried, failed, bounced, not sent.

`handle_record_send_results` stores the relay's answers (the scheduler's second
transaction of a round); the claim records what it does not send. Also the
operator's re-drive of a failed email. These run inside the bus's unit of work and
never commit.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from services.nurture import domain, send_queue, store
from services.nurture.commands import RecordSendResults, RedriveSend
from services.nurture.config import NurtureConfig
from services.nurture.enrollment import OPEN_RUNS, exit_lead, schedule_step, suppress_lead
from services.nurture.mailer import SendResult
from shared import metrics
from shared.clock import Clock, utc_now
from shared.db import UnitOfWork
from shared.events import LeadUnsubscribed
from shared.messagebus import Refused, refuse_unless_failed

log = logging.getLogger(__name__)

INTERRUPTED = (
    "interrupted while sending (the process stopped); not sent again so that it goes out "
    "at most once: re-drive it if it did not arrive"
)


async def handle_record_send_results(
    command: RecordSendResults, uow: UnitOfWork, *, config: NurtureConfig, clock: Clock = utc_now
) -> None:
    """Store how each claimed email ended; a row claimed again since is left alone."""
    now = clock()
    for item in command.claimed:
        row = await send_queue.get_send(uow.session, item.row.send_id, for_update=True)
        if row is None or row.claims != item.claims:
            continue
        if row.status not in (store.SENDING, store.FAILED):
            continue
        result = command.results.get(row.send_id) or SendResult("retry", "not attempted")
        error = result.error or ""
        if result.status == "sent":
            await record_sent(uow, config, row, now)
        elif result.status == "retry":
            await record_retry(uow, config, row, error, now)
        elif result.status == "bounced":
            await record_bounced(uow, config, row, error, now)
        else:
            await record_failed(uow, row, error or "failed", now)


async def record_sent(uow: UnitOfWork, config: NurtureConfig, row: Any, now: datetime) -> None:
    """The relay took the email: mark it, then queue the next step or finish the run."""
    session = uow.session
    await send_queue.update_send(
        session,
        row.send_id,
        status=store.SENT,
        sent_at=now,
        ended_at=now,
        attempts=row.attempts + 1,
        claimed_until=None,
        last_error=None,
    )
    metrics.nurture_emails_total.labels(row.sequence_id or "confirm", "sent").inc()
    if row.kind != store.STEP or row.enrollment_id is None:
        return
    run = await store.get_enrollment(session, row.enrollment_id)
    if run is None or run.status not in OPEN_RUNS:
        return
    if run.status == store.FAILED_RUN:  # marked interrupted, yet the send went through
        await store.update_enrollment(session, run.enrollment_id, status=store.ACTIVE)
    sequence = config.sequences.get(run.sequence_id)
    if sequence is None or row.step >= len(sequence.steps):
        await store.update_enrollment(
            session, run.enrollment_id, status=store.COMPLETED, ended_at=now
        )
        return
    await schedule_step(
        uow, config, run.enrollment_id, row.lead_id, run.sequence_id, row.step + 1, now
    )


async def record_retry(
    uow: UnitOfWork,
    config: NurtureConfig,
    row: Any,
    error: str,
    now: datetime,
) -> None:
    """A temporary failure: try again after a backoff, or give up after the last attempt."""
    delivery = config.delivery
    attempts = row.attempts + 1
    if attempts >= delivery.max_attempts:
        await record_failed(uow, row, f"gave up after {attempts} attempts: {error}", now, attempts)
        return
    wait = domain.backoff_delay(attempts, delivery.backoff_seconds, delivery.backoff_max_seconds)
    await send_queue.update_send(
        uow.session,
        row.send_id,
        status=store.SCHEDULED,
        attempts=attempts,
        next_attempt_at=now + timedelta(seconds=wait),
        claimed_until=None,
        last_error=error,
    )
    metrics.nurture_emails_total.labels(row.sequence_id or "confirm", "retried").inc()
    log.info("email will be retried in %.0fs: %s", wait, error, extra={"lead_id": row.lead_id})


async def record_failed(
    uow: UnitOfWork, row: Any, error: str, now: datetime, attempts: int | None = None
) -> None:
    """Recorded as failed (never silently skipped); the run halts until it is re-driven."""
    await send_queue.update_send(
        uow.session,
        row.send_id,
        status=store.FAILED,
        attempts=row.attempts + 1 if attempts is None else attempts,
        ended_at=now,
        claimed_until=None,
        last_error=error[:1000],
    )
    if row.kind == store.STEP and row.enrollment_id:
        run = await store.get_enrollment(uow.session, row.enrollment_id)
        if run is not None and run.status == store.ACTIVE:
            await store.update_enrollment(uow.session, run.enrollment_id, status=store.FAILED_RUN)
    metrics.nurture_emails_total.labels(row.sequence_id or "confirm", "failed").inc()
    log.warning("email failed: %s", error, extra={"lead_id": row.lead_id})


async def record_bounced(
    uow: UnitOfWork, config: NurtureConfig, row: Any, error: str, now: datetime
) -> None:
    """The relay refused the address for good: suppress it and end every sequence."""
    await send_queue.update_send(
        uow.session,
        row.send_id,
        status=store.FAILED,
        attempts=row.attempts + 1,
        ended_at=now,
        claimed_until=None,
        last_error=f"bounced: {error}"[:1000],
    )
    metrics.nurture_emails_total.labels(row.sequence_id or "confirm", "bounced").inc()
    lead = await store.ensure_lead(uow.session, uow.dialect, row.lead_id, now)
    if lead.bounced_at is None:
        await store.update_lead(uow.session, row.lead_id, bounced_at=now, updated_at=now)
        uow.publish(LeadUnsubscribed(lead_id=row.lead_id, method="bounce", occurred_at=now))
    await suppress_lead(uow, lead, "bounced", now)
    await exit_lead(uow, config, row.lead_id, "bounced", now)


async def record_not_sent(
    uow: UnitOfWork, config: NurtureConfig, row: Any, decision: domain.Decision, now: datetime
) -> None:
    """A due email that must not go out (cancelled or suppressed), and why."""
    status = store.SUPPRESSED if decision.action == "suppress" else store.CANCELLED
    await send_queue.update_send(
        uow.session,
        row.send_id,
        status=status,
        ended_at=now,
        claimed_until=None,
        last_error=decision.reason,
    )
    if status == store.SUPPRESSED:
        metrics.nurture_emails_total.labels(row.sequence_id or "confirm", "suppressed").inc()
    if row.kind != store.STEP or row.enrollment_id is None or decision.exit is None:
        return
    run = await store.get_enrollment(uow.session, row.enrollment_id)
    if run is None or run.status not in OPEN_RUNS:
        return
    if decision.exit == "completed":
        await store.update_enrollment(
            uow.session, run.enrollment_id, status=store.COMPLETED, ended_at=now
        )
        return
    await store.update_enrollment(
        uow.session,
        run.enrollment_id,
        status=store.EXITED,
        exit_reason=decision.exit,
        ended_at=now,
    )
    metrics.nurture_exits_total.labels(run.sequence_id, decision.exit).inc()


async def record_interrupted(uow: UnitOfWork, row: Any, now: datetime) -> None:
    """A send whose process died mid-way: failed, visibly, and not resent (at most once)."""
    await record_failed(uow, row, INTERRUPTED, now, row.attempts)


class RedriveError(Refused):
    """An email that cannot be re-driven: why, with an HTTP-style status and code."""


async def handle_redrive(command: RedriveSend, uow: UnitOfWork, *, clock: Clock = utc_now) -> Any:
    """Queue a failed email again with a fresh attempt budget; its run resumes."""
    now, send_id = clock(), command.send_id
    session = uow.session
    row = await send_queue.get_send(session, send_id, for_update=True)
    if row is None:
        return None
    refuse_unless_failed(row.status, "email", RedriveError)
    if row.kind == store.STEP and row.enrollment_id:
        run = await store.get_enrollment(session, row.enrollment_id)
        if run is None or run.status not in OPEN_RUNS:
            raise RedriveError(409, "run_ended", "the lead has left this sequence")
        await store.update_enrollment(session, run.enrollment_id, status=store.ACTIVE)
    await send_queue.update_send(
        session,
        send_id,
        status=store.SCHEDULED,
        attempts=0,
        next_attempt_at=now,
        ended_at=None,
        last_error=f"re-driven after: {row.last_error}"[:1000],
    )
    return await send_queue.get_send(session, send_id)
