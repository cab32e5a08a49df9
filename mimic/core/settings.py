"""Typed settings, read from the environment once and passed down explicitly.

One struct per concern. Each field's default is written once, on the field; ``ENV`` maps the
field to its environment variable and parser. A bad value stops startup with one line that
names the variable and never echoes the value (it may be a secret).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar, get_args

import msgspec

from mimic.core.outbound import parse_entry

Env = Literal["dev", "production"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
#: auto: JSON lines in production, readable text in dev.
LogFormat = Literal["auto", "text", "json"]
#: How an email leaves Mimic. The one definition of the provider vocabulary.
EmailProvider = Literal["dev", "smtp", "resend", "postmark"]
SmtpSecurity = Literal["none", "starttls", "tls"]
#: How much time one partition of webhook_events / webhook_deliveries covers.
PartitionInterval = Literal["day", "week", "month"]

#: Dev only: the admin key `make run` accepts when MIMIC_API_KEYS is unset, and the key it
#: sends to the inkpass stand-in when MIMIC_SERVICE_API_KEY is unset. Production refuses it.
DEV_API_KEY = "mimic-dev-key"
#: Production refuses API keys shorter than this.
MIN_KEY_LENGTH = 32

S = TypeVar("S", bound=msgspec.Struct)


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


# --- parsers: each raises ValueError on a bad value and says what it expects -----------------


@dataclass(frozen=True)
class Parser:
    hint: str
    parse: Callable[[str], Any]


def _text(raw: str) -> str:
    return raw


TEXT = Parser("text", _text)
SECRET = Parser("a secret", Secret)


def _secret_list(raw: str) -> tuple[Secret, ...]:
    return tuple(Secret(part.strip()) for part in raw.split(",") if part.strip())


SECRET_LIST = Parser("a comma list of secrets", _secret_list)


def _hosts(raw: str) -> tuple[str, ...]:
    entries = tuple(item.strip().lower() for item in raw.split(",") if item.strip())
    for entry in entries:
        parse_entry(entry)  # ValueError names nothing: the caller names the variable
    return entries


HOSTS = Parser("a comma list of host, host:port, IP or CIDR entries", _hosts)


def _svix_secret(raw: str) -> Secret:
    try:
        base64.b64decode(raw.removeprefix("whsec_"), validate=True)
    except binascii.Error:
        raise ValueError("not base64") from None
    return Secret(raw)


SVIX_SECRET = Parser("a Svix secret, whsec_<base64>", _svix_secret)


def integer(low: int | None = None, high: int | None = None) -> Parser:
    def parse(raw: str) -> int:
        value = int(raw)
        if (low is not None and value < low) or (high is not None and value > high):
            raise ValueError(raw)
        return value

    if high is not None:
        bounds = f" between {low} and {high}"
    elif low is not None:
        bounds = f" >= {low}"
    else:
        bounds = ""
    return Parser(f"an integer{bounds}", parse)


PORT = integer(1, 65535)


def _positive(raw: str) -> float:
    value = float(raw)
    if not value > 0 or value == float("inf"):
        raise ValueError(raw)
    return value


POSITIVE = Parser("a positive number", _positive)


def seconds(low: float, high: float) -> Parser:
    def parse(raw: str) -> float:
        value = float(raw)
        if not low <= value <= high:
            raise ValueError(raw)
        return value

    return Parser(f"a number of seconds between {low:g} and {high:g}", parse)


#: What any rate of sends may be (a tenant's credential or the platform's): a floor, so no
#: queue of sends waits days for its turn, and a ceiling no provider would honour anyway.
MIN_RATE, MAX_RATE = 0.1, 10_000.0


def _rate(raw: str) -> float:
    value = float(raw)
    if value != 0 and not MIN_RATE <= value <= MAX_RATE:
        raise ValueError(raw)
    return value


RATE = Parser(
    f"a number of sends per second from {MIN_RATE:g} to {MAX_RATE:g}, 0 for no limit", _rate
)


def api_rate(*, unlimited: bool) -> Parser:
    """Requests per second of one API key, MIN_RATE to MAX_RATE (the floor: a key that keeps
    to its limit is never refused for long); 0 (no limit) only where ``unlimited``."""

    def parse(raw: str) -> float:
        value = float(raw)
        if not (MIN_RATE <= value <= MAX_RATE or (unlimited and value == 0)):
            raise ValueError(raw)
        return value

    hint = f"a number of requests per second from {MIN_RATE:g} to {MAX_RATE:g}"
    return Parser(hint + (", 0 for no limit" if unlimited else ""), parse)


#: Requests one API key may make at once above its rate (its bucket's capacity).
API_BURST = integer(1, 100_000)


def _url(raw: str) -> str:
    if not raw.startswith(("http://", "https://")):
        raise ValueError(raw)
    return raw.rstrip("/")


URL = Parser("an http:// or https:// URL", _url)


def choice(options: Any) -> Parser:
    allowed: tuple[str, ...] = get_args(options)

    def parse(raw: str) -> str:
        if raw not in allowed:
            raise ValueError(raw)
        return raw

    return Parser(f"one of {' | '.join(allowed)}", parse)


def choices(options: Any) -> Parser:
    """An ordered comma list of distinct values from ``options``."""
    one = choice(options)

    def parse(raw: str) -> tuple[str, ...]:
        items = tuple(one.parse(item.strip()) for item in raw.split(",") if item.strip())
        if len(set(items)) != len(items):
            raise ValueError(raw)
        return items

    return Parser(f"a comma list of distinct {' | '.join(get_args(options))}", parse)


def _encryption_keys(raw: str) -> tuple[EncryptionKey, ...]:
    keys = []
    for item in raw.split(","):
        key_id, sep, encoded = item.strip().partition(":")
        if not sep or not key_id:
            raise ValueError("no key id")
        try:
            key = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise ValueError("not base64") from None
        if len(key) != 32:
            raise ValueError("not 32 bytes")
        keys.append(EncryptionKey(key_id=key_id, key=Secret(encoded)))
    if len({k.key_id for k in keys}) != len(keys):
        raise ValueError("duplicate key ids")
    return tuple(keys)


ENCRYPTION_KEYS = Parser("a comma list of key_id:base64(32 bytes), unique ids", _encryption_keys)


def read_group(cls: type[S], environ: Mapping[str, str]) -> S:
    """Build one settings struct: unset or blank variables keep the field's default."""
    env: Mapping[str, tuple[str, Parser]] = cls.ENV  # type: ignore[attr-defined]
    values: dict[str, Any] = {}
    for field in msgspec.structs.fields(cls):
        name, parser = env[field.name]
        raw = (environ.get(name) or "").strip()
        if not raw:
            continue
        try:
            values[field.name] = parser.parse(raw)
        except ValueError:
            # The raw value is deliberately not echoed: it may be a secret.
            raise ConfigError(f"{name}: invalid value, expected {parser.hint}") from None
    return cls(**values)


