"""The router's JSON views of assignments and deliveries (the HTTP answers' shapes)."""

from __future__ import annotations

from typing import Any

from services.router import store
from shared.clock import iso
from shared.views import fields_of


def delivery_view(row: Any) -> dict[str, Any]:
    return {
        **fields_of(row, "delivery_id", "assignment_id", "lead_id", "destination"),
        "type": row.kind,
        **fields_of(row, "purpose", "status", "attempts", "redrives"),
        "next_attempt_at": iso(row.next_attempt_at) if row.status == store.PENDING else None,
        **fields_of(row, "last_error", "last_status", "external_id"),
        "created_at": iso(row.created_at),
        "delivered_at": iso(row.delivered_at),
        "failed_at": iso(row.failed_at),
    }


def assignment_view(row: Any, deliveries: list[Any]) -> dict[str, Any]:
    return {
        **fields_of(row, "assignment_id", "lead_id", "rep_id", "queue", "rule_id", "status"),
        **fields_of(row, "reason", "reassigned_from", "reassignments"),
        "captured_at": iso(row.captured_at),
        "assigned_at": iso(row.created_at),
        "sla_due_at": iso(row.sla_due_at),
        "acknowledged_at": iso(row.acknowledged_at),
        "breached_at": iso(row.breached_at),
        "delivered_at": iso(row.delivered_at),
        "deliveries": [delivery_view(d) for d in deliveries],
    }
