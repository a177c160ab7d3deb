from datetime import UTC, datetime

import pytest

from services.capture.sources.common import (
    InboundLead,
    SourceError,
    build_fields,
    datetime_from_any,
    id_or_none,
    loads_exact,
    normalize_key,
    secrets_equal,
    slugify,
)


def test_loads_exact_keeps_64_bit_integers_as_exact_strings() -> None:
    parsed = loads_exact(b'{"id": 9007199254740993, "big": 120211234567890123}')
    assert parsed == {"id": "9007199254740993", "big": "120211234567890123"}


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"", "empty_body"),
        (b"   ", "empty_body"),
        (b'{"a": ', "malformed_json"),
        (b'{"a": NaN}', "malformed_json"),
        (b"\xff\xfe{}", "invalid_encoding"),
    ],
)
def test_loads_exact_rejects_bad_input_with_400(raw: bytes, code: str) -> None:
    with pytest.raises(SourceError) as caught:
        loads_exact(raw)
    assert caught.value.status == 400
    assert caught.value.code == code


def test_malformed_json_error_says_where_without_echoing_content() -> None:
    with pytest.raises(SourceError) as caught:
        loads_exact(b'{"email": "secret@example.com",}')
    assert "line 1 column" in caught.value.message
    assert "secret@example.com" not in caught.value.message
    assert caught.value.to_dict()["error"] == "malformed_json"


def test_float_ids_are_refused_naming_the_field() -> None:
    parsed = loads_exact(b'{"lead_id": 1.5e17}')
    with pytest.raises(SourceError) as caught:
        id_or_none(parsed["lead_id"], "lead_id")
    assert caught.value.field == "lead_id"
    assert caught.value.code == "invalid_id"


def test_secrets_equal_compares_text_and_bytes() -> None:
    assert secrets_equal("s3cr3t", b"s3cr3t")
    assert not secrets_equal("s3cr3t", "s3cr3T")
    assert not secrets_equal("", "x")


def test_build_fields_prefers_personal_contacts_and_keeps_work_ones() -> None:
    fields = build_fields(
        [
            ("work_email", "jo@corp.example"),
            ("email", "jo@home.example"),
            ("work_phone", "+4420 7946 0000"),
            ("first_name", " Jo "),
            ("last_name", "Bloggs"),
            ("budget", "10k"),
            ("budget", "20k"),
            ("empty", "   "),
        ]
    )
    assert fields == {
        "work_email": "jo@corp.example",
        "email": "jo@home.example",
        "work_phone": "+4420 7946 0000",
        "phone": "+4420 7946 0000",
        "first_name": "Jo",
        "last_name": "Bloggs",
        "full_name": "Jo Bloggs",
        "budget": "10k",
        "budget_2": "20k",
    }


def test_slugs_and_aliases() -> None:
    assert slugify("What's your budget?") == "whats_your_budget"
    assert normalize_key("Phone Number") == "phone"
    assert normalize_key("ZIP code") == "postal_code"
    assert normalize_key("favourite_colour") == "favourite_colour"


def test_datetimes_are_utc_aware() -> None:
    expected = datetime(2024, 9, 26, 12, 30, tzinfo=UTC)
    assert datetime_from_any("1727353800", "t") == expected
    assert datetime_from_any("1727353800000", "t") == expected
    assert datetime_from_any("2024-09-26T14:30:00+02:00", "t") == expected
    assert datetime_from_any("2024-09-26T12:30:00", "t") == expected
    with pytest.raises(SourceError) as caught:
        datetime_from_any("yesterday", "created_at")
    assert caught.value.field == "created_at"


def test_inbound_lead_is_frozen() -> None:
    lead = InboundLead(source="webhook", external_id="1", fields={"email": "a@b.example"})
    with pytest.raises(AttributeError):
        lead.external_id = "2"  # type: ignore[misc]
    assert lead.raw_platform == {}
