"""The first transaction of a send round: take the emails that may go out now.

Sends whose sender died mid-way (lease run out) are recorded as failed; due rows
are locked (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so replicas never take the
same row; SQLite has one writer) and each is checked against the lead as it is
now: erased, unsubscribed or without consent → not sent (recorded why); quiet
hours or the frequency cap → moved to when it may go; else rendered and
**claimed** (`sending`, with a lease), up to the shared send-rate allowance.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from services.nurture import domain, rendering, send_queue, send_results, store
from services.nurture.commands import ClaimDueSends
from services.nurture.config import NurtureConfig
from services.nurture.mailer import Outgoing
from services.nurture.rendering import Templates, Tracking
from shared.db.uow import UnitOfWork

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claimed:
    """A send this scheduler holds: the row as claimed and the message to hand over."""

    row: Any
    claims: int
    outgoing: Outgoing


@dataclass(frozen=True)
class Claim:
    """What a claim took out of `due` due rows, and until when the send-rate limit holds
    the rest back."""

    claimed: list[Claimed]
    due: int = 0
    throttled_until: datetime | None = None


def lease(config: NurtureConfig, count: int) -> timedelta:
    """How long `count` claimed emails stay ours: a few SMTP round trips each, each
    bounded by the timeout."""
    return timedelta(seconds=60 + 4 * config.smtp.timeout_seconds * max(count, 1))


async def handle_claim_due_sends(
    command: ClaimDueSends,
    uow: UnitOfWork,
    *,
    config: NurtureConfig,
    templates: Templates,
    tracking: Tracking,
) -> Claim:
    """Sweep interrupted sends, then take what may go out now."""
    now, session = command.now, uow.session
    for row in await send_queue.interrupted_sends(session, now, 100):
        await send_results.record_interrupted(uow, row, now)
    candidates = await send_queue.claim_candidates(session, now, config.delivery.batch_size)
    if not candidates:
        return Claim([])
    allowance, window = len(candidates), []
    rate = config.smtp.rate_limit
    if rate is not None:
        cutoff = now.timestamp() - rate.per_seconds
        window = [t for t in await send_queue.rate_window(session, uow.dialect, now) if t > cutoff]
        allowance = max(rate.messages - len(window), 0)
    lead_ids = {row.lead_id for row in candidates}
    leads = {}
    for lead_id in lead_ids:
        lead = await store.get_lead(session, lead_id)
        if lead is not None:
            leads[lead_id] = lead
    suppressed = await store.suppressed_hashes(
        session, [domain.email_hash(lead.email) for lead in leads.values() if lead.email]
    )
    cap = config.frequency_cap
    recent = (
        await send_queue.recent_step_sends(session, lead_ids, now - cap.period)
        if cap is not None
        else {}
    )
    lease_until = now + lease(config, min(allowance, len(candidates)))
    claimed: list[Claimed] = []
    throttled = False
    for row in candidates:
        lead = leads.get(row.lead_id)
        facts = (
            domain.lead_facts(
                lead, bool(lead.email) and domain.email_hash(lead.email) in suppressed
            )
            if lead is not None
            else None
        )
        run = await store.get_enrollment(session, row.enrollment_id) if row.enrollment_id else None
        decision = domain.decide(
            config,
            kind=row.kind,
            sequence_id=row.sequence_id,
            step=row.step,
            lead=facts,
            enrollment_status=run.status if run is not None else None,
            recent_sends=recent.get(row.lead_id, []),
            now=now,
        )
        if decision.action == "wait":
            assert decision.until is not None
            await send_queue.update_send(session, row.send_id, next_attempt_at=decision.until)
            continue
        if decision.action != "send":
            await send_results.record_not_sent(uow, config, row, decision, now)
            continue
        if len(claimed) >= allowance:
            throttled = True
            continue  # the send-rate limit: it stays due for the next round
        assert lead is not None
        try:
            outgoing, links, message_id = _prepare(config, templates, tracking, row, lead, now)
        except Exception as exc:
            log.exception("email could not be built", extra={"lead_id": row.lead_id})
            await send_results.record_failed(
                uow, row, f"could not be built: {type(exc).__name__}: {exc}", now
            )
            continue
        if not await send_queue.mark_sending(
            session, row.send_id, row.claims, lease_until, message_id=message_id, links=links
        ):
            continue
        if row.kind == store.STEP:
            recent.setdefault(row.lead_id, []).append(now)
        claimed.append(Claimed(row, row.claims + 1, outgoing))
    throttled_until = None
    if rate is not None:
        window += [now.timestamp()] * len(claimed)
        if claimed:
            await send_queue.save_rate_window(session, window, now)
        if throttled and window:
            throttled_until = datetime.fromtimestamp(min(window) + rate.per_seconds, UTC)
    return Claim(claimed, len(candidates), throttled_until)


def _prepare(
    config: NurtureConfig,
    templates: Templates,
    tracking: Tracking,
    row: Any,
    lead: Any,
    now: datetime,
) -> tuple[Outgoing, dict[str, str], str]:
    context = rendering.lead_context(lead)
    if row.kind == store.CONFIRM:
        rendered = templates.render_confirmation(
            context,
            confirm_url=tracking.confirm_url(lead.lead_id, row.send_id, now),
            valid_days=config.double_opt_in.token_valid.total_seconds() / 86400,
        )
    else:
        rendered = templates.render_step(
            row.sequence_id, row.step, context, send_id=row.send_id, tracking=tracking
        )
    message_id = row.message_id or rendering.message_id_for(config, row.send_id)
    message = rendering.build_message(
        config,
        rendered,
        to_email=lead.email,
        to_name=context["full_name"],
        message_id=message_id,
        now=now,
    )
    return Outgoing(row.send_id, message, lead.email), rendered.links, message_id
