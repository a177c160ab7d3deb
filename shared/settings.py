"""Process settings from `LEADFLOW_*` environment variables.

Built once in a service's app factory and passed down; nothing here reads the
environment at import time. Business configuration (forms, scoring, routing...)
lives in the YAML file named by `config`, see shared/config.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICES = ("capture", "scoring", "nurture", "router", "insights")
DEFAULT_PORTS = {
    "capture": 8001,
    "scoring": 8002,
    "nurture": 8003,
    "router": 8004,
    "insights": 8005,
}
DEV_SECRET = "dev-only-not-secret"


class Settings(BaseSettings):
    """What every leadflow process needs: where Kafka, the database and the config are."""

    model_config = SettingsConfigDict(
        env_prefix="LEADFLOW_",
        env_nested_delimiter="__",
        extra="ignore",
        # The string under a field is its description.
        use_attribute_docstrings=True,
    )

    env: Literal["development", "test", "production"] = "development"
    config: Path = Path("leadflow.yaml")
    """The YAML config file."""
    var_dir: Path = Path("var")
    """Embedded-mode data directory."""

    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_enable_idempotence: bool = False
    """Idempotent producer; true for Apache Kafka (the embedded broker lacks it)."""
    kafka_partitions: int = Field(default=3, ge=1)
    kafka_replication_factor: int = Field(default=1, ge=1)
    kafka_session_timeout_ms: int = Field(default=10_000, ge=1000)
    """Consumer group session timeout; a dead member's partitions move after it."""
    kafka_fetch_max_wait_ms: int = Field(default=100, ge=1)
    """Longest a consumer's fetch waits for data; bounds each hop's latency."""
    kafka_client_prefix: str = "leadflow"
    """Prefix of consumer groups."""

    database_url: str = Field(
        default="sqlite+aiosqlite:///{var_dir}/{service}.db",
        description="One URL for all services; SQLite gets a file per service, PostgreSQL a "
        "schema per service ({service} and {var_dir} are filled in).",
    )
    database_schema_prefix: str = ""
    """Prefix of PostgreSQL schemas."""
    database_pool_size: int = Field(default=10, ge=1)

    host: str = "127.0.0.1"
    ports: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_PORTS))
    """Per-service ports: LEADFLOW_PORTS__CAPTURE=8001."""
    public_url: str = ""
    """Base URL links in emails point at (default http://host:port of the service)."""
    secret_key: SecretStr = SecretStr(DEV_SECRET)
    """Signs tracking, ack and unsubscribe tokens."""
    admin_token: SecretStr = Field(
        default=SecretStr(""),
        description="Bearer token of admin endpoints (dead letters, outcomes); "
        "when empty they are open in development and refused elsewhere.",
    )
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"
    opentelemetry: bool = False
    """FastAPI's native OpenTelemetry spans and metrics, for a deployment that configures
    OpenTelemetry providers. Off, no request looks the providers up (Prometheus and the
    logs are leadflow's own telemetry)."""

    max_body_bytes: int = 64 * 1024
    """Largest accepted request body."""
    max_in_flight: int = Field(default=128, ge=1)
    """Concurrent requests per process before new ones get 503 + Retry-After."""
    shed_delay_seconds: float = Field(default=0.5, ge=0)
    """Pause before a 503 for a request past max_in_flight (slows hammering)."""
    consumer_max_attempts: int = Field(default=3, ge=1)
    """Handler attempts before the DLQ."""
    consumer_batch_size: int = Field(default=500, ge=1)
    outbox_poll_seconds: float = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Settings:
        if self.env == "production" and self.secret_key.get_secret_value() == DEV_SECRET:
            raise ValueError("LEADFLOW_SECRET_KEY must be set to a real secret in production")
        return self

    def port_of(self, service: str) -> int:
        """The port a service listens on."""
        return self.ports.get(service, DEFAULT_PORTS[service])

    def public_base_of(self, service: str, configured: str | None = None) -> str:
        """Where a service's links point (no trailing slash): the service's configured
        URL, else LEADFLOW_PUBLIC_URL, else http://host:port of the service."""
        base = configured or self.public_url
        return (base or f"http://{self.host}:{self.port_of(service)}").rstrip("/")

    def database_url_for(self, service: str) -> str:
        """This service's database URL."""
        return self.database_url.format(service=service, var_dir=self.var_dir.as_posix())

    def schema_for(self, service: str) -> str:
        """This service's PostgreSQL schema."""
        return f"{self.database_schema_prefix}{service}"

    def group_id(self, service: str) -> str:
        """This service's Kafka consumer group."""
        return f"{self.kafka_client_prefix}-{service}"
