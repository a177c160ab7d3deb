"""The console's leads page at a million leads: every search and page it offers, timed.

Fills insights' read model (the console's lead profiles and the funnel rows) with
`--leads` synthetic people over 90 days, 8 channels and three grades, on SQLite and on
PostgreSQL, then runs the leads page's own query (`search_leads`) for each kind of
search the page offers: the first page, a page deep into the list (keyset, after the
last row of page 200), a channel, a grade, a date range, an exact email, an email
prefix, a name prefix, a company prefix, a lead id. Each query runs `--repeat` times;
the median and the worst are reported, in milliseconds.

    python bench/console_bench.py [--leads 1000000] [--backends sqlite,postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.consumer_bench import settings_for  # noqa: E402
from leadflow import registry  # noqa: E402
from services.insights.console.store import LeadSearch, search_leads  # noqa: E402
from shared.db.bulk import Values  # noqa: E402
from shared.db.engine import Database  # noqa: E402
from shared.db.migrate import upgrade  # noqa: E402

CHANNELS = ("google_ads", "facebook_ads", "linkedin_ads", "tiktok_ads", "organic", "direct",
            "email", "referral")  # fmt: skip
GRADES = ("hot", "warm", "cold")
FIRST = ("ada", "grace", "alan", "edsger", "barbara", "donald", "margaret", "ken", "linus")
LAST = ("lovelace", "hopper", "turing", "dijkstra", "liskov", "knuth", "hamilton", "thompson")
COMPANIES = ("analytical", "engines", "bletchley", "eniac", "multics", "unix", "apollo")


def people(count: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    start = datetime(2026, 9, 1, tzinfo=UTC)
    rows = []
    for i in range(count):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        company = f"{rng.choice(COMPANIES)} {rng.randrange(100000)}"
        email = f"{first}.{last}.{i}@{company.replace(' ', '')}.example"
        rows.append(
            {
                "lead_id": uuid.UUID(int=rng.getrandbits(128)).hex,
                "email": email,
                "first_name": first.title(),
                "last_name": last.title(),
                "company": company.title(),
                "channel": rng.choice(CHANNELS),
                "grade": rng.choice(GRADES),
                "captured_at": start + timedelta(seconds=rng.randrange(90 * 86400)),
            }
        )
    return rows


async def fill(db: Database, rows: list[dict[str, Any]]) -> float:
    """Insert the profiles and funnel rows through the driver, 10,000 per statement."""
    values = Values(db.dialect)
    now = values.time(datetime.now(UTC))

    def marks(n: int) -> str:
        if db.dialect == "postgresql":
            return ", ".join(f"${i}" for i in range(1, n + 1))
        return ", ".join("?" * n)

    profile_sql = (
        "INSERT INTO console_leads (lead_id, email, email_lc, first_name, last_name, name_lc,"
        " company, company_lc, channel, channel_rank, captured_at, grade, updated_at)"
        f" VALUES ({marks(13)})"
    )
    funnel_sql = (
        "INSERT INTO leads (lead_id, channel, channel_rank, captured_at, is_test, grade,"
        f" updated_at) VALUES ({marks(7)})"
    )
    started = time.perf_counter()
    async with db.engine.begin() as conn:
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        for offset in range(0, len(rows), 10_000):
            chunk = rows[offset : offset + 10_000]
            profile_rows = [
                (
                    r["lead_id"],
                    r["email"],
                    r["email"].lower(),
                    r["first_name"],
                    r["last_name"],
                    f"{r['first_name']} {r['last_name']}".lower(),
                    r["company"],
                    r["company"].lower(),
                    r["channel"],
                    2,
                    values.time(r["captured_at"]),
                    r["grade"],
                    now,
                )
                for r in chunk
            ]
            funnel_rows = [
                (
                    r["lead_id"],
                    r["channel"],
                    2,
                    values.time(r["captured_at"]),
                    False,
                    r["grade"],
                    now,
                )
                for r in chunk
            ]
            await driver.executemany(profile_sql, profile_rows)
            await driver.executemany(funnel_sql, funnel_rows)
    async with db.engine.begin() as conn:
        await conn.execute(sa.text("ANALYZE"))
    return time.perf_counter() - started


def searches(rows: list[dict[str, Any]]) -> dict[str, LeadSearch]:
    sample = rows[len(rows) // 3]
    return {
        "first page, newest first": LeadSearch(),
        "first page, oldest first": LeadSearch(newest_first=False),
        "channel": LeadSearch(channel="linkedin_ads"),
        "grade": LeadSearch(grade="hot"),
        "date range (one week)": LeadSearch(
            since=datetime(2026, 10, 1, tzinfo=UTC), until=datetime(2026, 10, 8, tzinfo=UTC)
        ),
        "exact email": LeadSearch(q=sample["email"]),
        "email prefix": LeadSearch(q=sample["email"][:12]),
        "name prefix (common)": LeadSearch(q="grace h"),
        "company prefix": LeadSearch(q=sample["company"][:12].lower()),
        "lead id": LeadSearch(q=sample["lead_id"]),
    }


async def measure(backend: str, count: int, repeat: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmpdir:
        settings = settings_for(backend, Path(tmpdir))
        db = Database(
            settings.database_url_for("insights"),
            service="insights",
            schema=settings.schema_for("insights"),
        )
        try:
            await upgrade(db, registry.migrations_dir("insights"))
            rows = people(count)
            results: dict[str, Any] = {"leads": count, "fill_s": round(await fill(db, rows), 1)}
            queries = searches(rows)
            # A page deep into the list: the keyset of the last row of page 200.
            async with db.session() as session:
                after = None
                for _ in range(200):
                    page = await search_leads(session, LeadSearch(after=after))
                    last = page[49]
                    after = (last.captured_at, last.lead_id)
            queries["page 201 (keyset)"] = LeadSearch(after=after)
            for name, search in queries.items():
                timings = []
                found = 0
                async with db.session() as session:
                    for _ in range(repeat):
                        started = time.perf_counter()
                        found = len(await search_leads(session, search))
                        timings.append((time.perf_counter() - started) * 1000)
                results[name] = {
                    "rows": found,
                    "median_ms": round(statistics.median(timings), 2),
                    "max_ms": round(max(timings), 2),
                }
            return results
        finally:
            await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results: dict[str, Any] = {
        "command": f"python bench/console_bench.py --leads {args.leads} --repeat {args.repeat}"
    }
    for backend in args.backends.split(","):
        results[backend] = asyncio.run(measure(backend, args.leads, args.repeat))
        print(json.dumps({backend: results[backend]}, indent=2), flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
