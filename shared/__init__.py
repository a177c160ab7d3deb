"""Plumbing shared by every leadflow service: contracts, Kafka, database, settings, metrics."""
