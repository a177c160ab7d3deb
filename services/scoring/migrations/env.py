"""Alembic environment of the scoring service."""

from services.scoring.store import metadata
from shared.db.migrate import run_env

run_env(metadata)
