"""Every leadflow metric, declared once.

Names carry the `leadflow_` prefix and base units; labels are bounded
(service, topic, handler, outcome, channel, destination, grade...) and never
carry a lead id, an email, a phone number or a URL. See docs/metrics.md.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, Info

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SPEED_TO_LEAD_BUCKETS = (
    0.1,
    0.25,
    0.5,
    1,
    2,
    5,
    10,
    30,
    60,
    120,
    300,
    600,
    1800,
    3600,
    14400,
    86400,
)

build_info = Info("leadflow_build", "Version of the running leadflow service.", ["service"])

# RED per endpoint: `route` is the route template (/v1/forms/{form_id}), never the raw path.
http_requests_total = Counter(
    "leadflow_http_requests_total",
    "HTTP requests answered, by route template and status code.",
    ["service", "method", "route", "status"],
)
http_request_duration_seconds = Histogram(
    "leadflow_http_request_duration_seconds",
    "Time to answer an HTTP request.",
    ["service", "method", "route"],
    buckets=LATENCY_BUCKETS,
)

http_requests_shed_total = Counter(
    "leadflow_http_requests_shed_total",
    "Requests refused with 503 because too many were in flight (load shedding).",
    ["method"],
)

# Capture.
leads_captured_total = Counter(
    "leadflow_leads_captured_total",
    "Submissions accepted and stored, by source, channel and whether they created a new lead.",
    ["source", "channel", "outcome"],
)
leads_rejected_total = Counter(
    "leadflow_leads_rejected_total",
    "Submissions refused with a 4xx, by source and reason.",
    ["source", "reason"],
)
leads_quarantined_total = Counter(
    "leadflow_leads_quarantined_total",
    "Submissions stored but held back as suspected spam, by source and reason.",
    ["source", "reason"],
)
leads_deduplicated_total = Counter(
    "leadflow_leads_deduplicated_total",
    "Submissions recognised as retries (idempotency key or platform id) and not stored again.",
    ["source"],
)
webhook_retrievals_total = Counter(
    "leadflow_webhook_retrievals_total",
    "Lead retrievals from an ad platform's API, by platform and outcome.",
    ["platform", "outcome"],
)
webhook_retrievals_pending = Gauge(
    "leadflow_webhook_retrievals_pending",
    "Ad-platform leads acknowledged but not yet retrieved.",
    ["platform"],
)

# Scoring.
leads_scored_total = Counter(
    "leadflow_leads_scored_total", "Scores computed, by resulting grade.", ["grade"]
)
grade_transitions_total = Counter(
    "leadflow_grade_transitions_total",
    "Grade changes of a lead, by previous and new grade.",
    ["from_grade", "to_grade"],
)
sales_ready_total = Counter(
    "leadflow_sales_ready_total", "Leads that became sales-ready, by channel.", ["channel"]
)

# Nurture.
nurture_enrollments_total = Counter(
    "leadflow_nurture_enrollments_total", "Leads enrolled in a nurture sequence.", ["sequence"]
)
nurture_emails_total = Counter(
    "leadflow_nurture_emails_total",
    "Nurture emails, by sequence and outcome (sent, retried, failed, suppressed).",
    ["sequence", "outcome"],
)
nurture_engagement_total = Counter(
    "leadflow_nurture_engagement_total",
    "Tracked engagement: open, click, reply, unsubscribe, confirm.",
    ["kind"],
)

# Router.
leads_routed_total = Counter(
    "leadflow_leads_routed_total",
    "Leads assigned to a rep, by rule and channel.",
    ["rule", "channel"],
)
deliveries_total = Counter(
    "leadflow_deliveries_total",
    "Delivery attempts to destinations, by destination and outcome (delivered, retried, failed).",
    ["destination", "outcome"],
)
delivery_duration_seconds = Histogram(
    "leadflow_delivery_duration_seconds",
    "Time of one delivery attempt to a destination.",
    ["destination"],
    buckets=LATENCY_BUCKETS,
)
delivery_queue_depth = Gauge(
    "leadflow_delivery_queue_depth",
    "Deliveries waiting (pending or retrying), by destination.",
    ["destination"],
)
speed_to_lead_seconds = Histogram(
    "leadflow_speed_to_lead_seconds",
    "Time from capture to a routing milestone (assigned, delivered, acknowledged).",
    ["stage"],
    buckets=SPEED_TO_LEAD_BUCKETS,
)
sla_breaches_total = Counter(
    "leadflow_sla_breaches_total",
    "Assignments not acknowledged within the speed-to-lead SLA.",
    ["rule"],
)
outcomes_total = Counter(
    "leadflow_outcomes_total", "Closed-loop outcomes received, by kind.", ["kind"]
)

# Event plumbing (every service).
events_consumed_total = Counter(
    "leadflow_events_consumed_total",
    "Events taken from Kafka, by handler and outcome "
    "(handled, duplicate, ignored, retried, dead_lettered).",
    ["service", "topic", "handler", "outcome"],
)
handler_duration_seconds = Histogram(
    "leadflow_handler_duration_seconds",
    "Time spent in one event handler.",
    ["service", "handler"],
    buckets=LATENCY_BUCKETS,
)
consumer_batch_size = Histogram(
    "leadflow_consumer_batch_size",
    "Records per consumed batch.",
    ["service"],
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000),
)
consumer_lag = Gauge(
    "leadflow_consumer_lag",
    "Records between the group's position and the partition's end offset.",
    ["group", "topic", "partition"],
)
dlq_messages_total = Counter(
    "leadflow_dlq_messages_total",
    "Events sent to a dead-letter topic, by source topic and handler.",
    ["topic", "handler"],
)
outbox_published_total = Counter(
    "leadflow_outbox_published_total",
    "Events published from the outbox, by service and topic.",
    ["service", "topic"],
)
outbox_backlog = Gauge("leadflow_outbox_backlog", "Outbox rows not yet published.", ["service"])
outbox_oldest_age_seconds = Gauge(
    "leadflow_outbox_oldest_age_seconds",
    "Age of the oldest unpublished outbox row (0 when empty).",
    ["service"],
)
outbox_publish_failures_total = Counter(
    "leadflow_outbox_publish_failures_total",
    "Failed attempts to publish an outbox batch to Kafka.",
    ["service"],
)

# Nurture: the send queue.
nurture_exits_total = Counter(
    "leadflow_nurture_exits_total",
    "Leads that left a nurture sequence before its end, by sequence and reason.",
    ["sequence", "reason"],
)
nurture_send_duration_seconds = Histogram(
    "leadflow_nurture_send_duration_seconds",
    "Time to hand one email to the SMTP relay.",
    buckets=LATENCY_BUCKETS,
)
nurture_sends_due = Gauge(
    "leadflow_nurture_sends_due",
    "Emails due now and not yet taken by the scheduler.",
)

# Scoring: time to score one lead.
scoring_duration_seconds = Histogram(
    "leadflow_scoring_duration_seconds",
    "Time the scoring model takes to score one lead, by cause "
    "(captured, engagement, decay, replay).",
    ["cause"],
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1),
)
