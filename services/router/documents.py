"""What a destination receives about one routed lead: the delivery document."""

from __future__ import annotations

from typing import Any

from services.router import domain
from services.router.settings import RoutingConfig
from shared.clock import iso

EVENTS = {
    "assigned": "lead.routed",
    "reassigned": "lead.reassigned",
    "escalation": "lead.sla_breached",
}


def build_document(
    delivery: Any,
    assignment: Any,
    lead: Any,
    config: RoutingConfig,
    ack_url: str | None,
) -> dict[str, Any]:
    """What a destination receives about one routed lead (mappings read from it)."""
    contact = dict(lead.contact or {}) if lead is not None else {}
    full_name = " ".join(p for p in (contact.get("first_name"), contact.get("last_name")) if p)
    rep_config = config.reps.get(assignment.rep_id) if assignment.rep_id else None
    rep = (
        {
            "id": assignment.rep_id,
            "name": rep_config.name,
            "email": rep_config.email,
            "owner_ids": dict(rep_config.owner_ids),
        }
        if rep_config is not None
        else None
    )
    reason = assignment.reason or {}
    return {
        "event": EVENTS.get(delivery.purpose, "lead.routed"),
        "lead_id": delivery.lead_id,
        "delivery_id": delivery.delivery_id,
        "assignment_id": assignment.assignment_id,
        "rule_id": assignment.rule_id,
        "rep_id": assignment.rep_id,
        "queue": assignment.queue,
        "rep": rep,
        "lead": {
            "email": contact.get("email"),
            "phone": contact.get("phone"),
            "first_name": contact.get("first_name"),
            "last_name": contact.get("last_name"),
            "full_name": full_name or None,
            "company": contact.get("company"),
            "job_title": contact.get("job_title"),
            "country": contact.get("country"),
            "channel": lead.channel if lead is not None else None,
            "form_id": lead.form_id if lead is not None else None,
            "form_type": lead.form_type if lead is not None else None,
            "score": lead.score if lead is not None else None,
            "grade": lead.grade if lead is not None else None,
            "fields": dict(lead.fields or {}) if lead is not None else {},
            "captured_at": iso(assignment.captured_at),
        },
        "assignment": {
            "id": assignment.assignment_id,
            "rule_id": assignment.rule_id,
            "explanation": reason.get("explanation"),
            "reassigned": bool(assignment.reassigned_from),
            "sla_minutes": domain.sla_minutes(config, assignment.rule_id),
            "sla_due_at": iso(assignment.sla_due_at),
        },
        "breached_rep": assignment.rep_id if delivery.purpose == "escalation" else None,
        "ack_url": ack_url if assignment.rep_id else None,
        "routed_at": iso(assignment.created_at),
    }
