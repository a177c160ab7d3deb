"""Ad-platform and vendor lead sources: pure parsing and verification, plus retrieval clients.

Each platform module turns a raw webhook request into :class:`InboundLead` values or
raises :class:`SourceError` carrying the HTTP status the route should answer. Platforms
that only send ids (Meta, LinkedIn) have a small async client that raises
:class:`RetrievalError` with ``retryable`` set for the retrieval queue.
"""

from services.capture.sources.common import (
    STANDARD_FIELDS,
    InboundLead,
    RetrievalError,
    SourceError,
    secrets_equal,
)

__all__ = [
    "STANDARD_FIELDS",
    "InboundLead",
    "RetrievalError",
    "SourceError",
    "secrets_equal",
]
