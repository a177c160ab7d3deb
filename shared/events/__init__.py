"""Event contracts and their CloudEvents 1.0 Kafka binary-mode mapping."""

from shared.events.contracts import (
    EVENT_TYPES,
    Attribution,
    Contact,
    Event,
    LeadCaptured,
    LeadConverted,
    LeadDeliveryFailed,
    LeadDisqualified,
    LeadEngaged,
    LeadErased,
    LeadRouted,
    LeadScored,
    LeadUnsubscribed,
    ScoreReason,
)
from shared.events.envelope import Envelope, InvalidEnvelope, decode, encode, new_event
from shared.events.topics import DLQ_SUFFIX, TOPICS, dlq_topic

__all__ = [
    "DLQ_SUFFIX",
    "EVENT_TYPES",
    "TOPICS",
    "Attribution",
    "Contact",
    "Envelope",
    "Event",
    "InvalidEnvelope",
    "LeadCaptured",
    "LeadConverted",
    "LeadDeliveryFailed",
    "LeadDisqualified",
    "LeadEngaged",
    "LeadErased",
    "LeadRouted",
    "LeadScored",
    "LeadUnsubscribed",
    "ScoreReason",
    "decode",
    "dlq_topic",
    "encode",
    "new_event",
]
