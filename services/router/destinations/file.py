"""The file destination: one JSON line per routed lead, appended, flushed and fsync'd.

Exactly once per delivery: the line carries the delivery id, and the row is
marked delivered in the transaction that follows a successful write. When the
process dies between the write and that commit, the lease of the claim runs out,
another claim takes the row (its claim count is above 1) and first looks for
the delivery id in the file: found means already written, so it is only marked.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from pathlib import Path

import orjson

from services.router.destinations.base import DeliveryResult, Destination, Item, transport_error
from services.router.settings import FileDestination


class FileSink(Destination):
    kind = "file"
    max_batch = 100

    def __init__(self, name: str, config: FileDestination) -> None:
        super().__init__(name, config)
        self.path = Path(config.path)

    async def deliver_batch(self, items: list[Item]) -> list[DeliveryResult]:
        try:
            return await asyncio.to_thread(self._append, items)
        except OSError as exc:
            return [transport_error(exc) for _ in items]

    def _append(self, items: list[Item]) -> list[DeliveryResult]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            # Another replica (or `leadflow up` restarting) may append to the same file.
            fcntl.flock(fd, fcntl.LOCK_EX)
            recheck = [item.delivery_id for item in items if item.claims > 1]
            written = self._already_written(recheck) if recheck else set()
            lines = b"".join(
                orjson.dumps(item.document) + b"\n"
                for item in items
                if item.delivery_id not in written
            )
            if lines:
                os.write(fd, lines)
                os.fsync(fd)
        finally:
            os.close(fd)
        return [DeliveryResult.delivered(external_id=None) for _ in items]

    def _already_written(self, delivery_ids: list[str]) -> set[str]:
        wanted = {f'"delivery_id":"{d}"'.encode(): d for d in delivery_ids}
        found: set[str] = set()
        with self.path.open("rb") as handle:
            for line in handle:
                for needle, delivery_id in wanted.items():
                    if needle in line:
                        found.add(delivery_id)
        return found
