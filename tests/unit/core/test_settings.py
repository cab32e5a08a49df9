from __future__ import annotations

import msgspec
import pytest

from mimic.core.logs import RedactSecrets, settings_secrets
from mimic.core.settings import GROUPS, ConfigError, InkpassSettings, Secret, Settings
from tests.helpers import TEST_SECRETS


def test_defaults_are_dev_with_embedded_database() -> None:
    settings = Settings.from_env({})
    assert settings.env == "dev"
    assert settings.database.url is None
    assert settings.server.port == 8006
    assert settings.email.provider == "dev"
    assert (settings.email.dev_smtp_host, settings.email.dev_smtp_port) == ("localhost", 1025)


def test_reads_the_seed_variable_names() -> None:
    settings = Settings.from_env(
        {
            "DATABASE_URL": "postgresql://u@h/db",
            "STRIPE_SECRET_KEY": "sk_test_x",
            "STRIPE_WEBHOOK_SECRET": "whsec_x",
            "RESEND_WEBHOOK_SECRET": "whsec_c2VjcmV0",
            "INKPASS_INTERNAL_URL": "http://inkpass:8002/",
            "MIMIC_SERVICE_API_KEY": "svc",
            "EMAIL_PROVIDER": "postmark",
            "DEV_SMTP_HOST": "mailpit",
            "DEV_SMTP_PORT": "2525",
        }
    )
    assert settings.database.url == Secret("postgresql://u@h/db")
    assert settings.webhooks.stripe_secret == Secret("whsec_x")
    assert settings.inkpass.url == "http://inkpass:8002"
    assert settings.email.provider == "postmark"
    assert (settings.email.dev_smtp_host, settings.email.dev_smtp_port) == ("mailpit", 2525)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DEV_SMTP_PORT", "abc"),
        ("MIMIC_PORT", "70000"),
        ("MIMIC_ENV", "staging"),
        ("EMAIL_PROVIDER", "sendgrid"),
        ("INKPASS_INTERNAL_URL", "inkpass:8002"),
        ("DELIVERY_BACKOFF_BASE_SECONDS", "-1"),
        ("MIMIC_ENCRYPTION_KEYS", "k1:not-base64"),
        ("RESEND_WEBHOOK_SECRET", "whsec_not base64!"),
        ("METRICS_QUEUE_CACHE_SECONDS", "61"),
        ("METRICS_QUEUE_CACHE_SECONDS", "-1"),
        ("METRICS_QUEUE_CACHE_SECONDS", "nan"),
    ],
)
def test_bad_value_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({name: value})
    message = str(info.value)
    assert message.startswith(f"{name}:")
    assert "\n" not in message
    assert value not in message


def test_bad_secret_value_is_never_echoed() -> None:
    key = "k1:c2VjcmV0LXRvby1zaG9ydA=="  # valid base64, wrong length
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"MIMIC_ENCRYPTION_KEYS": key})
    assert "c2VjcmV0" not in str(info.value)


def test_production_refuses_missing_secrets() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"MIMIC_ENV": "production", "DATABASE_URL": "postgresql://x/y"})
    message = str(info.value)
    for name in (
        "STRIPE_WEBHOOK_SECRET",
        "RESEND_WEBHOOK_SECRET",
        "MIMIC_SERVICE_API_KEY",
        "INKPASS_INTERNAL_URL",
    ):
        assert name in message
    assert "DATABASE_URL" not in message


PRODUCTION = {
    **TEST_SECRETS,
    "MIMIC_ENV": "production",
    "DATABASE_URL": "postgresql://x/y",
    "INKPASS_INTERNAL_URL": "http://inkpass:8002",
    "EMAIL_PROVIDER": "resend",
}


