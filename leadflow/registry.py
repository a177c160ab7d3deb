"""Where each service's app factory, tables, migrations and config loader live."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI

import services
from shared.config import RawConfig
from shared.settings import SERVICES, Settings

SERVICES_DIR = Path(services.__file__).parent


def app_factory(service: str) -> Callable[[Settings], FastAPI]:
    """The service's `create_app`."""
    return importlib.import_module(f"services.{service}.app").create_app  # type: ignore[no-any-return]


def metadata(service: str) -> sa.MetaData:
    """The service's tables."""
    return importlib.import_module(f"services.{service}.store").metadata  # type: ignore[no-any-return]


def migrations_dir(service: str) -> Path:
    return SERVICES_DIR / service / "migrations"


async def migrate(settings: Settings, service: str) -> None:
    """Create or upgrade the service's tables (its own SQLite file or PostgreSQL schema)."""
    from shared.db.engine import Database
    from shared.db.migrate import upgrade

    db = Database(
        settings.database_url_for(service), service=service, schema=settings.schema_for(service)
    )
    try:
        await upgrade(db, migrations_dir(service))
    finally:
        await db.dispose()


def config_loader(service: str) -> Callable[[RawConfig], Any]:
    """The function validating the service's config sections."""
    return importlib.import_module(f"services.{service}.settings").load  # type: ignore[no-any-return]


def check(name: str) -> str:
    if name not in SERVICES:
        raise ValueError(f"unknown service {name!r} (one of {', '.join(SERVICES)})")
    return name
