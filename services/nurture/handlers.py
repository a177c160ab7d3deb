"""Nurture's event handlers: scored leads enroll or leave; engagement, CRM results and erasure
end sequences. Plus the operator's lifting of a suppression.

The consumer runtime hands each event (a batch of them, with the lead cache of
lead_cache.py) to these in one unit of work; they never commit, so the state change
and the events it announces (through the outbox) commit together.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from services.nurture import domain, store
from services.nurture.commands import Unsuppress
from services.nurture.config import NurtureConfig
from services.nurture.enrollment import (
    Wake,
    enroll_if_eligible,
    exit_lead,
    request_confirmation,
    suppress_lead,
    wake_after_commit,
)
from services.nurture.lead_cache import leads_of
from services.nurture.lead_repository import LeadRepository
from shared.clock import Clock, utc_now
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


# Kafka: leads.scored --------------------------------------------------------------------


async def handle_lead_scored(
    envelope: Envelope[LeadScored],
    uow: UnitOfWork,
    *,
    config: NurtureConfig,
    wake: Wake | None = None,
    clock: Clock = utc_now,
) -> None:
    """Keep the lead's snapshot; leave on sales-ready; ask for confirmation; enroll."""
    data = envelope.data
    now = clock()
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
        await request_confirmation(
            uow, config, lead, now, new_submission=data.cause_type == LeadCaptured.TYPE
        )
        wake_after_commit(uow, wake)
    await enroll_if_eligible(uow, config, lead, now, wake)


# Kafka: leads.engagement, leads.outcomes, leads.erasure ---------------------------------


async def _known_lead(
    uow: UnitOfWork, lead_id: str, clock: Clock
) -> tuple[LeadRepository, Any, datetime]:
    """The repository, the lead (a bare one when nurture has not seen it) and the time."""
    now = clock()
    repo = leads_of(uow)
    return repo, await repo.ensure_lead(lead_id, now), now


async def handle_lead_engaged(
    envelope: Envelope[LeadEngaged], uow: UnitOfWork, *, config: NurtureConfig, clock: Clock
) -> None:
    """A reply ends the sequences that exit on replies; opens and clicks are ours already."""
    if envelope.data.kind == "reply":
        await exit_lead(uow, config, envelope.data.lead_id, "replied", clock())


async def handle_lead_unsubscribed(
    envelope: Envelope[LeadUnsubscribed], uow: UnitOfWork, *, config: NurtureConfig, clock: Clock
) -> None:
    """No more email, from any sequence, ever (our own unsubscribes come back here too)."""
    data = envelope.data
    repo, lead, now = await _known_lead(uow, data.lead_id, clock)
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
    envelope: Envelope[LeadConverted], uow: UnitOfWork, *, config: NurtureConfig, clock: Clock
) -> None:
    """A customer now: sequences that exit on conversion end."""
    repo, lead, now = await _known_lead(uow, envelope.data.lead_id, clock)
    if lead.converted_at is None:
        await repo.update_lead(lead.lead_id, converted_at=now, updated_at=now)
    await exit_lead(uow, config, lead.lead_id, "converted", now)


async def handle_lead_disqualified(
    envelope: Envelope[LeadDisqualified], uow: UnitOfWork, *, config: NurtureConfig, clock: Clock
) -> None:
    """The CRM says the lead will not buy: sequences that exit on disqualification end."""
    await exit_lead(uow, config, envelope.data.lead_id, "disqualified", clock())


async def handle_lead_erased(
    envelope: Envelope[LeadErased], uow: UnitOfWork, *, config: NurtureConfig, clock: Clock
) -> None:
    """Forget the person: PII gone, nothing more sent; the suppression hash stays."""
    repo, lead, now = await _known_lead(uow, envelope.data.lead_id, clock)
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


async def handle_unsuppress(
    command: Unsuppress, uow: UnitOfWork, *, clock: Clock = utc_now
) -> bool:
    """Take an address off the suppression list (only at the person's own request)."""
    address = command.email.strip().lower()
    removed = await store.unsuppress(uow.session, domain.email_hash(address))
    await store.clear_exits_of_address(uow.session, address, clock())
    return removed
