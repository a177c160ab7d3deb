"""Event contracts: the committed export is current, and the Kafka mapping round-trips."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.events import EVENT_TYPES, InvalidEnvelope, LeadErased, decode, encode
from shared.events.envelope import Envelope
from shared.events.export import render

EXPORT_DIR = Path(__file__).resolve().parents[2] / "docs" / "events"


def test_committed_export_matches_the_contracts():
    for name, content in render().items():
        committed = EXPORT_DIR / name
        assert committed.exists(), f"{name} is not exported: run `make schemas`"
        assert committed.read_bytes() == content, (
            f"{name} changed: a compatible change needs `make schemas`; a breaking one a new "
            "type version (.v2) and a new model"
        )


def test_every_type_is_versioned_and_names_its_topic():
    for event_type, model in EVENT_TYPES.items():
        assert event_type.startswith("leadflow.") and event_type.rsplit(".", 1)[1].startswith("v")
        assert model.TOPIC.startswith("leads.")
        assert model.model_config.get("frozen") is True


def test_binary_mode_round_trip_and_headers():
    envelope = Envelope(
        data=LeadErased(lead_id="lead-1", erased_at=datetime.now(UTC)), source="leadflow/capture"
    )
    key, value, headers = encode(envelope)
    names = dict(headers)
    assert key == b"lead-1"
    assert names["ce_type"] == b"leadflow.lead.erased.v1" and names["ce_subject"] == b"lead-1"
    assert names["content-type"] == b"application/json"
    assert json.loads(value)["lead_id"] == "lead-1"
    decoded = decode(value, headers)
    assert decoded is not None and decoded.id == envelope.id and decoded.data == envelope.data


def test_unknown_fields_are_ignored_and_unknown_types_skipped():
    envelope = Envelope(data=LeadErased(lead_id="x", erased_at=datetime.now(UTC)), source="t")
    _, value, headers = encode(envelope)
    body = json.loads(value) | {"added_in_a_later_minor_version": 1}
    assert decode(json.dumps(body).encode(), headers) is not None
    other = [(k, b"leadflow.lead.something.v9" if k == "ce_type" else v) for k, v in headers]
    assert decode(value, other) is None


@pytest.mark.parametrize(
    "value, headers",
    [
        (b"{}", [("ce_id", b"1")]),
        (
            b"not json",
            [
                ("ce_type", b"leadflow.lead.erased.v1"),
                ("ce_id", b"1"),
                ("ce_source", b"s"),
                ("ce_specversion", b"1.0"),
            ],
        ),
        (
            b'{"lead_id": "x"}',
            [
                ("ce_type", b"leadflow.lead.erased.v1"),
                ("ce_id", b"1"),
                ("ce_source", b"s"),
                ("ce_specversion", b"1.0"),
            ],
        ),
    ],
)
def test_unreadable_records_are_poison(value, headers):
    with pytest.raises(InvalidEnvelope):
        decode(value, headers)
