"""Alembic environment of the capture service."""

from services.capture.store import metadata
from shared.db.migrate import run_env

run_env(metadata)
