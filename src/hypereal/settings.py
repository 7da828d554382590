"""Typed settings. Every field is also an environment variable `HYPEREAL_<FIELD>`.

Unknown `HYPEREAL_*` variables and insecure values stop the process at start with a message
that names the variable, because a typo in a deployment should not silently fall back to a
default.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

ENV_PREFIX = "HYPEREAL_"
# Client-side variables that share our prefix: Codex CLI's documented `env_key` is
# HYPEREAL_API_KEY, so a developer's shell often has it while running the server.
CLIENT_SIDE_VARIABLES = frozenset({"HYPEREAL_API_KEY", "HYPEREAL_BASE_URL"})

DEFAULT_WEBHOOK_SCHEDULE = "5,300,1800,7200,18000,36000,50400,72000,86400"


class SettingsError(ValueError):
    """Raised for a configuration that must not start."""


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    data_dir: Path = Field(default=Path(".hypereal"), description="SQLite database and local files.")
    database_url: str | None = Field(default=None, description="postgresql://... ; default SQLite in data_dir")
    database_pool_size: int = Field(
        default=10, ge=1, le=500, description="Connections each process keeps; it may open as many again at peaks."
    )
    redis_url: str | None = Field(default=None, description="Shared rate limits and cache invalidation.")
    admin_key: SecretStr | None = Field(default=None, description="Bearer key of the admin API.")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    public_url: str | None = Field(default=None, description="Base of output URLs; default the server's own.")
    worker: bool = True
    worker_concurrency: int = Field(default=4, ge=1, le=256)
    catalog: Path | None = Field(default=None, description="Operator catalog merged over the built-in one.")
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    default_rate_limit_per_hour: int = Field(default=1000, ge=1)
    dev_account_credits: int = Field(default=10_000, ge=0)
    key_cache_seconds: float = Field(default=60.0, ge=0)
    outbound_allow: str = Field(default="", description="Comma-separated hosts/CIDRs allowed despite the SSRF guard.")
    max_input_bytes: int = Field(default=50 * 1024 * 1024, ge=1024)
    input_timeout_seconds: float = Field(default=30.0, gt=0)
    webhook_retry_schedule: str = DEFAULT_WEBHOOK_SCHEDULE
    webhook_timeout_seconds: float = Field(default=15.0, gt=0)
    local_fallback: bool = False
    sync_wait_seconds: float = Field(default=60.0, ge=0)
    job_lease_seconds: float = Field(
        default=15.0,
        ge=1,
        description="How long a job stays a worker's without a heartbeat: a dead worker's jobs resume after this.",
    )
    job_heartbeat_seconds: float | None = Field(
        default=None,
        gt=0,
        description="How often a worker renews the leases of the jobs it holds; default a third of the lease.",
    )
    job_deadline_seconds: float = Field(default=3600.0, ge=10)
    job_max_attempts: int = Field(default=3, ge=1)
    private_files: bool = Field(
        default=False, description="Serve local output files only to their account's keys (else by unguessable URL)."
    )
    storage: Literal["local", "s3"] = "local"
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_public_url: str | None = Field(
        default=None, description="Base URL where the bucket is served publicly; else presigned URLs."
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("admin_key")
    @classmethod
    def _admin_key_strong(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 24:
            raise ValueError("must be at least 24 characters (generate one with: openssl rand -hex 24)")
        return value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = urlsplit(value).scheme.split("+")[0]
        if scheme not in {"sqlite", "postgresql", "postgres"}:
            raise ValueError("must be a sqlite:// or postgresql:// URL")
        return value

    @field_validator("redis_url")
    @classmethod
    def _known_redis(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in {"redis", "rediss", "unix"}:
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("public_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ValueError("must be an absolute http(s) URL")
        return value.rstrip("/")

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        try:
            delays = [float(part) for part in value.split(",") if part.strip()]
        except ValueError:
            raise ValueError("must be comma-separated seconds, e.g. 5,300,1800") from None
        if any(delay < 0 for delay in delays):
            raise ValueError("delays cannot be negative")
        return value

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> Settings:
        if self.job_heartbeat_seconds is not None and self.job_heartbeat_seconds * 2 > self.job_lease_seconds:
            # One late heartbeat must not cost a live worker its jobs.
            raise ValueError("HYPEREAL_JOB_HEARTBEAT_SECONDS must be at most half of HYPEREAL_JOB_LEASE_SECONDS")
        return self

    @model_validator(mode="after")
    def _s3_complete(self) -> Settings:
        if self.storage == "s3" and not self.s3_bucket:
            raise ValueError("HYPEREAL_STORAGE=s3 needs HYPEREAL_S3_BUCKET")
        return self

    @property
    def effective_database_url(self) -> str:
        if self.database_url is None:
            return f"sqlite+aiosqlite:///{self.data_dir.resolve() / 'hypereal.db'}"
        url = self.database_url
        for plain in ("postgresql://", "postgres://"):
            if url.startswith(plain):
                return "postgresql+asyncpg://" + url[len(plain) :]
        if url.startswith("sqlite://") and not url.startswith("sqlite+aiosqlite://"):
            return "sqlite+aiosqlite://" + url[len("sqlite://") :]
        return url

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    @property
    def effective_public_url(self) -> str:
        if self.public_url:
            return self.public_url
        host = "127.0.0.1" if self.host in {"0.0.0.0", "::"} else self.host
        return f"http://{host}:{self.port}"

    @property
    def job_heartbeat_interval(self) -> float:
        return self.job_heartbeat_seconds or self.job_lease_seconds / 3

    @property
    def outbound_allow_list(self) -> tuple[str, ...]:
        return tuple(part.strip() for part in self.outbound_allow.split(",") if part.strip())

    @property
    def webhook_schedule(self) -> tuple[float, ...]:
        return tuple(float(part) for part in self.webhook_retry_schedule.split(",") if part.strip())


def load_settings(environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings from the environment (plus explicit overrides, e.g. CLI flags), checked."""
    env = os.environ if environ is None else environ
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    unknown = sorted(k for k in env if k.startswith(ENV_PREFIX) and k not in known | CLIENT_SIDE_VARIABLES)
    if unknown:
        raise SettingsError(f"Unknown setting {', '.join(unknown)}; known settings: {', '.join(sorted(known))}")
    values: dict[str, Any] = {
        name: env[ENV_PREFIX + name.upper()] for name in Settings.model_fields if ENV_PREFIX + name.upper() in env
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{ENV_PREFIX}{'.'.join(str(p) for p in err['loc']).upper() or 'SETTINGS'}: {err['msg']}"
            for err in exc.errors()
        )
        raise SettingsError(f"Invalid configuration: {problems}") from None