def test_production_with_every_secret_starts() -> None:
    assert Settings.from_env(PRODUCTION).env == "production"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"MIMIC_API_KEYS": "mimic-dev-key"}, "MIMIC_API_KEYS: the dev key"),
        ({"MIMIC_SERVICE_API_KEY": "mimic-dev-key"}, "MIMIC_SERVICE_API_KEY: the dev key"),
        ({"MIMIC_API_KEYS": "x" * 40 + ",short-key-31-characters-long-xx"}, "MIMIC_API_KEYS: keys"),
        ({"MIMIC_SERVICE_API_KEY": "y" * 31}, "MIMIC_SERVICE_API_KEY: keys must be at least 32"),
        ({"EMAIL_PROVIDER": "dev"}, "EMAIL_PROVIDER: 'dev'"),
        ({"EMAIL_PROVIDER": ""}, "EMAIL_PROVIDER: 'dev'"),  # the default is dev
        ({"MIMIC_ENCRYPTION_KEYS": ""}, "MIMIC_ENCRYPTION_KEYS"),
        (
            {"MIMIC_API_KEYS": "x" * 40 + "," + TEST_SECRETS["MIMIC_SERVICE_API_KEY"]},
            "MIMIC_API_KEYS: a value equals MIMIC_SERVICE_API_KEY",
        ),
        ({"POSTMARK_WEBHOOK_SECRET": "p" * 31}, "POSTMARK_WEBHOOK_SECRET: at least 32"),
        ({"METRICS_API_KEY": "m" * 31}, "METRICS_API_KEY: keys must be at least 32"),
        ({"METRICS_API_KEY": "mimic-dev-key"}, "METRICS_API_KEY: the dev key"),
    ],
)
def test_production_refuses_dev_conveniences(change: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**PRODUCTION, **change})
    assert named in str(info.value)
    assert "x" * 40 not in str(info.value)  # never echoes a key


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.7", "::", "mimic.example"])
def test_dev_by_default_refuses_to_listen_beyond_loopback(host: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"MIMIC_HOST": host})
    assert str(info.value).startswith(f"MIMIC_HOST: {host} is not a loopback address")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.9", "localhost", "::1", "[::1]"])
def test_dev_by_default_listens_on_loopback(host: str) -> None:
    assert Settings.from_env({"MIMIC_HOST": host}).server.host == host


def test_dev_said_out_loud_may_listen_wider() -> None:
    # compose.dev.yaml: MIMIC_ENV=dev inside a container, published on the host's loopback.
    assert Settings.from_env({"MIMIC_ENV": "dev", "MIMIC_HOST": "0.0.0.0"}).is_dev


def test_the_former_single_concurrency_is_refused_with_its_replacements() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"WORKER_CONCURRENCY": "20"})
    assert "WORKER_CONCURRENCY_WEBHOOKS" in str(info.value)
    assert "WORKER_CONCURRENCY_EMAIL" in str(info.value)
    worker = Settings.from_env({"WORKER_CONCURRENCY_EMAIL": "4"}).worker
    assert (worker.concurrency_webhooks, worker.concurrency_email) == (10, 4)


def test_secret_repr_is_masked() -> None:
    settings = Settings.from_env(TEST_SECRETS)
    text = repr(settings)
    for value in TEST_SECRETS.values():
        assert value not in text


def test_log_filter_masks_every_configured_secret() -> None:
    import logging

    settings = Settings.from_env(TEST_SECRETS)
    secret = TEST_SECRETS["STRIPE_WEBHOOK_SECRET"]
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "key=%s", (secret,), None)
    RedactSecrets(settings_secrets(settings)).filter(record)
    assert secret not in record.getMessage()
    assert "[redacted]" in record.getMessage()


def test_database_password_is_masked_in_logs_even_alone() -> None:
    import logging

    settings = Settings.from_env({"DATABASE_URL": "postgresql://mimic:S3cret%25zzPW@db/mimic"})
    record = logging.LogRecord(
        "psycopg.pool", logging.WARNING, __file__, 1, 'invalid token: "S3cret%zzPW"', None, None
    )
    RedactSecrets(settings_secrets(settings)).filter(record)
    assert "S3cret" not in record.getMessage()


