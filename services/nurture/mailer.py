"""Hands messages to the SMTP relay (aiosmtplib) and says how each attempt ended.

- sent: the relay accepted the message (250 after DATA);
- retry: a temporary failure: 4xx replies, connection refused or dropped, timeouts,
  and our own configuration problems (authentication, a refused sender), which an
  operator fixes without the mail being lost;
- bounced: the relay refused the recipient with a 5xx (unknown mailbox): the address
  is suppressed and never tried again;
- failed: a 5xx for the message itself (size, content): retrying cannot help.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Literal

import aiosmtplib

from services.nurture.config import SmtpConfig
from services.nurture.rendering import to_bytes
from shared import metrics
from shared.logging import redact

log = logging.getLogger(__name__)

Status = Literal["sent", "retry", "bounced", "failed"]


@dataclass(frozen=True)
class Outgoing:
    """One message to hand over."""

    send_id: str
    message: EmailMessage
    recipient: str


@dataclass(frozen=True)
class SendResult:
    """How the relay answered for one message (see the module for each status)."""

    status: Status
    error: str | None = None
    code: int | None = None


class Mailer:
    """An SMTP client for one relay; one connection per batch of messages."""

    def __init__(self, config: SmtpConfig, sender: str) -> None:
        self.config = config
        self.envelope_from = parseaddr(sender)[1]

    def _client(self) -> aiosmtplib.SMTP:
        config = self.config
        return aiosmtplib.SMTP(
            hostname=config.host,
            port=config.port,
            username=config.username or None,
            password=config.password or None,
            use_tls=config.security == "tls",
            # False, not None: None would upgrade whenever the server offers STARTTLS.
            start_tls=config.security == "starttls",
            validate_certs=config.validate_certs,
            timeout=config.timeout_seconds,
        )

    async def send_all(self, batch: Sequence[Outgoing]) -> dict[str, SendResult]:
        """Try every message once; a dropped connection is reopened for the rest."""
        results: dict[str, SendResult] = {}
        client: aiosmtplib.SMTP | None = None
        try:
            for item in batch:
                if client is None:
                    client = self._client()
                    try:
                        await client.connect()
                    except Exception as exc:
                        error = _describe(exc)
                        log.warning("SMTP relay unavailable: %s", error)
                        for rest in batch:
                            results.setdefault(rest.send_id, _classify(exc, error))
                        client = None
                        return results
                started = time.perf_counter()
                try:
                    await client.sendmail(
                        self.envelope_from, [item.recipient], to_bytes(item.message)
                    )
                except Exception as exc:
                    results[item.send_id] = _classify(exc, _describe(exc))
                    if not _connection_usable(exc):
                        await _close(client)
                        client = None
                    continue
                finally:
                    metrics.nurture_send_duration_seconds.observe(time.perf_counter() - started)
                results[item.send_id] = SendResult("sent")
        finally:
            if client is not None:
                await _close(client)
        return results


async def _close(client: aiosmtplib.SMTP) -> None:
    try:
        if client.is_connected:
            await client.quit()
    except Exception:
        client.close()


def _describe(exc: BaseException) -> str:
    """The error, for logs and the send's `last_error`: relays quote the address, we do not."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        refused = exc.recipients[0]
        text = f"SMTP {refused.code}: {refused.message}"
    elif isinstance(exc, aiosmtplib.SMTPResponseException):
        text = f"SMTP {exc.code}: {exc.message}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return redact(text)[:300]


def _classify(exc: BaseException, error: str) -> SendResult:
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        code = exc.recipients[0].code if exc.recipients else 0
        return SendResult("bounced" if 500 <= code < 600 else "retry", error, code)
    if isinstance(exc, aiosmtplib.SMTPSenderRefused | aiosmtplib.SMTPAuthenticationError):
        return SendResult("retry", error, exc.code)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return SendResult("failed" if 500 <= exc.code < 600 else "retry", error, exc.code)
    return SendResult("retry", error)


def _connection_usable(exc: BaseException) -> bool:
    # After a refused recipient or message the session goes on (RSET); after a drop it does not.
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
        return False
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return True
    return isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code != 421
