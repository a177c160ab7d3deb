"""Alembic environment of the router service."""

from services.router.store import metadata
from shared.db.migrate import run_env

run_env(metadata)
