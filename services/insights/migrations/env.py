"""Alembic environment of the insights service."""

import services.insights.console.store  # noqa: F401  (the console's tables join the metadata)
from services.insights.store import metadata
from shared.db.migrate import run_env

run_env(metadata)
