"""The router's JSON views of assignments and deliveries (the HTTP answers' shapes)."""

from __future__ import annotations

from typing import Any

from services.router import store
from shared.clock import iso


def delivery_view(row: Any) -> dict[str, Any]:
    return {
        "delivery_id": row.delivery_id,
        "assignment_id": row.assignment_id,
        "lead_id": row.lead_id,
        "destination": row.destination,
        "type": row.kind,
        "purpose": row.purpose,
        "status": row.status,
        "attempts": row.attempts,
        "redrives": row.redrives,
        "next_attempt_at": iso(row.next_attempt_at) if row.status == store.PENDING else None,
        "last_error": row.last_error,
        "last_status": row.last_status,
        "external_id": row.external_id,
        "created_at": iso(row.created_at),
        "delivered_at": iso(row.delivered_at),
        "failed_at": iso(row.failed_at),
    }


def assignment_view(row: Any, deliveries: list[Any]) -> dict[str, Any]:
    return {
        "assignment_id": row.assignment_id,
        "lead_id": row.lead_id,
        "rep_id": row.rep_id,
        "queue": row.queue,
        "rule_id": row.rule_id,
        "status": row.status,
        "reason": row.reason,
        "reassigned_from": row.reassigned_from,
        "reassignments": row.reassignments,
        "captured_at": iso(row.captured_at),
        "assigned_at": iso(row.created_at),
        "sla_due_at": iso(row.sla_due_at),
        "acknowledged_at": iso(row.acknowledged_at),
        "breached_at": iso(row.breached_at),
        "delivered_at": iso(row.delivered_at),
        "deliveries": [delivery_view(d) for d in deliveries],
    }
