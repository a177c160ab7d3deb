"""Producer and admin clients built from settings."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from shared.events.topics import all_topics
from shared.settings import Settings

log = logging.getLogger(__name__)


def make_producer(settings: Settings, client_id: str) -> AIOKafkaProducer:
    """A producer that waits for all in-sync replicas (acks=all).

    Idempotence is a setting: Apache Kafka supports it, the embedded broker
    does not implement InitProducerId. Without it, retries may duplicate a
    record; consumers dedupe by event id (the inbox), so effects stay once.
    """
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=settings.kafka_enable_idempotence,
        linger_ms=2,
        request_timeout_ms=10_000,
        retry_backoff_ms=200,
    )


async def create_topics(settings: Settings, topics: list[str] | None = None) -> list[str]:
    """Create leadflow's topics (and their DLQs); returns the ones that were created."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id="leadflow-admin",
        request_timeout_ms=10_000,
    )
    await admin.start()
    created: list[str] = []
    try:
        existing = set(await admin.list_topics())
        wanted = [t for t in (topics or all_topics()) if t not in existing]
        for topic in wanted:
            try:
                response = await admin.create_topics(
                    [NewTopic(topic, settings.kafka_partitions, settings.kafka_replication_factor)]
                )
            except TopicAlreadyExistsError:
                continue
            errors = [e for e in getattr(response, "topic_errors", []) if e[1] not in (0, 36)]
            if errors:
                raise RuntimeError(f"could not create topic {topic}: {errors}")
            created.append(topic)
    finally:
        await admin.close()
    return created


async def broker_reachable(settings: Settings, timeout: float = 2.0) -> bool:
    """True when the bootstrap broker answers a metadata request."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=int(timeout * 1000)
    )
    try:
        await asyncio.wait_for(admin.start(), timeout)
        await asyncio.wait_for(admin.list_topics(), timeout)
        return True
    except Exception:  # any failure means "not reachable" for a readiness probe
        return False
    finally:
        try:
            await admin.close()
        except Exception:
            log.debug("admin close failed", exc_info=True)
