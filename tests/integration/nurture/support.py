"""Helpers for nurture's integration tests: a real SMTP server, configs, scored leads."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import yaml
from aiosmtpd.controller import Controller

from services.nurture import send_queue, store
from services.nurture.handlers import handle_lead_scored
from services.nurture.mailer import Mailer
from services.nurture.messagebus import bus
from services.nurture.rendering import Templates, Tracking
from services.nurture.scheduler import Scheduler
from services.nurture.settings import NurtureConfig
from shared.clock import FixedClock
from shared.db.engine import Database
from shared.db.uow import UnitOfWork
from shared.events import Contact, LeadScored, new_event
from shared.messagebus import MessageBus

SECRET = "test-secret-key"
PUBLIC = "https://nurture.example.com"
T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)  # a Wednesday, 10:00 in London


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MailServer:
    """A real SMTP server (aiosmtpd) that keeps what it accepts and refuses on demand.

    - `tempfail = n`: the next n messages get `451` after DATA;
    - `bounce`: addresses refused with `550` at RCPT;
    - `stop()` / `start()`: connections refused meanwhile (same port).
    """

    def __init__(self, delay: float = 0.0) -> None:
        self.port = free_port()
        self.messages: list[EmailMessage] = []
        self.raw: list[bytes] = []
        self.tempfail = 0
        self.refused = 0
        self.bounce: set[str] = set()
        self.delay = delay
        self._lock = threading.Lock()
        self._controller: Controller | None = None
        self.start()

    def start(self) -> None:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address.lower() in self.bounce:
            return f"550 5.1.1 <{address}>: no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)  # a slow relay
        with self._lock:
            if self.tempfail > 0:
                self.tempfail -= 1
                self.refused += 1
                return "451 4.3.0 Try again later"
            raw = envelope.original_content or envelope.content
            self.raw.append(raw)
            message = message_from_bytes(raw, policy=policy.default)
            assert isinstance(message, EmailMessage)
            self.messages.append(message)
        return "250 2.0.0 Message accepted"

    def to(self, address: str) -> list[EmailMessage]:
        """Messages for one recipient, in arrival order."""
        return [m for m in self.messages if address in str(m["To"])]


def html_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())  # type: ignore[attr-defined]


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())  # type: ignore[attr-defined]


def tracked_links(message: EmailMessage, kind: str = "click") -> list[str]:
    """Tracking URLs in the HTML part, in order."""
    return re.findall(rf"{re.escape(PUBLIC)}/v1/track/{kind}/[A-Za-z0-9_\-.]+", html_of(message))


def token_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


def nurture_section(smtp_port: int, **overrides: Any) -> dict[str, Any]:
    """A nurture section with one three-step cold sequence (delays 0, 1 h, 1 d)."""
    section: dict[str, Any] = {
        "public_url": PUBLIC,
        "from": "Example Co <hello@example.com>",
        "organization": "Example Co",
        "postal_address": "1 Test Street",
        "smtp": {"host": "127.0.0.1", "port": smtp_port, "timeout_seconds": 5},
        "delivery": {"backoff_seconds": 60, "backoff_max_seconds": 600, "poll_seconds": 0.2},
        "sequences": {
            "welcome": {
                "entry": {"grades": ["cold", "warm"]},
                "steps": [
                    {
                        "id": "guide",
                        "delay": 0,
                        "template": "guide",
                        "subject": "Your guide, {{ lead.first_name }}",
                        "links": {
                            "guide": "https://content.example.com/guide.pdf",
                            "article": "https://content.example.com/blog/speed?a=1&b=2",
                        },
                    },
                    {
                        "id": "video",
                        "delay": "1h",
                        "template": "video",
                        "subject": "Step two",
                        "links": {"video": "https://content.example.com/video"},
                    },
                    {
                        "id": "podcast",
                        "delay": "1d",
                        "template": "podcast",
                        "subject": "Step three",
                        "links": {
                            "podcast": "https://content.example.com/podcast",
                            "demo": "https://content.example.com/demo",
                        },
                    },
                ],
                "reentry": {"policy": "always", "cooldown": "1h"},
            }
        },
    }
    for key, value in overrides.items():
        section[key] = value
    return section


def config_of(section: dict[str, Any]) -> NurtureConfig:
    return NurtureConfig.model_validate(section)


def write_config(directory: Path, section: dict[str, Any]) -> Path:
    """A config file with only a `nurture` section."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"leadflow-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump({"nurture": section}, sort_keys=False))
    return path


