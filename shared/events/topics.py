"""Topic names. Key = lead_id on every topic."""

LEADS_CAPTURED = "leads.captured"
LEADS_ENGAGEMENT = "leads.engagement"
LEADS_SCORED = "leads.scored"
LEADS_ROUTED = "leads.routed"
LEADS_OUTCOMES = "leads.outcomes"
LEADS_ERASURE = "leads.erasure"

TOPICS: tuple[str, ...] = (
    LEADS_CAPTURED,
    LEADS_ENGAGEMENT,
    LEADS_SCORED,
    LEADS_ROUTED,
    LEADS_OUTCOMES,
    LEADS_ERASURE,
)
DLQ_SUFFIX = ".dlq"


def dlq_topic(topic: str) -> str:
    """The dead-letter topic of `topic`."""
    return topic + DLQ_SUFFIX


def all_topics() -> list[str]:
    """Every topic leadflow uses, dead-letter topics included."""
    return [*TOPICS, *(dlq_topic(t) for t in TOPICS)]
