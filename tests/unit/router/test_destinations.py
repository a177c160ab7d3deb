"""Destination helpers: HTTP error handling, Retry-After, mappings, signatures, file dedupe."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from services.capture.sources.signed import verify
from services.router.destinations.base import (
    DELIVERED,
    FAILED,
    RETRY,
    Destination,
    Item,
    render_mapping,
    result_of,
    retry_after_seconds,
)
from services.router.destinations.file import FileSink
from services.router.destinations.hubspot import HubSpot
from services.router.destinations.salesforce import duplicate_ids
from services.router.destinations.webhook import sign
from services.router.settings import FileDestination, HubSpotDestination

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def test_retry_after_reads_seconds_and_http_dates():
    assert retry_after_seconds("3") == 3
    assert retry_after_seconds(format_datetime(NOW + timedelta(seconds=30)), NOW) == 30
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


@pytest.mark.parametrize(
    ("status", "headers", "expected", "attempt", "pause"),
    [
        (429, {"Retry-After": "7"}, RETRY, False, 7.0),
        (503, {}, RETRY, True, None),
        (408, {}, RETRY, True, None),
        (400, {}, FAILED, True, None),
        (404, {}, FAILED, True, None),
    ],
)
def test_errors_are_retried_or_permanent(status, headers, expected, attempt, pause):
    destination = Destination("x", None)
    outcome = result_of(httpx.Response(status, headers=headers, text="nope"), destination)
    assert outcome is not None
    assert (outcome.status, outcome.counts_as_attempt) == (expected, attempt)
    assert (destination.pause.seconds if destination.pause else None) == pause
    assert outcome.error == f"HTTP {status}: nope"
    assert result_of(httpx.Response(201), destination) is None


def test_mapping_renders_templates_and_drops_empty_values():
    context = {"lead": {"email": "a@example.com", "company": None}, "rep": {"owner_id": ""}}
    mapped = render_mapping(
        {
            "email": "{{ lead.email }}",
            "company": "{{ lead.company }}",
            "owner": "{{ rep.owner_id }}",
            "stage": "salesqualifiedlead",
            "score": 5,
            "nested": {"domain": "{{ lead.email.split('@')[1] }}"},
        },
        context,
    )
    assert mapped == {
        "email": "a@example.com",
        "stage": "salesqualifiedlead",
        "score": 5,
        "nested": {"domain": "example.com"},
    }


def test_the_webhook_signature_is_the_one_capture_accepts():
    body = b'{"lead_id":"L1"}'
    now = int(time.time())
    verify(body, sign(body, "k", now), ["k"], now)  # raises when it does not match


def test_salesforce_duplicate_errors_name_the_matched_records():
    body = [
        {
            "errorCode": "DUPLICATES_DETECTED",
            "duplicateResult": {
                "matchResults": [{"matchRecords": [{"record": {"Id": "00Q1"}}]}],
            },
        }
    ]
    assert duplicate_ids(body) == ["00Q1"]
    assert duplicate_ids([{"errorCode": "REQUIRED_FIELD_MISSING"}]) == []


def test_hubspot_partial_failures_fail_only_their_leads():
    hubspot = HubSpot("hubspot", HubSpotDestination(type="hubspot"), httpx.AsyncClient())
    response = httpx.Response(
        207,
        json={
            "status": "COMPLETE",
            "results": [{"id": "11", "properties": {"email": "ok@example.com"}}],
            "errors": [
                {"message": "Property values were not valid", "context": {"ids": ["bad@x.io"]}}
            ],
        },
    )
    outcomes = hubspot._read(response, {"ok@example.com": ["d1"], "bad@x.io": ["d2"]})
    assert (outcomes["d1"].status, outcomes["d1"].external_id) == (DELIVERED, "11")
    assert outcomes["d2"].status == FAILED and "not valid" in (outcomes["d2"].error or "")


async def test_file_sink_writes_a_reclaimed_delivery_only_once(tmp_path):
    sink = FileSink("file", FileDestination(type="file", path=str(tmp_path / "out.jsonl")))
    item = Item("d1", "L1", "assigned", 1, {"lead_id": "L1", "delivery_id": "d1"})
    retry = Item("d1", "L1", "assigned", 2, {"lead_id": "L1", "delivery_id": "d1"})
    other = Item("d2", "L2", "assigned", 2, {"lead_id": "L2", "delivery_id": "d2"})
    await sink.deliver_batch([item])
    outcomes = await sink.deliver_batch([retry, other])
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert [o.status for o in outcomes] == [DELIVERED, DELIVERED]
    assert lines == ['{"lead_id":"L1","delivery_id":"d1"}', '{"lead_id":"L2","delivery_id":"d2"}']
