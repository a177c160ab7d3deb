"""Nurture's records as the API shows them: emails and enrollments (no address, no content)."""

from __future__ import annotations

from typing import Any

from services.nurture import store
from services.nurture.config import NurtureConfig
from services.nurture.enrollment import OPEN_RUNS
from shared.clock import iso
from shared.views import fields_of


def send_view(row: Any) -> dict[str, Any]:
    """One email as the API shows it (no address, no content)."""
    return {
        **fields_of(row, "send_id", "kind", "step"),
        "id": row.step_id,
        "status": row.status,
        "due_at": iso(row.due_at),
        "scheduled_for": iso(row.next_attempt_at) if row.status == store.SCHEDULED else None,
        "sent_at": iso(row.sent_at),
        **fields_of(row, "attempts", "last_error", "message_id"),
        "opened_at": iso(row.opened_at),
        "clicks": row.clicks,
    }


def enrollment_view(run: Any, sends: list[Any], config: NurtureConfig) -> dict[str, Any]:
    sequence = config.sequences.get(run.sequence_id)
    by_step = {row.step: row for row in sends if row.enrollment_id == run.enrollment_id}
    numbers = sorted(set(by_step) | set(range(1, len(sequence.steps) + 1 if sequence else 1)))
    steps = []
    for number in numbers:
        row = by_step.get(number)
        if row is not None:
            steps.append(send_view(row))
            continue
        open_run = run.status in OPEN_RUNS
        steps.append(
            {
                "send_id": None,
                "kind": store.STEP,
                "step": number,
                "id": sequence.step_id(number) if sequence else None,
                "status": "upcoming" if open_run else "not_reached",
            }
        )
    return {
        "enrollment_id": run.enrollment_id,
        "sequence": run.sequence_id,
        "sequence_name": (sequence.name if sequence else None) or run.sequence_id,
        **fields_of(run, "run", "status", "exit_reason"),
        "enrolled_at": iso(run.enrolled_at),
        "ended_at": iso(run.ended_at),
        "steps": steps,
    }
