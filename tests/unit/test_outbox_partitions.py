"""The relay partitions records exactly as the producer's default partitioner does."""

from __future__ import annotations

import random
import uuid

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from shared.kafka.outbox import PARTITION_CACHE_SIZE, OutboxRelay, murmur2


def _relay() -> OutboxRelay:
    relay = OutboxRelay.__new__(OutboxRelay)
    relay._partitions = {}
    relay._partition_counts = {}
    return relay


def test_murmur2_is_kafkas_for_every_length():
    rng = random.Random(7)
    keys = [bytes(rng.randrange(256) for _ in range(n)) for n in range(70) for _ in range(20)]
    keys += [str(uuid.UUID(int=rng.getrandbits(128))).encode() for _ in range(500)]
    for key in keys:
        assert murmur2(key) == aiokafka_murmur2(key) & 0xFFFFFFFF, key


def test_partition_is_the_default_partitioners_cached_per_key_and_count():
    relay, default = _relay(), DefaultPartitioner()
    for count in (3, 3, 6, 1):
        partitions = list(range(count))
        for n in range(300):
            key = f"lead-{n}".encode()
            expected = default(key, partitions, partitions)
            assert relay._partition("leads.captured", key, partitions) == expected
            assert relay._partition("leads.captured", key, partitions) == expected  # cached
    assert relay._partition("t", None, [0, 1]) in (0, 1)


def test_the_partition_cache_stays_bounded():
    relay = _relay()
    for n in range(PARTITION_CACHE_SIZE + 10):
        relay._partition("t", n.to_bytes(8, "big"), [0, 1, 2])
    assert len(relay._partitions) <= PARTITION_CACHE_SIZE
