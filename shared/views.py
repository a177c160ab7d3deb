"""Rows as the services hand them on: some of a row's fields, by name, in a given order.

A JSON view (`send_view`, `delivery_view`...) or a value built from a stored row takes
most fields over as they are; `fields_of` copies those, so a view spells out only the
fields it renames or converts.
"""

from __future__ import annotations

from typing import Any


def fields_of(row: Any, *names: str) -> dict[str, Any]:
    """`{name: row.name}` for each of `names`, in that order."""
    return {name: getattr(row, name) for name in names}
