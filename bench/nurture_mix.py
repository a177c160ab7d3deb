"""A broader mix of nurture's input, in the format bench/consumer_bench.py replays.

The e2e bench posts hot demo requests only, so a dump of it exercises nurture's
sales-ready path alone. This writes leads.scored events for cold, warm, hot and
double opt-in leads (some scored again, warmer), and engagement, unsubscribes and
CRM outcomes for some of them, each lead's events in order:

    python bench/nurture_mix.py --leads 500 --out var/nurture-mix.jsonl
    python bench/consumer_bench.py --service nurture --events var/nurture-mix.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import uuid
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.events import (  # noqa: E402
    Contact,
    Event,
    LeadConverted,
    LeadEngaged,
    LeadScored,
    LeadUnsubscribed,
    encode,
    new_event,
)


def scored(lead_id: str, grade: str, *, newsletter: bool, rescored: bool) -> LeadScored:
    now = datetime.now(UTC)
    hot = grade == "hot"
    return LeadScored(
        lead_id=lead_id,
        score=80.0 if hot else 30.0 if grade == "warm" else 10.0,
        fit=5.0,
        engagement=5.0,
        grade=grade,  # type: ignore[arg-type]
        sales_ready=hot,
        became_sales_ready=hot and rescored,
        model_version="bench",
        cause_event_id=str(uuid.uuid4()),
        cause_type="leadflow.lead.engaged.v1" if rescored else "leadflow.lead.captured.v1",
        channel="organic_search",
        form_id="newsletter" if newsletter else "guide-download",
        form_type="newsletter" if newsletter else "download",
        contact=Contact(
            email=f"mix.{lead_id[:12]}@example.org",
            first_name="Ada",
            last_name="Lovelace",
            company="Analytical Engines",
            country="GB",
        ),
        marketing_consent=True,
        double_opt_in=newsletter,
        captured_at=now,
        scored_at=now,
    )


def lead_events(rng: random.Random) -> list[Event]:
    """One lead's events, in order."""
    lead_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    kind = rng.choices(["cold", "warm", "hot", "newsletter"], [40, 30, 20, 10])[0]
    newsletter = kind == "newsletter"
    grade = "cold" if newsletter else kind
    events: list[Event] = [scored(lead_id, grade, newsletter=newsletter, rescored=False)]
    if grade != "hot":
        if rng.random() < 0.5:
            events.append(LeadEngaged(lead_id=lead_id, kind="open", occurred_at=now))
        if rng.random() < 0.3:
            events.append(LeadEngaged(lead_id=lead_id, kind="click", occurred_at=now))
            warmer = "hot" if rng.random() < 0.3 else "warm"
            events.append(scored(lead_id, warmer, newsletter=newsletter, rescored=True))
        if rng.random() < 0.1:
            events.append(LeadEngaged(lead_id=lead_id, kind="reply", occurred_at=now))
        if rng.random() < 0.05:
            events.append(LeadUnsubscribed(lead_id=lead_id, method="one_click", occurred_at=now))
    if rng.random() < 0.05:
        events.append(
            LeadConverted(
                lead_id=lead_id, value=Decimal("100"), outcome_id=str(uuid.uuid4()), occurred_at=now
            )
        )
    return events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    pending = [lead_events(rng) for _ in range(args.leads)]
    offsets: Counter[str] = Counter()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w") as out:
        # Leads interleave; each lead's events keep their order (one partition).
        while pending:
            events = rng.choice(pending)
            event = events.pop(0)
            if not events:
                pending.remove(events)
            key, value, headers = encode(new_event(event, "leadflow/bench"))
            line: dict[str, Any] = {
                "topic": event.TOPIC,
                "partition": 0,
                "offset": offsets[event.TOPIC],
                "key": key.decode() if key else None,
                "value": value.decode(),
                "headers": [[k, v.decode()] for k, v in headers],
            }
            offsets[event.TOPIC] += 1
            out.write(json.dumps(line) + "\n")
    print(f"{sum(offsets.values())} events of {args.leads} leads: {dict(offsets)}")


if __name__ == "__main__":
    main()
