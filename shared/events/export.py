"""Export the event contracts as JSON Schema files and one AsyncAPI 3.0 document.

`python -m shared.events.export docs/events` (or `make schemas`) writes them;
tests compare the committed files with a fresh export, so a contract cannot
change without the export (and, for a breaking change, a new type version).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson
import yaml

from shared.events.contracts import EVENT_TYPES
from shared.events.topics import TOPICS


def json_schemas() -> dict[str, dict[str, Any]]:
    """CloudEvents type → JSON Schema of its data."""
    schemas = {}
    for event_type, model in sorted(EVENT_TYPES.items()):
        schema = model.model_json_schema(mode="serialization")
        schema["$id"] = f"https://leadflow.dev/schemas/{event_type}.json"
        schema["x-cloudevents-type"] = event_type
        schema["x-kafka-topic"] = model.TOPIC
        schemas[event_type] = schema
    return schemas


def asyncapi() -> dict[str, Any]:
    """An AsyncAPI 3.0 document: channels = topics, messages = event types."""
    headers = {
        "type": "object",
        "required": ["ce_id", "ce_type", "ce_source", "ce_specversion", "ce_time", "ce_subject"],
        "properties": {
            "ce_id": {"type": "string", "description": "Event id (idempotency key)."},
            "ce_type": {"type": "string"},
            "ce_source": {"type": "string", "examples": ["leadflow/capture"]},
            "ce_specversion": {"const": "1.0"},
            "ce_time": {"type": "string", "format": "date-time"},
            "ce_subject": {"type": "string", "description": "The lead id (also the key)."},
            "content-type": {"const": "application/json"},
        },
    }
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for event_type, model in sorted(EVENT_TYPES.items()):
        name = event_type.removeprefix("leadflow.").replace(".", "_")
        messages[name] = {
            "name": event_type,
            "title": model.__name__,
            "summary": (model.__doc__ or "").strip().splitlines()[0],
            "contentType": "application/json",
            "headers": headers,
            "payload": {"$ref": f"./{event_type}.json"},
            "bindings": {"kafka": {"key": {"type": "string", "description": "lead_id"}}},
        }
    for topic in TOPICS:
        topic_messages = {
            name: {"$ref": f"#/components/messages/{name}"}
            for name, message in messages.items()
            if topic == EVENT_TYPES[message["name"]].TOPIC
        }
        channels[topic] = {"address": topic, "messages": topic_messages}
        operations[f"publish_{topic.replace('.', '_')}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{topic}"},
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "leadflow events",
            "version": "1.0.0",
            "description": "CloudEvents 1.0 in Kafka binary mode; key = lead_id.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def render() -> dict[str, bytes]:
    """File name → content of the whole export."""
    files = {
        f"{t}.json": orjson.dumps(s, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
        for t, s in json_schemas().items()
    }
    files["asyncapi.yaml"] = yaml.safe_dump(asyncapi(), sort_keys=False).encode()
    return files


def main(target: str) -> None:
    out = Path(target)
    out.mkdir(parents=True, exist_ok=True)
    for name, content in render().items():
        (out / name).write_bytes(content)
    print(f"wrote {len(render())} files to {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/events")
