"""Kafka plumbing: producer, outbox relay, consumer runtime with inbox and DLQ, admin."""
