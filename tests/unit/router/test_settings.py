"""The example config's routing section, and config mistakes named with their line."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.router.settings import FileDestination, WebhookDestination, load
from shared.config import ConfigError, load_config

EXAMPLE = Path(__file__).resolve().parents[3] / "leadflow.example.yaml"


def test_example_routes_to_the_file_and_a_webhook_that_follows_the_environment():
    quiet = load(load_config(EXAMPLE, environ={}))
    assert quiet.destination_enabled("file") and not quiet.destination_enabled("webhook")
    file = quiet.destinations["file"]
    assert isinstance(file, FileDestination) and file.path == "var/routed.jsonl"
    assert list(quiet.reps) == ["rep-alice", "rep-bob"]
    assert quiet.rules[0].strategy == "round_robin"

    loud = load(
        load_config(
            EXAMPLE,
            environ={
                "LEADFLOW_ROUTER_WEBHOOK_URL": "http://127.0.0.1:9999/hook",
                "LEADFLOW_VAR_DIR": "/tmp/lf",
            },
        )
    )
    webhook = loud.destinations["webhook"]
    assert loud.destination_enabled("webhook")
    assert isinstance(webhook, WebhookDestination) and webhook.secret == "dev-webhook-secret"
    assert loud.destinations["file"].path == "/tmp/lf/routed.jsonl"  # type: ignore[union-attr]


def test_mistakes_name_their_line(tmp_path):
    shape = tmp_path / "shape.yaml"
    shape.write_text(
        "routing:\n"
        "  reps:\n"
        "    a: {timezone: Mars/Olympus}\n"
        "  destinations:\n"
        "    crm: {type: hubspot, colour: red}\n"
    )
    names = tmp_path / "names.yaml"
    names.write_text(
        "routing:\n"
        "  reps:\n"
        "    a: {}\n"
        "  rules:\n"
        "    - id: r\n"
        "      reps: [a, zed]\n"
        "      destinations: [crm]\n"
    )
    with pytest.raises(ConfigError) as shape_error:
        load(load_config(shape, environ={}))
    with pytest.raises(ConfigError) as names_error:
        load(load_config(names, environ={}))
    assert [(p.line, p.path) for p in shape_error.value.problems] == [
        (3, "routing.reps.a.timezone"),
        (5, "routing.destinations.crm.hubspot.colour"),
    ]
    assert [str(p) for p in names_error.value.problems] == [
        f"{names}:6: routing.rules.0.reps.1: unknown rep 'zed'",
        f"{names}:7: routing.rules.0.destinations.0: unknown destination 'crm'",
    ]