# --- the groups --------------------------------------------------------------------------------


class ServerSettings(msgspec.Struct, kw_only=True, frozen=True):
    #: API bind address (0.0.0.0 in the container). With MIMIC_ENV unset, only a loopback address is
    #: accepted.
    host: str = "127.0.0.1"
    #: API port.
    port: int = 8006
    #: Log level of every Mimic process.
    log_level: LogLevel = "INFO"
    #: text, json, or auto: JSON lines in production, text in dev.
    log_format: LogFormat = "auto"
    #: Where `make run` keeps the embedded Postgres (and other local state).
    data_dir: str = ".mimic"
    #: Admin keys accepted from internal callers, comma-separated (tenant keys live in the
    #: database: `uv run mimic keys`). Unset in dev: mimic-dev-key. Production: 32+ characters
    #: each, never the dev key.
    api_keys: tuple[Secret, ...] = ()
    #: When set, /metrics (the API's and the worker's) answers only to this key (Authorization:
    #: Bearer or X-API-Key; production: 32+ characters). Unset: open, so keep /metrics off the
    #: network.
    metrics_api_key: Secret | None = None
    #: The queue gauges of /metrics are read from procrastinate's table at most once per this
    #: long per process, whatever the scrape rate (0: at each scrape).
    metrics_queue_cache_seconds: float = 5.0
    #: Requests per second of each tenant key, with bursts of up to API_BURST, across every
    #: API process (a token bucket per key in Postgres); more is 429 rate_limited.
    api_rate_per_second: float = 20.0
    #: How many requests each tenant key may make at once (its bucket's capacity).
    api_burst: int = 40
    #: The same for each admin key (0: no limit).
    api_admin_rate_per_second: float = 200.0
    #: The same for each admin key.
    api_admin_burst: int = 400

    ENV: ClassVar = {
        "host": ("MIMIC_HOST", TEXT),
        "port": ("MIMIC_PORT", PORT),
        "log_level": ("MIMIC_LOG_LEVEL", choice(LogLevel)),
        "log_format": ("MIMIC_LOG_FORMAT", choice(LogFormat)),
        "data_dir": ("MIMIC_DATA_DIR", TEXT),
        "api_keys": ("MIMIC_API_KEYS", SECRET_LIST),
        "metrics_api_key": ("METRICS_API_KEY", SECRET),
        "metrics_queue_cache_seconds": ("METRICS_QUEUE_CACHE_SECONDS", seconds(0, 60)),
        "api_rate_per_second": ("API_RATE_PER_SECOND", api_rate(unlimited=False)),
        "api_burst": ("API_BURST", API_BURST),
        "api_admin_rate_per_second": ("API_ADMIN_RATE_PER_SECOND", api_rate(unlimited=True)),
        "api_admin_burst": ("API_ADMIN_BURST", API_BURST),
    }