def scored(
    *,
    lead_id: str | None = None,
    email: str | None = None,
    grade: str = "cold",
    consent: bool = True,
    double_opt_in: bool = False,
    sales_ready: bool = False,
    country: str | None = "GB",
    first_name: str = "Ada",
    company: str | None = "Analytical Engines",
    form_id: str = "guide-download",
    cause_type: str = "leadflow.lead.captured.v1",
) -> LeadScored:
    """A lead.scored event for a (by default) cold lead with marketing consent."""
    lead_id = lead_id or str(uuid.uuid4())
    now = datetime.now(UTC)
    return LeadScored(
        lead_id=lead_id,
        score=80 if sales_ready else 10,
        fit=5,
        engagement=5,
        grade="hot" if sales_ready else grade,  # type: ignore[arg-type]
        sales_ready=sales_ready,
        became_sales_ready=sales_ready,
        model_version="test",
        cause_event_id=str(uuid.uuid4()),
        cause_type=cause_type,
        channel="organic_search",
        form_id=form_id,
        form_type="download",
        contact=Contact(
            email=email or f"lead-{lead_id[:8]}@example.org",
            first_name=first_name,
            last_name="Lovelace",
            company=company,
            country=country,
        ),
        marketing_consent=consent,
        double_opt_in=double_opt_in,
        captured_at=now,
        scored_at=now,
    )


class Clock(FixedClock):
    """The shared fixed clock, at T0 unless told, moved by any `timedelta` keywords."""

    def __init__(self, now: datetime = T0) -> None:
        super().__init__(now)

    def advance(self, seconds: float = 0, **delta: float) -> datetime:  # type: ignore[override]
        self.now += timedelta(seconds=seconds, **delta)
        return self.now


@contextlib.asynccontextmanager
async def nurture_uows(settings: Any) -> AsyncIterator[Callable[[], UnitOfWork]]:
    """Units of work on a migrated nurture database, without starting the service."""
    from tests.conftest import migrate_service

    await migrate_service(settings, "nurture")
    db = Database(
        settings.database_url_for("nurture"),
        service="nurture",
        schema=settings.schema_for("nurture"),
    )
    try:
        yield lambda: UnitOfWork(db, store.outbox, store.inbox, "leadflow/nurture")
    finally:
        await db.dispose()


def scheduler_for(uows: Callable[[], UnitOfWork], config: NurtureConfig, clock: Clock) -> Scheduler:
    return Scheduler(
        uows,
        config,
        Templates(config),
        Tracking(PUBLIC, SECRET),
        Mailer(config.smtp, config.sender),
        clock,
    )


def bus_for(uows: Callable[[], UnitOfWork], config: NurtureConfig, clock: Clock) -> MessageBus:
    """Nurture's bus on these units of work, at the clock's time."""
    return bus(uows, config, Templates(config), Tracking(PUBLIC, SECRET), clock=clock)


async def deliver_scored(
    uows: Callable[[], UnitOfWork], config: NurtureConfig, event: LeadScored, now: datetime
) -> None:
    """Run the lead.scored handler at `now` and commit, as the consumer would."""
    async with uows() as uow:
        envelope = new_event(event, "leadflow/test")
        await handle_lead_scored(envelope, uow, config=config, clock=lambda: now)
        await uow.commit()


async def outbox_events(uows: Callable[[], UnitOfWork], lead_id: str) -> list[dict[str, Any]]:
    """Events the nurture outbox holds for a lead: type and body."""
    import orjson
    import sqlalchemy as sa

    async with uows() as uow:
        rows = await uow.session.execute(
            sa.select(store.outbox).where(store.outbox.c.key == lead_id).order_by(store.outbox.c.id)
        )
        out = []
        for row in rows.all():
            headers = dict(row.headers)
            out.append({"type": headers["ce_type"], **orjson.loads(row.value)})
        return out


async def sends_of(uows: Callable[[], UnitOfWork], lead_id: str) -> list[Any]:
    async with uows() as uow:
        return await send_queue.lead_sends(uow.session, lead_id)


async def runs_of(uows: Callable[[], UnitOfWork], lead_id: str) -> list[Any]:
    async with uows() as uow:
        return await store.lead_enrollments(uow.session, lead_id)


async def publish(bootstrap: str, events: list[Any]) -> None:
    """Publish events as CloudEvents, as scoring, capture and the router would."""
    from aiokafka import AIOKafkaProducer

    from shared.events import encode

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for data in events:
            key, value, headers = encode(new_event(data, "leadflow/test"))
            await producer.send_and_wait(data.TOPIC, value=value, key=key, headers=headers)
    finally:
        await producer.stop()


async def topic_events(bootstrap: str, topic: str, lead_id: str, expected: int) -> list[Any]:
    """Event bodies on `topic` about one lead (reads until `expected` of them arrived)."""
    from shared.events import decode
    from tests.conftest import consume_all, eventually

    found: list[Any] = []

    async def enough() -> bool:
        records = await consume_all(bootstrap, topic, 10_000, timeout=0.5)
        envelopes = [decode(r.value, r.headers) for r in records]
        found[:] = [e.data for e in envelopes if e is not None and e.data.lead_id == lead_id]
        return len(found) >= expected

    await eventually(enough, timeout=15, interval=0.2)
    return found


async def settled(service: Any) -> None:
    """Wait until the service's consumers have joined their group."""
    from tests.conftest import eventually

    await eventually(
        lambda: service.runtime.consumers and all(c.running for c in service.runtime.consumers),
        timeout=15,
    )


def path_of(url: str) -> str:
    """The path of a link in an email, for the in-process HTTP client."""
    assert url.startswith(PUBLIC), url
    return url[len(PUBLIC) :]
