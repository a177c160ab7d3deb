"""Development sinks for `leadflow up`: an SMTP server that writes each mail to an .eml file."""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
import uuid
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


class EmlWriter:
    """aiosmtpd handler: every message becomes var/mail/<time>-<id>.eml."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        name = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}.eml"
        temporary = self.directory / f".{name}.tmp"
        temporary.write_bytes(envelope.original_content or envelope.content)
        temporary.rename(self.directory / name)
        return "250 Message accepted for delivery"


def run_smtp_sink(port: int, directory: Path) -> None:
    controller = Controller(EmlWriter(directory), hostname="127.0.0.1", port=port)
    controller.start()
    stop = asyncio.Event()
    loop = asyncio.new_event_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        loop.run_until_complete(stop.wait())
    finally:
        controller.stop()
        loop.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="leadflow development sinks")
    parser.add_argument("kind", choices=["smtp"])
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--dir", type=Path, default=Path("var/mail"))
    args = parser.parse_args()
    run_smtp_sink(args.port, args.dir)


if __name__ == "__main__":
    main()