class DatabaseSettings(msgspec.Struct, kw_only=True, frozen=True):
    #: Postgres DSN. Required in production; unset in dev: the embedded PostgreSQL under
    #: MIMIC_DATA_DIR.
    url: Secret | None = None
    #: asyncpg pool size per process.
    pool_max_size: int = 20
    #: Prepared statements asyncpg keeps per connection; 0 behind a transaction-mode pooler
    #: (PgBouncer's pool_mode=transaction), where a connection's statements do not survive
    #: the transaction.
    statement_cache_size: int = 100
    #: A DSN to the database itself, for what needs a session (the migrations' advisory lock)
    #: when DATABASE_URL goes through a transaction-mode pooler. Unset: DATABASE_URL.
    direct_url: Secret | None = None
    #: A DSN to a read replica for the admin lists and details (events, deliveries,
    #: notifications, the audit log). Unset: the primary.
    read_url: Secret | None = None

    ENV: ClassVar = {
        "url": ("DATABASE_URL", SECRET),
        "pool_max_size": ("MIMIC_DB_POOL_MAX_SIZE", integer(low=1)),
        "statement_cache_size": ("MIMIC_DB_STATEMENT_CACHE_SIZE", integer(low=0)),
        "direct_url": ("DATABASE_DIRECT_URL", SECRET),
        "read_url": ("DATABASE_READ_URL", SECRET),
    }

    @property
    def session_url(self) -> Secret | None:
        """Where a session-level feature goes: DATABASE_DIRECT_URL, else DATABASE_URL."""
        return self.direct_url or self.url


class WebhookSettings(msgspec.Struct, kw_only=True, frozen=True):
    #: Stripe endpoint signing secret, whsec_... Required in production; unset in dev: the Stripe
    #: endpoint answers 503 not_configured.
    stripe_secret: Secret | None = None
    #: Resend (Svix) signing secret, whsec_... Required in production.
    resend_secret: Secret | None = None
    #: Password of the HTTP Basic credentials in Postmark's webhook URL.
    postmark_secret: Secret | None = None
    #: Largest webhook body accepted (413 above).
    max_body_bytes: int = 1_048_576
    #: Stripe signed timestamps further in the past or future than this are refused.
    stripe_tolerance_seconds: int = 300
    #: A TOML file of destinations and routes, applied when the API starts (read-only through
    #: the API). Unset: destinations and routes are managed through the API alone.
    routes_file: str | None = None

    ENV: ClassVar = {
        "routes_file": ("MIMIC_ROUTES_FILE", TEXT),
        "stripe_secret": ("STRIPE_WEBHOOK_SECRET", SECRET),
        "resend_secret": ("RESEND_WEBHOOK_SECRET", SVIX_SECRET),
        "postmark_secret": ("POSTMARK_WEBHOOK_SECRET", SECRET),
        "max_body_bytes": ("WEBHOOK_MAX_BODY_BYTES", integer(low=1)),
        "stripe_tolerance_seconds": ("STRIPE_TOLERANCE_SECONDS", integer(low=1)),
    }


def _retention(raw: str) -> int:
    days = int(raw)
    # An event is kept at least as long as providers retry it (Stripe: up to 3 days).
    if days != 0 and days < 3:
        raise ValueError(raw)
    return days


