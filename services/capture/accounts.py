"""Capture's people and partners: erasing a person, issuing API keys."""

from __future__ import annotations

import hashlib
import secrets
import uuid

from services.capture import store
from services.capture.commands import CreateApiKey, EraseLead
from services.capture.domain import parse_cost
from shared.clock import Clock, utc_now
from shared.db import UnitOfWork
from shared.events import LeadErased


def hash_api_key(key: str) -> str:
    """API keys are stored as SHA-256 hashes: a leaked table does not leak keys."""
    return hashlib.sha256(key.encode()).hexdigest()


async def handle_erase_lead(
    command: EraseLead, uow: UnitOfWork, clock: Clock = utc_now
) -> str | None:
    """Remove the person's PII here and tell every service; None when nothing matched
    ("" when only held-back submissions matched).

    Held-back (quarantined) submissions of the same address or number are scrubbed too.
    """
    session = uow.session
    lead = (
        await store.get_lead(session, command.lead_id)
        if command.lead_id
        else await store.find_lead(session, command.email, command.phone)
    )
    now = clock()
    email = command.email or (lead.email if lead else None)
    phone = command.phone or (lead.phone if lead else None)
    scrubbed = await store.erase_held_submissions(session, email, phone)
    if lead is None:
        return "" if scrubbed else None
    await store.erase_lead(session, lead.lead_id, now)
    uow.publish(LeadErased(lead_id=lead.lead_id, erased_at=now))
    return str(lead.lead_id)


async def handle_create_api_key(
    command: CreateApiKey, uow: UnitOfWork, clock: Clock = utc_now
) -> str:
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
        created_at=clock(),
    )
    return key
