"""The outbox relay: publishes committed outbox rows to Kafka, in order, then deletes them.

A `PollingWorker`, woken by the unit of work right after a commit (latency of
milliseconds), and by a poll timer as a fallback (a commit from another replica, a
publish that failed, retried with the worker's backoff). Rows go out in id order,
so one lead's events keep their order; with several replicas on PostgreSQL a
transaction-scoped advisory lock lets only one relay of a service publish at a time.

On SQLite (one writer at a time, so ids are assigned in commit order) the relay
reads past the last id it sent without taking the write lock, and deletes what
Kafka has in one write every second or every full batch, not once per batch sent:
a busy service's relay would otherwise cost a write transaction and a disk sync
for every few events. A crash before that delete sends those rows again, which the
consumers' inboxes make harmless (at-least-once, as always).

Records are partitioned here as the producer would (murmur2 of the key), once per key
while a topic keeps its partition count. The file is over 300 lines because the
relay's rounds, its SQLite and PostgreSQL roads and that partitioning share one state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import struct
import time
from collections.abc import Callable
from typing import Any

import orjson
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer

from shared import metrics
from shared.clock import utc_now
from shared.db.engine import Database, try_leader_lock
from shared.runtime.worker import PollingWorker

log = logging.getLogger(__name__)

# Backlog gauges are scraped every 15-30 s: counting the outbox on every idle poll would
# be most of an idle service's CPU.
GAUGE_INTERVAL_SECONDS = 5.0
# SQLite: how long rows already in Kafka may stay in the outbox before they are deleted.
DELETE_INTERVAL_SECONDS = 1.0
# Keys whose partition is remembered (a consumer's relay sees the same leads again and
# again); the memory is cleared when it holds more.
PARTITION_CACHE_SIZE = 50_000


class OutboxRelay(PollingWorker):
    """Moves outbox rows to Kafka with acks=all; at-least-once, per-lead order kept."""

    name = "outbox relay"

    def __init__(
        self,
        db: Database,
        outbox: sa.Table,
        producer_factory: Callable[[], AIOKafkaProducer],
        *,
        service: str,
        poll_seconds: float = 1.0,
        batch_size: int = 500,
        publish_timeout: float = 15.0,
        linger_seconds: float = 0.05,
    ) -> None:
        super().__init__()
        # Every commit that wrote outbox rows sets the database's signal: it is this
        # worker's wake-up.
        self._wake = db.outbox_signal
        self._stop = asyncio.Event()
        self.db = db
        self.outbox = outbox
        self.producer_factory = producer_factory
        self.producer: AIOKafkaProducer | None = None
        self.service = service
        self.poll_seconds = poll_seconds
        self.batch_size = batch_size
        self.publish_timeout = publish_timeout
        self.linger_seconds = linger_seconds
        self._task: asyncio.Task[None] | None = None
        # SQLite: the highest id sent, and the ids sent but not yet deleted.
        self._sent_through = 0
        self._sent_ids: list[int] = []
        self._deleted_at = time.monotonic()
        self.last_error: str | None = None
        self._gauges_at = 0.0
        # (topic, key) -> partition, and the partition count it was computed for.
        self._partitions: dict[tuple[str, bytes], int] = {}
        self._partition_counts: dict[str, int] = {}
        # Built once: an idle relay runs these every poll, a busy one every batch. The
        # headers are read as their JSON text, decoded here (`orjson`) for less than the
        # column type's own decoding costs.
        columns = [
            sa.type_coerce(c, sa.String()).label(c.name) if c.name == "headers" else c
            for c in outbox.columns
        ]
        self._select_next = sa.select(*columns).order_by(outbox.c.id).limit(batch_size)
        self._select_after = (
            sa.select(*columns)
            .where(outbox.c.id > sa.bindparam("after"))
            .order_by(outbox.c.id)
            .limit(batch_size)
        )
        self._delete_sent = sa.delete(outbox).where(
            outbox.c.id.in_(sa.bindparam("ids", expanding=True))
        )
        self._select_any = sa.select(outbox.c.id).limit(1)
        self._select_backlog = sa.select(sa.func.count(), sa.func.min(outbox.c.created_at)).where(
            outbox.c.id > sa.bindparam("after")
        )

    async def ensure_producer(self) -> AIOKafkaProducer:
        """The started producer; a broker down at start-up is retried on the next call."""
        if self.producer is None:
            producer = self.producer_factory()
            try:
                await asyncio.wait_for(producer.start(), self.publish_timeout)
            except BaseException:
                with contextlib.suppress(Exception):
                    await producer.stop()
                raise
            self.producer = producer
        return self.producer

    def start(self) -> None:
        self._task = asyncio.create_task(self._serve(), name=f"{self.service}-outbox-relay")

    async def stop(self) -> None:
        """Publish what is ready (briefly), then stop."""
        self._stop.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=self.publish_timeout + 2)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._task
        if self.producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.producer.stop(), 10)

    async def round(self) -> float:
        """Publish one batch; at once again if it was full, else after the next commit
        (or `poll_seconds`)."""
        try:
            published = await self.publish_batch()
        except Exception:
            await self._refresh_gauges(force=True)
            raise
        self.last_error = None
        await self._refresh_gauges()
        if published >= self.batch_size:
            return 0.0  # more is waiting
        if published:
            # Under load, let the next batch gather for a moment (50 ms): fewer, larger
            # batches leave the database to the writers and the process's CPU to its
            # requests. The first event after a quiet spell goes at once.
            await asyncio.sleep(self.linger_seconds)
        return self.poll_seconds

    def round_failed(self, exc: Exception) -> None:
        metrics.outbox_publish_failures_total.labels(self.service).inc()
        self.last_error = f"{type(exc).__name__}: {exc}"
        log.warning("outbox publish failed, retrying in %.1fs: %s", self.retry_in, self.last_error)

    async def _serve(self) -> None:
        await self.run(self._stop)
        if self.last_error is not None:
            return  # the broker is away: what is left goes at the next start
        # Stopping: send what is ready until a batch comes back empty (on SQLite that
        # also deletes the rows already sent).
        try:
            while await self.publish_batch():
                pass
        except Exception as exc:
            metrics.outbox_publish_failures_total.labels(self.service).inc()
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("outbox publish failed while stopping: %s", self.last_error)

    async def publish_batch(self) -> int:
        """Publish up to one batch of outbox rows; returns how many were published."""
        if self.db.is_sqlite:
            # Never hold SQLite's write lock while waiting on Kafka: capture must keep
            # committing submissions while the broker is slow or down.
            async with self.db.engine.connect() as connection:
                reader = await connection.execution_options(leadflow_read_only=True)
                result = await reader.execute(self._select_after, {"after": self._sent_through})
                rows = list(result.all())
            if not rows:
                await self.delete_sent()
                return 0
            await asyncio.wait_for(self._send_in_order(rows), self.publish_timeout)
            self._sent_through = rows[-1].id
            self._sent_ids.extend(row.id for row in rows)
            if (
                len(self._sent_ids) >= self.batch_size
                or time.monotonic() - self._deleted_at >= DELETE_INTERVAL_SECONDS
            ):
                await self.delete_sent()
        else:
            async with self.db.session() as session, session.begin():
                if not await try_leader_lock(session, self.db.dialect, f"outbox:{self.service}"):
                    return 0
                rows = await self._next_rows(session)
                if not rows:
                    return 0
                await asyncio.wait_for(self._send_in_order(rows), self.publish_timeout)
                await self._delete(session, rows)
        for row in rows:
            metrics.outbox_published_total.labels(self.service, row.topic).inc()
        return len(rows)

    async def delete_sent(self) -> None:
        """Delete the rows Kafka already has (SQLite), in one write transaction.

        SQLite gives a new row the id after the largest one present: once the outbox is
        empty, the next row may take an id the relay has already passed, so the relay's
        position goes back to the start. The check runs in the deleting transaction,
        which no other writer can interleave with.
        """
        self._deleted_at = time.monotonic()
        if not self._sent_ids:
            return
        ids, self._sent_ids = self._sent_ids, []
        try:
            async with self.db.write_gate(), self.db.session() as session, session.begin():
                for start in range(0, len(ids), 500):
                    await session.execute(self._delete_sent, {"ids": ids[start : start + 500]})
                emptied = (await session.execute(self._select_any)).first() is None
        except BaseException:
            self._sent_ids = ids + self._sent_ids  # in Kafka already: delete them next time
            raise
        if emptied:
            self._sent_through = 0

    async def _next_rows(self, session: Any) -> list[Any]:
        return list((await session.execute(self._select_next)).all())

    async def _delete(self, session: Any, rows: list[Any]) -> None:
        await session.execute(self._delete_sent, {"ids": [r.id for r in rows]})

    async def _send_in_order(self, rows: list[Any]) -> None:
        """Send `rows` as one record batch per partition; return once Kafka has them all.

        Records are partitioned as the producer itself would (murmur2 of the key), so one
        lead's events share a partition whoever publishes them, and appended in id order,
        so they keep their order. Awaiting every batch's delivery before the rows are
        deleted makes a row leave the outbox only once Kafka has it (acks=all). A batch
        builder per partition spares the per-record bookkeeping of `send()` (a future,
        a partitioner call and an accumulator lookup per record).
        """
        producer = await self.ensure_producer()
        partitions: dict[str, list[int]] = {}
        groups: dict[tuple[str, int], list[tuple[bytes | None, bytes, list[Any]]]] = {}
        for row in rows:
            topic = row.topic
            all_partitions = partitions.get(topic)
            if all_partitions is None:
                all_partitions = partitions[topic] = sorted(await producer.partitions_for(topic))
            key = row.key.encode() if row.key else None
            partition = self._partition(topic, key, all_partitions)
            headers = row.headers
            decoded = orjson.loads(headers) if isinstance(headers, str) else headers
            record = (key, row.value, [(k, v.encode()) for k, v in decoded])
            groups.setdefault((topic, partition), []).append(record)
        deliveries = []
        for (topic, partition), records in groups.items():
            batch = producer.create_batch()
            for key, value, headers in records:
                if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                    deliveries.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None, headers=headers)
            deliveries.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*deliveries)

    def _partition(self, topic: str, key: bytes | None, all_partitions: list[int]) -> int:
        """The partition the producer's default partitioner would pick: murmur2 of the
        key (a random one without a key), remembered per key while the topic keeps
        its partition count."""
        if key is None:
            return random.choice(all_partitions)
        count = len(all_partitions)
        if self._partition_counts.get(topic) != count:
            self._partition_counts[topic] = count
            self._partitions = {k: p for k, p in self._partitions.items() if k[0] != topic}
        cached = self._partitions.get((topic, key))
        if cached is not None:
            return cached
        if len(self._partitions) >= PARTITION_CACHE_SIZE:
            self._partitions.clear()
        partition = all_partitions[(murmur2(key) & 0x7FFFFFFF) % count]
        self._partitions[(topic, key)] = partition
        return partition

    async def _refresh_gauges(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._gauges_at < GAUGE_INTERVAL_SECONDS:
            return
        self._gauges_at = now
        try:
            async with self.db.write_gate(), self.db.session() as session:
                count, oldest = (
                    await session.execute(self._select_backlog, {"after": self._sent_through})
                ).one()
        except Exception:
            log.debug("outbox gauge refresh failed", exc_info=True)
            return
        metrics.outbox_backlog.labels(self.service).set(count or 0)
        age = (utc_now() - oldest).total_seconds() if oldest else 0.0
        metrics.outbox_oldest_age_seconds.labels(self.service).set(max(age, 0.0))


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of `data` (what the Java client and aiokafka partition by),
    reading the input as little-endian 32-bit words at once: twice as fast as
    `aiokafka.partitioner.murmur2`, with the same result."""
    m = 0x5BD1E995
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    words = length >> 2
    for k in struct.unpack_from(f"<{words}I", data):
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    extra = length & 3
    if extra:
        tail = words << 2
        if extra == 3:
            h ^= data[tail + 2] << 16
        if extra >= 2:
            h ^= data[tail + 1] << 8
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    return h ^ (h >> 15)
