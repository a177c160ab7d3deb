"""Alembic environment of the insights service."""

from services.insights.store import metadata
from shared.db.migrate import run_env

run_env(metadata)
