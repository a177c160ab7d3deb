"""Reading the rows of a table: by a key, or the newest that match some filters."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession


async def row_by_key(
    session: AsyncSession, key: sa.Column[Any], value: Any, *, for_update: bool = False
) -> sa.Row[Any] | None:
    """The row of `key`'s table whose `key` is `value` (locked until commit if asked)."""
    query = sa.select(key.table).where(key == value)
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).first()


async def rows_by_key(
    session: AsyncSession, key: sa.Column[Any], value: Any, *order_by: sa.ColumnElement[Any]
) -> list[sa.Row[Any]]:
    """The rows of `key`'s table whose `key` is `value`, in `order_by` order."""
    query = sa.select(key.table).where(key == value).order_by(*order_by)
    return list((await session.execute(query)).all())


async def newest_rows(
    session: AsyncSession, created: sa.Column[Any], limit: int, **filters: Any
) -> list[sa.Row[Any]]:
    """At most `limit` rows of `created`'s table, newest `created` first.

    Only rows whose column equals each filter's value; a filter left empty
    (None or "") does not filter.
    """
    table = created.table
    query = (
        sa.select(table)
        .where(*(table.c[name] == value for name, value in filters.items() if value))
        .order_by(created.desc())
        .limit(limit)
    )
    return list((await session.execute(query)).all())
