"""Typed settings, read from the environment once and passed down explicitly."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from typing import Literal, TypeVar, cast, get_args

import msgspec

Env = Literal["dev", "production"]
EmailProvider = Literal["dev", "smtp", "resend", "postmark"]
SmtpSecurity = Literal["none", "starttls", "tls"]

T = TypeVar("T")

#: The internal API key `make run` accepts when MIMIC_SERVICE_API_KEY is unset (dev only).
DEV_API_KEY = "mimic-dev-key"


class ConfigError(Exception):
    """Configuration is invalid."""


class Secret:
    """A value that must never be printed; its repr is masked."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class EncryptionKey(msgspec.Struct, frozen=True):
    """One AES-256-GCM key; the first key in the list encrypts, all of them decrypt."""

    key_id: str
    key: Secret


class Settings(msgspec.Struct, kw_only=True, frozen=True):
    env: Env = "dev"
    #: Postgres DSN; None means "start the embedded pgserver under data_dir".
    database_url: Secret | None = None
    data_dir: str = ".mimic"
    host: str = "127.0.0.1"
    port: int = 8006
    log_level: str = "INFO"
    db_pool_max_size: int = 20

    stripe_secret_key: Secret | None = None
    stripe_webhook_secret: Secret | None = None
    resend_webhook_secret: Secret | None = None
    #: Password of the HTTP Basic credentials in Postmark's webhook URL.
    postmark_webhook_secret: Secret | None = None
    webhook_max_body_bytes: int = 1_048_576
    #: Stripe signed timestamps further in the future than this are refused too.
    stripe_tolerance_seconds: int = 300

    inkpass_internal_url: str = "http://localhost:8002"
    inkpass_timeout_seconds: float = 10.0
    service_api_key: Secret | None = None
    #: Extra keys accepted from internal callers, besides service_api_key.
    api_keys: tuple[Secret, ...] = ()

    delivery_max_attempts: int = 10
    delivery_backoff_base_seconds: float = 2.0
    delivery_backoff_max_seconds: float = 3600.0

    worker_concurrency: int = 10
    worker_heartbeat_seconds: float = 10.0
    worker_stalled_after_seconds: float = 30.0
    worker_shutdown_grace_seconds: float = 30.0
    stalled_sweep_seconds: int = 60

    email_provider: EmailProvider = "dev"
    email_from: str = "Mimic <no-reply@mimic.local>"
    dev_smtp_host: str = "localhost"
    dev_smtp_port: int = 1025
    #: None: no platform SMTP server (tenants may still bring their own).
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: Secret | None = None
    smtp_security: SmtpSecurity = "starttls"
    resend_api_key: Secret | None = None
    resend_api_url: str = "https://api.resend.com"
    postmark_server_token: Secret | None = None
    postmark_api_url: str = "https://api.postmarkapp.com"
    provider_timeout_seconds: float = 10.0
    #: After an attempt that may have reached Postmark, wait this long before searching
    #: Postmark for it (its search index lags), then send only if it is not there.
    postmark_recheck_seconds: float = 60.0
    email_max_attempts: int = 8
    encryption_keys: tuple[EncryptionKey, ...] = ()

    @property
    def is_dev(self) -> bool:
        return self.env == "dev"

    @property
    def accepted_api_keys(self) -> tuple[Secret, ...]:
        base = (self.service_api_key,) if self.service_api_key else ()
        return base + self.api_keys

    def with_database_url(self, url: str) -> Settings:
        return msgspec.structs.replace(self, database_url=Secret(url))

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build settings from an environment mapping; raise ConfigError naming the variable."""
        reader = _Reader(environ)
        env = cast(Env, reader.choice("MIMIC_ENV", Env, "dev"))
        settings = cls(
            env=env,
            database_url=reader.secret("DATABASE_URL"),
            data_dir=reader.text("MIMIC_DATA_DIR", ".mimic"),
            host=reader.text("MIMIC_HOST", "127.0.0.1"),
            port=reader.integer("MIMIC_PORT", 8006, low=1, high=65535),
            log_level=reader.choice_str(
                "MIMIC_LOG_LEVEL", ("DEBUG", "INFO", "WARNING", "ERROR"), "INFO"
            ),
            db_pool_max_size=reader.integer("MIMIC_DB_POOL_MAX_SIZE", 20, low=1),
            stripe_secret_key=reader.secret("STRIPE_SECRET_KEY"),
            stripe_webhook_secret=reader.secret("STRIPE_WEBHOOK_SECRET"),
            resend_webhook_secret=reader.svix_secret("RESEND_WEBHOOK_SECRET"),
            postmark_webhook_secret=reader.secret("POSTMARK_WEBHOOK_SECRET"),
            webhook_max_body_bytes=reader.integer("WEBHOOK_MAX_BODY_BYTES", 1_048_576, low=1),
            stripe_tolerance_seconds=reader.integer("STRIPE_TOLERANCE_SECONDS", 300, low=1),
            inkpass_internal_url=reader.url("INKPASS_INTERNAL_URL", "http://localhost:8002"),
            inkpass_timeout_seconds=reader.number("INKPASS_TIMEOUT_SECONDS", 10.0),
            service_api_key=reader.secret("MIMIC_SERVICE_API_KEY"),
            api_keys=reader.secret_list("MIMIC_API_KEYS"),
            delivery_max_attempts=reader.integer("DELIVERY_MAX_ATTEMPTS", 10, low=1),
            delivery_backoff_base_seconds=reader.number("DELIVERY_BACKOFF_BASE_SECONDS", 2.0),
            delivery_backoff_max_seconds=reader.number("DELIVERY_BACKOFF_MAX_SECONDS", 3600.0),
            worker_concurrency=reader.integer("WORKER_CONCURRENCY", 10, low=1),
            worker_heartbeat_seconds=reader.number("WORKER_HEARTBEAT_SECONDS", 10.0),
            worker_stalled_after_seconds=reader.number("WORKER_STALLED_AFTER_SECONDS", 30.0),
            worker_shutdown_grace_seconds=reader.number("WORKER_SHUTDOWN_GRACE_SECONDS", 30.0),
            stalled_sweep_seconds=reader.integer("STALLED_SWEEP_SECONDS", 60, low=1, high=60),
            email_provider=cast(
                EmailProvider, reader.choice("EMAIL_PROVIDER", EmailProvider, "dev")
            ),
            email_from=reader.text("EMAIL_FROM", "Mimic <no-reply@mimic.local>"),
            dev_smtp_host=reader.text("DEV_SMTP_HOST", "localhost"),
            dev_smtp_port=reader.integer("DEV_SMTP_PORT", 1025, low=1, high=65535),
            smtp_host=reader.optional_text("SMTP_HOST"),
            smtp_port=reader.integer("SMTP_PORT", 587, low=1, high=65535),
            smtp_username=reader.optional_text("SMTP_USERNAME"),
            smtp_password=reader.secret("SMTP_PASSWORD"),
            smtp_security=cast(
                SmtpSecurity, reader.choice("SMTP_SECURITY", SmtpSecurity, "starttls")
            ),
            resend_api_key=reader.secret("RESEND_API_KEY"),
            resend_api_url=reader.url("RESEND_API_URL", "https://api.resend.com"),
            postmark_server_token=reader.secret("POSTMARK_SERVER_TOKEN"),
            postmark_api_url=reader.url("POSTMARK_API_URL", "https://api.postmarkapp.com"),
            provider_timeout_seconds=reader.number("PROVIDER_TIMEOUT_SECONDS", 10.0),
            postmark_recheck_seconds=reader.number("POSTMARK_RECHECK_SECONDS", 60.0),
            email_max_attempts=reader.integer("EMAIL_MAX_ATTEMPTS", 8, low=1),
            encryption_keys=reader.encryption_keys("MIMIC_ENCRYPTION_KEYS"),
        )
        if env == "production":
            _require_production(settings, environ)
        elif settings.service_api_key is None:
            # Dev convenience only: production refuses to start without a real key.
            settings = msgspec.structs.replace(settings, service_api_key=Secret(DEV_API_KEY))
        return settings


def _require_production(settings: Settings, environ: Mapping[str, str]) -> None:
    required = {
        "DATABASE_URL": settings.database_url,
        # Not a secret, but the dev default (localhost) would silently drop billing events.
        "INKPASS_INTERNAL_URL": environ.get("INKPASS_INTERNAL_URL") or None,
        "STRIPE_WEBHOOK_SECRET": settings.stripe_webhook_secret,
        "RESEND_WEBHOOK_SECRET": settings.resend_webhook_secret,
        "MIMIC_SERVICE_API_KEY": settings.service_api_key,
        "MIMIC_ENCRYPTION_KEYS": settings.encryption_keys or None,
    }
    missing = [name for name, value in required.items() if value is None]
    if missing:
        raise ConfigError(f"{', '.join(missing)}: required when MIMIC_ENV=production but not set")


class _Reader:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def _raw(self, name: str) -> str | None:
        value = self._environ.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def _parse(self, name: str, default: T, parse: Callable[[str], T], hint: str) -> T:
        raw = self._raw(name)
        if raw is None:
            return default
        try:
            return parse(raw)
        except ValueError:
            # The raw value is deliberately not echoed: it may be a secret.
            raise ConfigError(f"{name}: invalid value, expected {hint}") from None

    def text(self, name: str, default: str) -> str:
        return self._raw(name) or default

    def optional_text(self, name: str) -> str | None:
        return self._raw(name)

    def secret(self, name: str) -> Secret | None:
        raw = self._raw(name)
        return Secret(raw) if raw is not None else None

    def svix_secret(self, name: str) -> Secret | None:
        def parse(raw: str) -> Secret:
            try:
                base64.b64decode(raw.removeprefix("whsec_"), validate=True)
            except binascii.Error:
                raise ValueError(name) from None
            return Secret(raw)

        return self._parse(name, None, parse, "a Svix secret, whsec_<base64>")

    def secret_list(self, name: str) -> tuple[Secret, ...]:
        raw = self._raw(name) or ""
        return tuple(Secret(part.strip()) for part in raw.split(",") if part.strip())

    def integer(
        self, name: str, default: int, *, low: int | None = None, high: int | None = None
    ) -> int:
        def parse(raw: str) -> int:
            value = int(raw)
            if (low is not None and value < low) or (high is not None and value > high):
                raise ValueError(raw)
            return value

        bounds = f" between {low} and {high}" if high is not None else ""
        if low is not None and high is None:
            bounds = f" >= {low}"
        return self._parse(name, default, parse, f"an integer{bounds}")

    def number(self, name: str, default: float) -> float:
        def parse(raw: str) -> float:
            value = float(raw)
            if not value > 0 or value == float("inf"):
                raise ValueError(raw)
            return value

        return self._parse(name, default, parse, "a positive number")

    def url(self, name: str, default: str) -> str:
        def parse(raw: str) -> str:
            if not raw.startswith(("http://", "https://")):
                raise ValueError(raw)
            return raw.rstrip("/")

        return self._parse(name, default, parse, "an http:// or https:// URL")

    def choice(self, name: str, options: object, default: str) -> str:
        return self.choice_str(name, get_args(options), default)

    def choice_str(self, name: str, allowed: tuple[str, ...], default: str) -> str:
        def parse(raw: str) -> str:
            if raw not in allowed:
                raise ValueError(raw)
            return raw

        return self._parse(name, default, parse, f"one of {' | '.join(allowed)}")

    def encryption_keys(self, name: str) -> tuple[EncryptionKey, ...]:
        def parse(raw: str) -> tuple[EncryptionKey, ...]:
            keys = []
            for item in raw.split(","):
                key_id, sep, encoded = item.strip().partition(":")
                if not sep or not key_id:
                    raise ValueError(item)
                try:
                    key = base64.b64decode(encoded, validate=True)
                except binascii.Error:
                    raise ValueError(item) from None
                if len(key) != 32:
                    raise ValueError(item)
                keys.append(EncryptionKey(key_id=key_id, key=Secret(encoded)))
            if len({k.key_id for k in keys}) != len(keys):
                raise ValueError(raw)
            return tuple(keys)

        return self._parse(name, (), parse, "a comma list of key_id:base64(32 bytes), unique ids")
