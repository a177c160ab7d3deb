"""Portable column types: the same models on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import TypeDecorator

# The one clock, under the name the database code has long used.
from shared.clock import utc_now as utcnow


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp; SQLite stores it naive, we give it back aware."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def JSONType() -> sa.types.TypeEngine[Any]:
    """JSON on SQLite, JSONB on PostgreSQL."""
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


class OrjsonJSON(TypeDecorator[Any]):
    """A JSON column as hot reads see it: `sa.type_coerce(column, OrjsonJSON())` decodes
    with orjson where the driver hands back text (SQLite; asyncpg decodes JSONB itself).
    Writes encode with orjson too, as `shared.db.bulk.Values.json` does."""

    impl = sa.JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.JSONB())
        return dialect.type_descriptor(sa.JSON())

    def bind_processor(self, dialect: sa.Dialect) -> Callable[[Any], str]:
        # As sa.JSON: None is the JSON null.
        def process(value: Any) -> str:
            return orjson.dumps(value).decode()

        return process

    def result_processor(self, dialect: sa.Dialect, coltype: object) -> Callable[[Any], Any] | None:
        if dialect.name == "postgresql":
            return None

        def process(value: Any) -> Any:
            return None if value is None else orjson.loads(value)

        return process


__all__ = ["JSONType", "OrjsonJSON", "UTCDateTime", "utcnow"]