EVENT_RETENTION = Parser("0 (keep forever) or a number of days >= 3", _retention)


def _notification_retention(raw: str) -> int:
    days = int(raw)
    # A notification's idempotency key lives as long as it does: a caller's retry after the
    # row is gone would send again. A week is longer than any sane retry horizon.
    if days != 0 and days < 7:
        raise ValueError(raw)
    return days


NOTIFICATION_RETENTION = Parser(
    "0 (keep forever) or a number of days >= 7", _notification_retention
)


class RetentionSettings(msgspec.Struct, kw_only=True, frozen=True):
    """How long Mimic keeps what it stored; 0 keeps forever."""

    #: Whole partitions of events and deliveries are dropped once their newest possible row is
    #: older than this (so a row lives up to one partition interval longer) and none of their
    #: rows is unfinished.
    event_days: int = 90
    #: One partition of webhook_events and of webhook_deliveries per day, week or month (UTC).
    #: Partitions are created ahead at startup and hourly; changing it applies to partitions
    #: not created yet.
    event_partition: PartitionInterval = "month"
    #: A provider's event id is remembered this long for deduplication (Stripe retries for up
    #: to 3 days); a retry arriving later is stored as a new event. At most 30 days.
    dedup_days: int = 7
    #: procrastinate's finished jobs (succeeded, and failed/cancelled/aborted ones too).
    job_days: int = 14
    #: Rendered email bodies hold live links (password resets): blanked after this.
    email_body_days: int = 30
    #: Finished notifications themselves (with their timeline), deleted in small batches. Their
    #: idempotency keys go with them: keep them longer than any caller retries a send.
    notification_days: int = 365

    ENV: ClassVar = {
        "event_days": ("EVENT_RETENTION_DAYS", EVENT_RETENTION),
        "event_partition": ("EVENT_PARTITION_INTERVAL", choice(PartitionInterval)),
        "dedup_days": ("EVENT_DEDUP_DAYS", integer(low=3, high=30)),
        "job_days": ("JOB_RETENTION_DAYS", integer(low=0)),
        "email_body_days": ("EMAIL_BODY_RETENTION_DAYS", integer(low=0)),
        "notification_days": ("NOTIFICATION_RETENTION_DAYS", NOTIFICATION_RETENTION),
    }


class DeliverySettings(msgspec.Struct, kw_only=True, frozen=True):
    """How the gateway retries a delivery to an internal service."""

    #: Attempts per delivery before it is failed.
    max_attempts: int = 10
    #: First delay before retrying a delivery (jittered, doubling).
    backoff_base_seconds: float = 2.0
    #: Cap on a delivery's retry delay (also caps Retry-After).
    backoff_max_seconds: float = 3600.0

    ENV: ClassVar = {
        "max_attempts": ("DELIVERY_MAX_ATTEMPTS", integer(low=1)),
        "backoff_base_seconds": ("DELIVERY_BACKOFF_BASE_SECONDS", POSITIVE),
        "backoff_max_seconds": ("DELIVERY_BACKOFF_MAX_SECONDS", POSITIVE),
    }


class InkpassSettings(msgspec.Struct, kw_only=True, frozen=True):
    #: Base URL of the inkpass billing service. Required in production; unset in dev: `make run`
    #: starts a stand-in on this port.
    url: str = "http://localhost:8002"
    #: Timeout of one call to inkpass.
    timeout_seconds: float = 10.0
    #: What Mimic sends to inkpass as X-API-Key; never accepted inbound (admin_api_keys).
    #: Required in production (32+ characters); unset in dev: mimic-dev-key.
    service_api_key: Secret | None = None

    ENV: ClassVar = {
        "url": ("INKPASS_INTERNAL_URL", URL),
        "timeout_seconds": ("INKPASS_TIMEOUT_SECONDS", POSITIVE),
        "service_api_key": ("MIMIC_SERVICE_API_KEY", SECRET),
    }


