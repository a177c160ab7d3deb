"""The scoring path's cheap pieces give what the plain ones would: event ids are version-4
UUIDs and never repeat across a fork, the event log keeps the body an event was read
from, a batch's timings land in the buckets `observe` would put them in."""

from __future__ import annotations

import os
import random
import uuid

from prometheus_client import CollectorRegistry, Histogram

from services.scoring.domain import event_payload
from services.scoring.published import _event_id
from shared.events import Envelope, decode, encode, new_event
from shared.kafka.handling import observe_all
from tests.unit.scoring.support import captured


def test_event_ids_are_distinct_version_4_uuids():
    ids = [_event_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_a_forked_child_draws_fresh_event_ids():
    _event_id()  # the parent has unread bits buffered
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write, _event_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 100).decode()
    os.waitpid(pid, 0)
    assert child != _event_id()


def test_the_log_keeps_the_body_a_record_carried():
    _key, value, headers = encode(new_event(captured(), "test"))
    envelope = decode(value, headers)
    assert envelope is not None and envelope.body == value
    assert event_payload(envelope).encode() == value
    # Built in memory (no record): the contract's own encoding.
    fresh = new_event(envelope.data, "test")
    assert fresh.body is None and event_payload(fresh).encode() == value
    # The body is not part of the event's identity.
    assert fresh == Envelope(envelope.data, "test", fresh.id, fresh.time, body=b"{}")


def _samples(registry: CollectorRegistry, name: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (s.name.removeprefix(name), s.labels, s.value)
        for metric in registry.collect()
        if metric.name == name
        for s in metric.samples
        if not s.name.endswith("_created")
    ]


def test_timings_observed_in_one_go_land_where_one_by_one_would():
    registry = CollectorRegistry()
    together = Histogram("together", "t", registry=registry)
    apart = Histogram("apart", "a", registry=registry)
    rng = random.Random(7)
    values = [
        rng.choice([0.0, 0.0001, 0.005, 0.01, 0.25, 2.5, 100.0])
        * rng.choice([1, 1 + 1e-9, 1 - 1e-9])
        for _ in range(500)
    ]
    observe_all(together, values)
    for value in values:
        apart.observe(value)
    assert _samples(registry, "together") == _samples(registry, "apart")
    observe_all(together, values[:2])  # few values: observed one by one
    assert registry.get_sample_value("together_count") == 502
