"""A broader event mix for insights' consumer, in bench/consumer_bench.py's format.

The e2e dump holds hot leads only (captured, scored, routed). This writes a seeded
synthetic mix with what the rest of the funnel sends insights: repeat touches,
rescores, engagement, unsubscribes, failed deliveries, CRM outcomes (won more than
once, disqualified) and erasures; leads' events interleave over time as in a
real run, each lead's in order.

    python bench/insights_mix.py --leads 500 --out var/insights-mix.jsonl
    python bench/consumer_bench.py --service insights --events var/insights-mix.jsonl
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import sys
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.events import (  # noqa: E402
    Attribution,
    Contact,
    Envelope,
    Event,
    LeadCaptured,
    LeadConverted,
    LeadDeliveryFailed,
    LeadDisqualified,
    LeadEngaged,
    LeadErased,
    LeadRouted,
    LeadScored,
    LeadUnsubscribed,
    encode,
)

CHANNELS = ("google_ads", "facebook_ads", "linkedin_ads", "organic", "referral", "direct")


def lead_events(rng: random.Random, start: datetime) -> list[tuple[datetime, Event]]:
    """One lead's events with the times they happen."""
    lead_id = str(uuid.uuid4())
    channel = rng.choice(CHANNELS)
    captured = start
    out: list[tuple[datetime, Event]] = []

    def capture(at: datetime, via: str | None) -> None:
        touch = via or channel
        out.append(
            (
                at,
                LeadCaptured(
                    lead_id=lead_id,
                    submission_id=str(uuid.uuid4()),
                    is_new_lead=via is None,
                    touch_number=1 if via is None else 2,
                    source="form",
                    channel=touch,
                    attribution=Attribution(channel=touch, source="form"),
                    first_touch=Attribution(channel=channel, source="form"),
                    contact=Contact(),
                    marketing_consent=True,
                    is_test=rng.random() < 0.02,
                    cost=Decimal("12.50") if rng.random() < 0.1 else None,
                    captured_at=captured,
                ),
            )
        )

    def score(at: datetime, grade: str, ready: bool) -> None:
        out.append(
            (
                at,
                LeadScored(
                    lead_id=lead_id,
                    score=80 if ready else 30,
                    fit=20,
                    engagement=10,
                    grade=grade,  # type: ignore[arg-type]
                    sales_ready=ready,
                    became_sales_ready=ready,
                    model_version="bench",
                    cause_event_id=str(uuid.uuid4()),
                    cause_type=LeadCaptured.TYPE,
                    channel=channel,
                    contact=Contact(),
                    captured_at=captured,
                    scored_at=at,
                ),
            )
        )

    second = timedelta(seconds=1)
    capture(captured, None)
    grade = rng.choice(("hot", "warm", "warm", "cold", "cold"))
    score(captured + second, grade, grade == "hot")
    t = captured + 5 * second
    if grade != "hot":
        for _ in range(rng.randint(0, 3)):
            t += rng.randint(30, 600) * second
            out.append(
                (t, LeadEngaged(lead_id=lead_id, kind="click", sequence_id="s", occurred_at=t))
            )
        if rng.random() < 0.3:
            t += 60 * second
            capture(t, rng.choice(CHANNELS))
            score(t + second, "hot", True)
            grade = "hot"
        elif rng.random() < 0.15:
            t += 60 * second
            out.append((t, LeadUnsubscribed(lead_id=lead_id, method="one_click", occurred_at=t)))
    if grade == "hot":
        t += rng.randint(2, 60) * second
        out.append(
            (
                t,
                LeadRouted(
                    lead_id=lead_id,
                    assignment_id=str(uuid.uuid4()),
                    rep_id="rep-a",
                    rule_id="default",
                    channel=channel,
                    captured_at=captured,
                    routed_at=t,
                ),
            )
        )
        if rng.random() < 0.05:
            out.append(
                (
                    t,
                    LeadDeliveryFailed(
                        lead_id=lead_id,
                        destination="crm",
                        error="HTTP 500",
                        attempts=5,
                        failed_at=t,
                    ),
                )
            )
        outcome = rng.random()
        for n in range(1 if outcome < 0.25 else 2 if outcome < 0.3 else 0):
            t += 3600 * second
            out.append(
                (
                    t,
                    LeadConverted(
                        lead_id=lead_id,
                        value=Decimal(rng.randint(100, 5000)),
                        currency="USD",
                        outcome_id=f"deal-{n}",
                        occurred_at=t,
                    ),
                )
            )
        if 0.3 <= outcome < 0.45:
            t += 3600 * second
            out.append(
                (
                    t,
                    LeadDisqualified(
                        lead_id=lead_id, reason="no budget", outcome_id="dq", occurred_at=t
                    ),
                )
            )
    if rng.random() < 0.03:
        t += 7200 * second
        out.append((t, LeadErased(lead_id=lead_id, erased_at=t)))
    return out


def generate(leads: int, seed: int) -> list[dict[str, object]]:
    rng = random.Random(seed)
    start = datetime(2024, 11, 1, 9, tzinfo=UTC)
    timeline: list[tuple[datetime, int, Event]] = []
    for n in range(leads):
        for i, (at, event) in enumerate(lead_events(rng, start + timedelta(seconds=n * 2))):
            heapq.heappush(timeline, (at, n * 1000 + i, event))
    offsets: dict[str, int] = {}
    rows = []
    while timeline:
        _, _, event = heapq.heappop(timeline)
        envelope: Envelope[Event] = Envelope(data=event, source="leadflow/bench")
        key, value, headers = encode(envelope)
        offset = offsets.get(envelope.topic, 0)
        offsets[envelope.topic] = offset + 1
        rows.append(
            {
                "topic": envelope.topic,
                "partition": 0,
                "offset": offset,
                "key": key.decode(),
                "value": value.decode(),
                "headers": [[k, v.decode()] for k, v in headers],
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rows = generate(args.leads, args.seed)
    args.out.write_text("".join(json.dumps(row) + "\n" for row in rows))
    print(f"{len(rows)} records of {args.leads} leads → {args.out}")


if __name__ == "__main__":
    main()
