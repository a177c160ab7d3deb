"""What people do with the emails: open, click, unsubscribe, confirm consent.

The HTTP routes hand these commands to the bus; each runs in one unit of work
that the bus commits, so the state change and the lead.engaged / lead.unsubscribed
it announces (through the outbox) commit together.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from services.nurture import send_queue, store
from services.nurture.commands import ConfirmConsent, RecordClick, RecordOpen, Unsubscribe
from services.nurture.config import NurtureConfig
from services.nurture.enrollment import Wake, enroll_if_eligible, exit_lead, suppress_lead
from shared import metrics
from shared.clock import Clock, utc_now
from shared.db import UnitOfWork
from shared.events import LeadEngaged, LeadUnsubscribed

log = logging.getLogger(__name__)


def _engaged(row: Any, kind: str, now: datetime, link_id: str | None = None) -> LeadEngaged:
    return LeadEngaged(
        lead_id=row.lead_id,
        kind=kind,  # type: ignore[arg-type]
        sequence_id=row.sequence_id,
        step=row.step,
        link_id=link_id,
        occurred_at=now,
    )


async def _erased(uow: UnitOfWork, lead_id: str) -> bool:
    lead = await store.get_lead(uow.session, lead_id)
    return lead is None or lead.erased_at is not None


async def handle_open(command: RecordOpen, uow: UnitOfWork, *, clock: Clock = utc_now) -> bool:
    """The open pixel was fetched; the first open of an email is announced. True if known."""
    now, send_id = clock(), command.send_id
    row = await send_queue.get_send(uow.session, send_id, for_update=True)
    if row is None or row.status != store.SENT:
        return False
    first = row.opened_at is None
    await send_queue.update_send(
        uow.session, send_id, opens=row.opens + 1, opened_at=row.opened_at or now
    )
    if first and not await _erased(uow, row.lead_id):
        uow.publish(_engaged(row, "open", now))
        metrics.nurture_engagement_total.labels("open").inc()
    return True


async def handle_click(
    command: RecordClick, uow: UnitOfWork, *, clock: Clock = utc_now
) -> str | None:
    """Where a tracked link goes (only to the email's own links); None when unknown.

    The first click on each link of an email is announced as lead.engaged; repeats are
    counted, not announced, so one eager reader cannot inflate a score.
    """
    now, send_id, link_id = clock(), command.send_id, command.link_id
    row = await send_queue.get_send(uow.session, send_id, for_update=True)
    if row is None:
        return None
    target = (row.links or {}).get(link_id)
    if not isinstance(target, str):
        return None
    clicked = list(row.clicked_links or [])
    first = link_id not in clicked
    await send_queue.update_send(
        uow.session,
        send_id,
        clicks=row.clicks + 1,
        clicked_links=[*clicked, link_id] if first else clicked,
        opened_at=row.opened_at or now,  # a click is an open the pixel may have missed
    )
    if first and not await _erased(uow, row.lead_id):
        uow.publish(_engaged(row, "click", now, link_id))
        metrics.nurture_engagement_total.labels("click").inc()
    return target


async def handle_unsubscribe(
    command: Unsubscribe, uow: UnitOfWork, *, config: NurtureConfig, clock: Clock = utc_now
) -> bool:
    """Stop all marketing email to the lead for good; True the first time."""
    now, lead_id, method = clock(), command.lead_id, command.method
    lead = await store.ensure_lead(uow.session, uow.dialect, lead_id, now)
    if lead.unsubscribed_at is not None or lead.erased_at is not None:
        return False
    await store.update_lead(uow.session, lead_id, unsubscribed_at=now, updated_at=now)
    await suppress_lead(uow, lead, "unsubscribed", now)
    await exit_lead(uow, config, lead_id, "unsubscribed", now)
    uow.publish(LeadUnsubscribed(lead_id=lead_id, method=method, occurred_at=now))  # type: ignore[arg-type]
    metrics.nurture_engagement_total.labels("unsubscribe").inc()
    log.info("unsubscribed (%s)", method, extra={"lead_id": lead_id})
    return True


CONFIRMED, ALREADY_CONFIRMED, NOT_POSSIBLE = "confirmed", "already_confirmed", "not_possible"


async def handle_confirm(
    command: ConfirmConsent,
    uow: UnitOfWork,
    *,
    config: NurtureConfig,
    wake: Wake | None = None,
    clock: Clock = utc_now,
) -> str:
    """Double opt-in: consent counts from now (time and IP recorded); enroll the lead."""
    now, lead_id, ip = clock(), command.lead_id, command.ip
    session = uow.session
    lead = await store.get_lead(session, lead_id, for_update=True)
    if lead is None or lead.erased_at is not None or lead.unsubscribed_at is not None:
        return NOT_POSSIBLE
    if lead.consent == store.CONSENT_GRANTED:
        return ALREADY_CONFIRMED
    await store.update_lead(
        session,
        lead_id,
        consent=store.CONSENT_GRANTED,
        consent_source="double_opt_in",
        consent_at=now,
        consent_ip=(ip or "")[:64] or None,
        updated_at=now,
    )
    await send_queue.cancel_sends(session, lead_id, "consent confirmed", now, kinds=[store.CONFIRM])
    uow.publish(LeadEngaged(lead_id=lead_id, kind="confirm", occurred_at=now))
    metrics.nurture_engagement_total.labels("confirm").inc()
    lead = await store.get_lead(session, lead_id)
    await enroll_if_eligible(uow, config, lead, now, wake)
    return CONFIRMED
