"""Alembic environment of the nurture service."""

from services.nurture.store import metadata
from shared.db.migrate import run_env

run_env(metadata)