def test_dev_gets_a_documented_admin_key_production_does_not() -> None:
    assert Settings.from_env({}).admin_api_keys == (Secret("mimic-dev-key"),)
    # Configured admin keys replace it, in dev too.
    assert Settings.from_env({"MIMIC_API_KEYS": "a,b"}).admin_api_keys == (
        Secret("a"),
        Secret("b"),
    )
    assert Settings.from_env(PRODUCTION).admin_api_keys == (Secret(TEST_SECRETS["MIMIC_API_KEYS"]),)
    with pytest.raises(ConfigError, match="MIMIC_SERVICE_API_KEY"):
        Settings.from_env({"MIMIC_ENV": "production"})


def test_the_service_key_is_never_accepted_inbound() -> None:
    settings = Settings.from_env({"MIMIC_SERVICE_API_KEY": "svc-key-for-inkpass"})
    assert Secret("svc-key-for-inkpass") not in settings.admin_api_keys
    assert settings.inkpass.service_api_key == Secret("svc-key-for-inkpass")


def test_every_setting_has_one_variable_and_one_default() -> None:
    names: list[str] = []
    for group in GROUPS.values():
        fields = {f.name for f in msgspec.structs.fields(group)}
        env = group.ENV  # type: ignore[attr-defined]
        assert set(env) == fields, f"{group.__name__}: fields without a variable or the reverse"
        names += [name for name, _ in env.values()]
    assert len(names) == len(set(names)), "a variable is read by two settings"
    # Defaults live on the fields: an empty environment is the all-default settings.
    assert msgspec.structs.replace(Settings.from_env({}), inkpass=InkpassSettings()) == Settings()


def test_email_and_delivery_retries_are_set_apart() -> None:
    settings = Settings.from_env(
        {"DELIVERY_BACKOFF_BASE_SECONDS": "0.5", "EMAIL_BACKOFF_BASE_SECONDS": "7"}
    )
    assert settings.delivery.backoff_base_seconds == 0.5
    assert settings.email.backoff_base_seconds == 7.0


def test_the_metrics_key_is_a_secret_masked_everywhere() -> None:
    import logging

    key = "metrics-key-0123456789abcdef0123456789"
    settings = Settings.from_env({**PRODUCTION, "METRICS_API_KEY": key})
    assert settings.server.metrics_api_key == Secret(key)
    assert key not in repr(settings)
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "got %s", (key,), None)
    RedactSecrets(settings_secrets(settings)).filter(record)
    assert key not in record.getMessage()
    # Unset: /metrics stays open (the README says to keep it off the network then).
    assert Settings.from_env(PRODUCTION).server.metrics_api_key is None
    assert Settings.from_env({}).server.metrics_queue_cache_seconds == 5.0


def test_api_rates_are_bounded_and_only_admin_keys_may_be_unlimited() -> None:
    server = Settings.from_env({}).server
    assert (server.api_rate_per_second, server.api_burst) == (20.0, 40)
    assert (server.api_admin_rate_per_second, server.api_admin_burst) == (200.0, 400)
    admin = Settings.from_env({"API_ADMIN_RATE_PER_SECOND": "0"}).server
    assert admin.api_admin_rate_per_second == 0
    for name, value in [
        ("API_RATE_PER_SECOND", "0"),
        ("API_RATE_PER_SECOND", "0.01"),
        ("API_RATE_PER_SECOND", "20000"),
        ("API_RATE_PER_SECOND", "nan"),
        ("API_ADMIN_RATE_PER_SECOND", "0.05"),
        ("API_ADMIN_RATE_PER_SECOND", "inf"),
        ("API_BURST", "0"),
        ("API_BURST", "100001"),
        ("API_ADMIN_BURST", "1.5"),
    ]:
        with pytest.raises(ConfigError, match=f"^{name}: invalid value, expected "):
            Settings.from_env({name: value})
