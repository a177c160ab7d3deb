"""What the hostile-input tests share: the services to attack, a config whose secrets the
tests know, credentials and signatures for every door, and "nothing was stored" checks."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition

from leadflow import registry
from services.router.outcomes import hubspot_signature
from shared.events.topics import TOPICS, dlq_topic
from shared.settings import SERVICES as ALL_SERVICES
from tests.integration.capture.support import (
    VENDOR_SECRET,
    linkedin_signature,
    meta_signature,
    tiktok_signature,
    vendor_signature,
    write_config,
)

ROOT = Path(__file__).resolve().parents[2]

#: Every service whose app exists: services still being built join once their app.py lands.
SERVICES = tuple(s for s in ALL_SERVICES if (ROOT / "services" / s / "app.py").exists())

ADMIN_TOKEN = "hostile-admin-token-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
HUBSPOT_SECRET = "hostile-hubspot-secret"
BASE_URL = "http://testserver"
SHORT_WINDOW = "short-window-vendor"
SHORT_WINDOW_SECONDS = 2


def hostile_config(directory: Path) -> Path:
    """The example config with known platform secrets, a HubSpot secret and slow retrieval.

    Secrets are the capture integration tests' (their signing functions apply); a second
    vendor has a two-second replay window.

    Retrieval backs off for minutes so notifications the tests post are never fetched
    (from a dead port) while a test runs.
    """
    path = write_config(directory)
    data = yaml.safe_load(path.read_text())
    platforms = data["forms"]["platforms"]
    platforms["retrieval"].update(
        initial_backoff_seconds=300, max_backoff_seconds=600, poll_seconds=60
    )
    # A vendor whose replay window closes within a test.
    platforms["webhooks"][SHORT_WINDOW] = {
        "secrets": [VENDOR_SECRET],
        "tolerance_seconds": SHORT_WINDOW_SECONDS,
        "form": "guide-download",
    }
    data.setdefault("routing", {})["outcomes"] = {"hubspot_client_secret": HUBSPOT_SECRET}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def hostile_settings(settings_factory: Any, broker: Any, tmp_path: Path, backend: str) -> Any:
    """Settings with the admin token and the hostile config, on `backend`."""
    return settings_factory(
        backend,
        kafka_bootstrap=broker.bootstrap,
        config=hostile_config(tmp_path),
        admin_token=ADMIN_TOKEN,
    )


async def create_api_key(runtime: Any, source: str = "hostile-vendor") -> str:
    """A fresh capture API key (the plain key, as the vendor would hold it)."""
    from services.capture import messagebus
    from services.capture.commands import CreateApiKey

    key: str = await messagebus.bus(runtime.db).handle(
        CreateApiKey(name="hostile", source=source, cost_per_lead=Decimal("1"))
    )
    return key


def signatures(method: str, url: str, body: bytes) -> dict[str, str]:
    """Valid signatures of `body` for every signed webhook, so the body parsers are reached."""
    stamp = str(int(time.time() * 1000))
    return {
        "X-Hub-Signature-256": meta_signature(body),
        "X-LI-Signature": linkedin_signature(body),
        "TikTok-Signature": tiktok_signature(body),
        "Leadflow-Signature": vendor_signature(body),
        "X-HubSpot-Signature-v3": hubspot_signature(HUBSPOT_SECRET, method, url, body, stamp),
        "X-HubSpot-Request-Timestamp": stamp,
    }


async def row_counts(runtime: Any, service: str) -> dict[str, int]:
    """Rows in each of the service's tables (state, inbox and outbox)."""
    counts: dict[str, int] = {}
    async with runtime.uow() as uow:
        for table in registry.metadata(service).sorted_tables:
            result = await uow.session.execute(sa.select(sa.func.count()).select_from(table))
            counts[table.name] = int(result.scalar_one())
    return counts


def error_problem(response: Any) -> str | None:
    """What is wrong with a 4xx/5xx answer's body, or None when it has the error shape."""
    kind = response.headers.get("content-type", "").split(";")[0].strip()
    if kind != "application/json":
        return f"content-type {kind!r}, not application/json"
    try:
        body = response.json()
    except ValueError:
        return "the body is not JSON"
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return 'no "error" object'
    if not isinstance(error.get("code"), str) or not error["code"]:
        return "error.code is missing"
    if not isinstance(error.get("message"), str) or not error["message"]:
        return "error.message is missing"
    if "field" in error and not isinstance(error["field"], str):
        return "error.field is not a string"
    return None


async def published(bootstrap: str) -> int:
    """Records on every leadflow topic and dead-letter topic so far (end offsets)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        partitions = [
            TopicPartition(topic, p)
            for topic in (*TOPICS, *(dlq_topic(t) for t in TOPICS))
            for p in consumer.partitions_for_topic(topic) or ()
        ]
        offsets = await consumer.end_offsets(partitions)
        return sum(offsets.values())
    finally:
        await consumer.stop()