def _products(raw: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in raw.split(","):
        name, sep, price = item.strip().partition("=")
        if not sep or not name.strip() or not price.strip().startswith("price_"):
            raise ValueError("not product_type=price_...")
        pairs.append((name.strip(), price.strip()))
    if len({name for name, _ in pairs}) != len(pairs):
        raise ValueError("duplicate product types")
    return tuple(pairs)


PRODUCTS = Parser("a comma list of product_type=price_...", _products)


class BillingSettings(msgspec.Struct, kw_only=True, frozen=True):
    #: Stripe API key, for the billing API routes (Checkout and Customer Portal sessions).
    stripe_secret_key: Secret | None = None
    #: product_type -> Stripe price id, e.g. tentackl_solo=price_123.
    products: tuple[tuple[str, str], ...] = ()
    #: Where the Stripe client sends its calls (tests point it at a local server).
    stripe_api_url: str = "https://api.stripe.com"
    #: Timeout of one call to Stripe's API.
    stripe_timeout_seconds: float = 20.0

    ENV: ClassVar = {
        "stripe_secret_key": ("STRIPE_SECRET_KEY", SECRET),
        "products": ("BILLING_PRODUCTS", PRODUCTS),
        "stripe_api_url": ("STRIPE_API_URL", URL),
        "stripe_timeout_seconds": ("STRIPE_TIMEOUT_SECONDS", POSITIVE),
    }


class EmailSettings(msgspec.Struct, kw_only=True, frozen=True):
    #: dev (SMTP to Mailpit; refused in production), smtp, resend or postmark.
    provider: EmailProvider = "dev"
    #: Failover order (e.g. resend,postmark). Empty: EMAIL_PROVIDER alone.
    providers: tuple[EmailProvider, ...] = ()
    #: Default sender of a send through the platform's providers that gives no from (through a
    #: tenant's credential: its from_email).
    sender: str = "Mimic <no-reply@mimic.local>"
    #: SMTP host for EMAIL_PROVIDER=dev (Mailpit, or `make mail`).
    dev_smtp_host: str = "localhost"
    #: SMTP port for EMAIL_PROVIDER=dev.
    dev_smtp_port: int = 1025
    #: None: no platform SMTP server (tenants may still bring their own).
    smtp_host: str | None = None
    #: Port of the platform SMTP server.
    smtp_port: int = 587
    #: SMTP login (optional).
    smtp_username: str | None = None
    #: SMTP password (optional).
    smtp_password: Secret | None = None
    #: starttls, tls (implicit, e.g. port 465) or none.
    smtp_security: SmtpSecurity = "starttls"
    #: The platform's Resend key.
    resend_api_key: Secret | None = None
    #: Resend API base (tests point it at a local server).
    resend_api_url: str = "https://api.resend.com"
    #: The platform's Postmark server token.
    postmark_server_token: Secret | None = None
    #: Postmark API base.
    postmark_api_url: str = "https://api.postmarkapp.com"
    #: Timeout of one step of a provider call (connect, read, one SMTP command).
    provider_timeout_seconds: float = 10.0
    #: One SMTP attempt (resolve, connect, every command) ends after this long overall.
    smtp_send_deadline_seconds: float = 30.0
    #: After an attempt that may have reached Postmark, wait this long before searching
    #: Postmark for it (its search index lags), then send only if it is not there.
    postmark_recheck_seconds: float = 60.0
    #: Send attempts before a notification is failed.
    max_attempts: int = 8
    #: First delay before retrying a send (jittered, doubling).
    backoff_base_seconds: float = 2.0
    #: Cap on a send's retry delay (also caps Retry-After).
    backoff_max_seconds: float = 3600.0
    #: BYOK: tenants' provider keys are sealed with the first key; any key opens. Required in
    #: production; unset in dev: `make run` creates one in MIMIC_DATA_DIR.
    encryption_keys: tuple[EncryptionKey, ...] = ()
    #: Tenant SMTP hosts allowed despite resolving to a non-public address (or, as
    #: host:port, on a port other than 25, 465, 587, 2525). Empty: public servers only.
    smtp_allowed_hosts: tuple[str, ...] = ()
    #: Sends per second per credential, shared by every worker (0: no limit). Resend allows
    #: 2 per second per team by default.
    resend_rate_per_second: float = 2.0
    #: The same for Postmark.
    postmark_rate_per_second: float = 10.0
    #: The same for SMTP (0: no limit).
    smtp_rate_per_second: float = 0.0
    #: A provider credential is skipped for EMAIL_CIRCUIT_COOLDOWN_SECONDS after this many
    #: certain failures in a row within EMAIL_CIRCUIT_WINDOW_SECONDS (shared by every worker).
    circuit_failures: int = 5
    #: The window those failures must fall in.
    circuit_window_seconds: float = 60.0
    #: How long an open circuit skips the credential.
    circuit_cooldown_seconds: float = 30.0

    @property
    def provider_order(self) -> tuple[EmailProvider, ...]:
        return self.providers or (self.provider,)

    ENV: ClassVar = {
        "provider": ("EMAIL_PROVIDER", choice(EmailProvider)),
        "sender": ("EMAIL_FROM", TEXT),
        "dev_smtp_host": ("DEV_SMTP_HOST", TEXT),
        "dev_smtp_port": ("DEV_SMTP_PORT", PORT),
        "smtp_host": ("SMTP_HOST", TEXT),
        "smtp_port": ("SMTP_PORT", PORT),
        "smtp_username": ("SMTP_USERNAME", TEXT),
        "smtp_password": ("SMTP_PASSWORD", SECRET),
        "smtp_security": ("SMTP_SECURITY", choice(SmtpSecurity)),
        "resend_api_key": ("RESEND_API_KEY", SECRET),
        "resend_api_url": ("RESEND_API_URL", URL),
        "postmark_server_token": ("POSTMARK_SERVER_TOKEN", SECRET),
        "postmark_api_url": ("POSTMARK_API_URL", URL),
        "provider_timeout_seconds": ("PROVIDER_TIMEOUT_SECONDS", POSITIVE),
        "smtp_send_deadline_seconds": ("SMTP_SEND_DEADLINE_SECONDS", seconds(1, 600)),
        "postmark_recheck_seconds": ("POSTMARK_RECHECK_SECONDS", POSITIVE),
        "max_attempts": ("EMAIL_MAX_ATTEMPTS", integer(low=1)),
        "backoff_base_seconds": ("EMAIL_BACKOFF_BASE_SECONDS", POSITIVE),
        "backoff_max_seconds": ("EMAIL_BACKOFF_MAX_SECONDS", POSITIVE),
        "encryption_keys": ("MIMIC_ENCRYPTION_KEYS", ENCRYPTION_KEYS),
        "smtp_allowed_hosts": ("SMTP_ALLOWED_HOSTS", HOSTS),
        "providers": ("EMAIL_PROVIDERS", choices(EmailProvider)),
        "resend_rate_per_second": ("RESEND_RATE_PER_SECOND", RATE),
        "postmark_rate_per_second": ("POSTMARK_RATE_PER_SECOND", RATE),
        "smtp_rate_per_second": ("SMTP_RATE_PER_SECOND", RATE),
        "circuit_failures": ("EMAIL_CIRCUIT_FAILURES", integer(low=1)),
        "circuit_window_seconds": ("EMAIL_CIRCUIT_WINDOW_SECONDS", POSITIVE),
        "circuit_cooldown_seconds": ("EMAIL_CIRCUIT_COOLDOWN_SECONDS", POSITIVE),
    }


class WorkerSettings(msgspec.Struct, kw_only=True, frozen=True):
    #: Jobs of the webhooks and maintenance queues one worker runs at once (deliveries to
    #: internal services, email events, sweeps). Their own slots: they never wait behind mail.
    concurrency_webhooks: int = 10
    #: Email sends one worker runs at once (lone sends and the sends of a batch job alike).
    concurrency_email: int = 10
    #: At most this many of the email slots serve one tenant at once; the tenant's next send
    #: waits in the queue (briefly, without spending an attempt) for one of them.
    tenant_email_slots: int = 3
    #: How often a worker proves it is alive.
    heartbeat_seconds: float = 10.0
    #: A worker silent this long is presumed dead; its jobs are retried.
    stalled_after_seconds: float = 30.0
    #: How long SIGTERM waits for in-flight jobs; jobs still running then go back to the queue.
    shutdown_grace_seconds: float = 30.0
    #: How often the sweep looks for jobs of dead workers (at most every 60 s).
    stalled_sweep_seconds: int = 60
    #: First delay before a job that met a database outage runs again (jittered, doubling,
    #: at most 60 s: the database usually comes back soon, and the worker waits for it).
    outage_retry_seconds: float = 2.0
    #: How often an idle worker looks for due jobs (retries scheduled for later are not
    #: announced by NOTIFY, so this bounds how late a retry can start).
    poll_seconds: float = 0.5
    #: Longest wait between two reconnection attempts while the database is away.
    reconnect_max_seconds: float = 30.0
    #: /healthz, /readyz and /metrics of the worker process; 0 serves none.
    health_port: int = 8007
    #: Where the worker serves /healthz, /readyz and /metrics.
    health_host: str = "127.0.0.1"

    ENV: ClassVar = {
        "concurrency_webhooks": ("WORKER_CONCURRENCY_WEBHOOKS", integer(1, 1000)),
        "concurrency_email": ("WORKER_CONCURRENCY_EMAIL", integer(1, 1000)),
        "tenant_email_slots": ("WORKER_TENANT_EMAIL_SLOTS", integer(1, 1000)),
        "heartbeat_seconds": ("WORKER_HEARTBEAT_SECONDS", POSITIVE),
        "stalled_after_seconds": ("WORKER_STALLED_AFTER_SECONDS", POSITIVE),
        "shutdown_grace_seconds": ("WORKER_SHUTDOWN_GRACE_SECONDS", POSITIVE),
        "stalled_sweep_seconds": ("STALLED_SWEEP_SECONDS", integer(1, 60)),
        "outage_retry_seconds": ("WORKER_OUTAGE_RETRY_SECONDS", POSITIVE),
        "poll_seconds": ("WORKER_POLL_SECONDS", POSITIVE),
        "reconnect_max_seconds": ("WORKER_RECONNECT_MAX_SECONDS", POSITIVE),
        "health_port": ("WORKER_HEALTH_PORT", integer(0, 65535)),
        "health_host": ("WORKER_HEALTH_HOST", TEXT),
    }


GROUPS: dict[str, type[msgspec.Struct]] = {
    "server": ServerSettings,
    "database": DatabaseSettings,
    "webhooks": WebhookSettings,
    "delivery": DeliverySettings,
    "retention": RetentionSettings,
    "inkpass": InkpassSettings,
    "billing": BillingSettings,
    "email": EmailSettings,
    "worker": WorkerSettings,
}


class Settings(msgspec.Struct, kw_only=True, frozen=True):
    #: dev or production. Production requires the secrets below marked "required in production",
    #: refuses the dev conveniences and hides dev-only endpoints.
    env: Env = "dev"
    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    database: DatabaseSettings = msgspec.field(default_factory=DatabaseSettings)
    webhooks: WebhookSettings = msgspec.field(default_factory=WebhookSettings)
    delivery: DeliverySettings = msgspec.field(default_factory=DeliverySettings)
    retention: RetentionSettings = msgspec.field(default_factory=RetentionSettings)
    inkpass: InkpassSettings = msgspec.field(default_factory=InkpassSettings)
    billing: BillingSettings = msgspec.field(default_factory=BillingSettings)
    email: EmailSettings = msgspec.field(default_factory=EmailSettings)
    worker: WorkerSettings = msgspec.field(default_factory=WorkerSettings)

    @property
    def is_dev(self) -> bool:
        return self.env == "dev"

    @property
    def admin_api_keys(self) -> tuple[Secret, ...]:
        """Keys accepted inbound with the admin scope. Never MIMIC_SERVICE_API_KEY: that one
        is what Mimic sends to inkpass, and accepting it back would give inkpass full access."""
        if self.is_dev and not self.server.api_keys:
            return (Secret(DEV_API_KEY),)
        return self.server.api_keys

    def with_database_url(self, url: str) -> Settings:
        database = msgspec.structs.replace(self.database, url=Secret(url))
        return msgspec.structs.replace(self, database=database)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build settings from an environment mapping; raise ConfigError naming the variable."""
        env_raw = (environ.get("MIMIC_ENV") or "").strip() or "dev"
        env_parser = choice(Env)
        try:
            env = env_parser.parse(env_raw)
        except ValueError:
            raise ConfigError(f"MIMIC_ENV: invalid value, expected {env_parser.hint}") from None
        if (environ.get("WORKER_CONCURRENCY") or "").strip():
            raise ConfigError(
                "WORKER_CONCURRENCY: replaced by WORKER_CONCURRENCY_WEBHOOKS and "
                "WORKER_CONCURRENCY_EMAIL (each queue has its own slots); set those instead"
            )
        groups: dict[str, Any] = {name: read_group(g, environ) for name, g in GROUPS.items()}
        settings = cls(env=env, **groups)
        if not (environ.get("MIMIC_ENV") or "").strip():
            _require_loopback_for_implicit_dev(settings)
        if env == "production":
            _require_production(settings, environ)
        elif settings.inkpass.service_api_key is None:
            # Dev convenience only: production refuses to start without a real key.
            inkpass = msgspec.structs.replace(settings.inkpass, service_api_key=Secret(DEV_API_KEY))
            settings = msgspec.structs.replace(settings, inkpass=inkpass)
        return settings


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _require_loopback_for_implicit_dev(settings: Settings) -> None:
    """Dev by default only on this machine: dev accepts the documented dev key and serves the
    unsigned Stripe test endpoint, which must never be on a network by accident. A deliberate
    ``MIMIC_ENV=dev`` (the dev compose file, inside its container) may listen wider."""
    host = settings.server.host
    if not _is_loopback(host):
        raise ConfigError(
            f"MIMIC_HOST: {host} is not a loopback address and MIMIC_ENV is unset (dev: the dev "
            "key and the unsigned Stripe test endpoint would be on the network); set "
            "MIMIC_ENV=production, or MIMIC_ENV=dev to mean it"
        )


def _require_production(settings: Settings, environ: Mapping[str, str]) -> None:
    required = {
        "DATABASE_URL": settings.database.url,
        # Not a secret, but the dev default (localhost) would silently drop billing events.
        "INKPASS_INTERNAL_URL": environ.get("INKPASS_INTERNAL_URL") or None,
        "STRIPE_WEBHOOK_SECRET": settings.webhooks.stripe_secret,
        "RESEND_WEBHOOK_SECRET": settings.webhooks.resend_secret,
        "MIMIC_SERVICE_API_KEY": settings.inkpass.service_api_key,
        "MIMIC_ENCRYPTION_KEYS": settings.email.encryption_keys or None,
    }
    missing = [name for name, value in required.items() if value is None]
    if missing:
        raise ConfigError(f"{', '.join(missing)}: required when MIMIC_ENV=production but not set")
    service = settings.inkpass.service_api_key
    keys = {
        "MIMIC_API_KEYS": settings.server.api_keys,
        "MIMIC_SERVICE_API_KEY": (service,),
        "METRICS_API_KEY": (settings.server.metrics_api_key,),
    }
    for name, values in keys.items():
        for value in values:
            if value is not None and value.get() == DEV_API_KEY:
                raise ConfigError(f"{name}: the dev key is refused when MIMIC_ENV=production")
            if value is not None and len(value.get()) < MIN_KEY_LENGTH:
                raise ConfigError(
                    f"{name}: keys must be at least {MIN_KEY_LENGTH} characters when "
                    "MIMIC_ENV=production (e.g. `python -c 'import secrets; "
                    "print(secrets.token_urlsafe(32))'`)"
                )
    if service is not None and any(key.get() == service.get() for key in settings.server.api_keys):
        raise ConfigError(
            "MIMIC_API_KEYS: a value equals MIMIC_SERVICE_API_KEY, the key Mimic sends to "
            "inkpass (inkpass would hold admin access); use different keys"
        )
    postmark = settings.webhooks.postmark_secret
    if postmark is not None and len(postmark.get()) < MIN_KEY_LENGTH:
        raise ConfigError(
            f"POSTMARK_WEBHOOK_SECRET: at least {MIN_KEY_LENGTH} characters when "
            "MIMIC_ENV=production (it is the webhook URL's Basic-auth password, Postmark's only "
            "proof of origin)"
        )
    if "dev" in settings.email.provider_order:
        raise ConfigError(
            "EMAIL_PROVIDER: 'dev' (local SMTP, no TLS) is refused when MIMIC_ENV=production; "
            "use smtp, resend or postmark"
        )


def every_secret(settings: Settings) -> list[str]:
    """Every configured secret value, for the log filter."""
    values: list[str] = []
    for group_name in GROUPS:
        group = getattr(settings, group_name)
        for field in msgspec.structs.fields(group):
            value = getattr(group, field.name)
            for item in value if isinstance(value, tuple) else (value,):
                if isinstance(item, Secret):
                    values.append(item.get())
                elif isinstance(item, EncryptionKey):
                    values.append(item.key.get())
    return values
