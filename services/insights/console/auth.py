"""Who may use the console: users, password hashes, signed session cookies, CSRF.

- Users: `admin` with the admin token (`LEADFLOW_ADMIN_TOKEN`) or the console
  password (`LEADFLOW_CONSOLE_PASSWORD`, which `leadflow up` sets), and the users of
  `LEADFLOW_CONSOLE_USERS` (`name:scrypt$...` pairs, comma-separated; make a hash
  with `python -m services.insights.console.auth`).
- The session is a cookie signed with HMAC-SHA256 under a key derived from
  `LEADFLOW_SECRET_KEY`: user, CSRF token and expiry; SameSite=Strict, HttpOnly.
- Every form carries the session's CSRF token; a POST without it, or sent from
  another origin (Origin / Sec-Fetch-Site), is refused with 403.
- After 5 failed sign-ins of a user name, or from a client address, within 5 minutes,
  the next ones are answered 429 with Retry-After (`LoginThrottle`: this process's
  memory, so each insights replica counts on its own).
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import math
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.clock import Clock, utc_now

COOKIE = "leadflow_console"
LOGIN_COOKIE = "leadflow_console_login"  # the login form's CSRF token, before a session
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


class ConsoleSettings(BaseSettings):
    """The console's `LEADFLOW_*` settings."""

    model_config = SettingsConfigDict(env_prefix="LEADFLOW_", extra="ignore")

    console_users: SecretStr = Field(
        default=SecretStr(""), description="`name:scrypt$...` pairs, comma-separated."
    )
    console_password: SecretStr = Field(
        default=SecretStr(""), description="A password of the `admin` user (besides the token)."
    )
    console_session_hours: float = Field(default=12, gt=0, le=24 * 30)
    capture_url: str = "http://127.0.0.1:8001"
    scoring_url: str = "http://127.0.0.1:8002"
    nurture_url: str = "http://127.0.0.1:8003"
    router_url: str = "http://127.0.0.1:8004"
    console_service_timeout: float = Field(default=3.0, gt=0)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, salt: bytes | None = None) -> str:
    """`scrypt$n$r$p$salt$hash` (stdlib scrypt)."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32
    )
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """True when `password` matches an encoded hash; False for any malformed hash."""
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt" or int(n) > 2**20:
            return False
        computed = hashlib.scrypt(
            password.encode(),
            salt=_unb64(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(_unb64(digest)),
            maxmem=256 * 1024 * 1024,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(computed, _unb64(digest))


def parse_users(text: str) -> dict[str, str]:
    """`alice:scrypt$...,bob:scrypt$...` → {name: hash}."""
    users: dict[str, str] = {}
    for item in text.replace("\n", ",").split(","):
        name, sep, encoded = item.strip().partition(":")
        if sep and name.strip() and encoded.strip():
            users[name.strip()] = encoded.strip()
    return users


class Authenticator:
    """Checks a name and password against the configured users."""

    def __init__(self, admin_token: str, console: ConsoleSettings, env: str) -> None:
        self._admin_secrets = [
            s.encode() for s in (admin_token, console.console_password.get_secret_value()) if s
        ]
        self._users = parse_users(console.console_users.get_secret_value())
        self.env = env

    @property
    def configured(self) -> bool:
        """Whether anyone can log in at all."""
        return bool(self._admin_secrets or self._users)

    def check(self, name: str, password: str) -> bool:
        """True for a known user with the right password."""
        if name == "admin" and self._admin_secrets:
            given = password.encode()
            return any(hmac.compare_digest(given, s) for s in self._admin_secrets)
        encoded = self._users.get(name)
        if encoded is None:
            # Same work for an unknown name as for a wrong password.
            verify_password(password, hash_password("x", b"0" * 16))
            return False
        return verify_password(password, encoded)


class LoginThrottle:
    """Failed sign-ins per user name and per client address, in this process's memory.

    Once a name or an address has `limit` failures within `window` seconds, its next
    sign-ins are refused without checking the password until the oldest of them is
    `window` old (`retry_after` says in how many seconds). Refused attempts do not
    count, so the wait never grows. An attempt counts as failed from before its password
    is checked (`attempt`), so concurrent attempts cannot slip past the limit; a
    successful one takes its own count back and clears the name's failures (not the
    address's). At most `max_keys` names and addresses are remembered, the stalest
    forgotten first: a flood of made-up names cannot grow memory without bound.
    """

    def __init__(
        self,
        limit: int = 5,
        window: float = 300.0,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit, self.window, self.max_keys = limit, window, max_keys
        self._clock = clock
        self._failures: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()

    @staticmethod
    def _keys(name: str, address: str | None) -> list[tuple[str, str]]:
        return [("name", name), *([("address", address)] if address else [])]

    def _recent(self, key: tuple[str, str], now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def retry_after(self, name: str, address: str | None) -> int | None:
        """Seconds until `name` from `address` may try again; None when it may now."""
        now = self._clock()
        waits = [
            times[0] + self.window - now
            for key in self._keys(name, address)
            if (times := self._recent(key, now)) is not None and len(times) >= self.limit
        ]
        return max(1, math.ceil(max(waits))) if waits else None

    def attempt(self, name: str, address: str | None) -> float:
        """Count a sign-in as failed until `succeeded`; the token to pass to it."""
        now = self._clock()
        for key in self._keys(name, address):
            times = self._recent(key, now)
            if times is None:
                times = self._failures[key] = deque(maxlen=self.limit)
            times.append(now)
            self._failures.move_to_end(key)
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)
        return now

    def succeeded(self, name: str, address: str | None, token: float) -> None:
        """The attempt `token` signed in: forget the name's failures and this attempt."""
        self._failures.pop(("name", name), None)
        times = self._failures.get(("address", address or ""))
        if times is not None and token in times:
            times.remove(token)


@dataclass(frozen=True)
class Session:
    """The signed cookie's content: the user (None before login), CSRF token, expiry."""

    user: str | None
    csrf: str
    expires: int

    @classmethod
    def anonymous(cls, hours: float, clock: Clock = utc_now) -> Session:
        expires = int(clock().timestamp() + hours * 3600)
        return cls(None, secrets.token_urlsafe(24), expires)


class SessionCodec:
    """Signs and verifies session cookies."""

    def __init__(self, secret_key: str, clock: Clock = utc_now) -> None:
        self._clock = clock
        self._key = hmac.new(secret_key.encode(), b"leadflow-console-session", "sha256").digest()

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), "sha256").digest())

    def encode(self, session: Session) -> str:
        payload = _b64(orjson.dumps({"u": session.user, "c": session.csrf, "e": session.expires}))
        return f"{payload}.{self._sign(payload)}"

    def decode(self, value: str | None) -> Session | None:
        """The session of a cookie, or None when missing, forged, malformed or expired."""
        if not value or len(value) > 1000:
            return None
        payload, _, signature = value.partition(".")
        if not hmac.compare_digest(signature.encode(), self._sign(payload).encode()):
            return None
        try:
            data = orjson.loads(_unb64(payload))
            session = Session(data["u"], str(data["c"]), int(data["e"]))
        except (ValueError, KeyError, TypeError):
            return None
        if session.user is not None and not isinstance(session.user, str):
            return None
        return session if session.expires > self._clock().timestamp() else None


def main() -> None:
    """Print the hash of a password typed twice (for LEADFLOW_CONSOLE_USERS)."""
    first = getpass.getpass("password: ")
    if len(first) < 8 or first != getpass.getpass("again: "):
        raise SystemExit("passwords differ or are shorter than 8 characters")
    print(hash_password(first))


if __name__ == "__main__":
    main()
