"""compose.yaml ships no secret, publishes nothing beyond this machine, and the image build
context leaves local state out. (Docker is not needed: the files are read as data.)"""

from __future__ import annotations

import re
from typing import Any

import yaml

from tests.helpers import ROOT

SECRETS = (
    "STRIPE_WEBHOOK_SECRET",
    "RESEND_WEBHOOK_SECRET",
    "MIMIC_SERVICE_API_KEY",
    "MIMIC_ENCRYPTION_KEYS",
)


def compose(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / name).read_text())
    return loaded


def test_production_compose_requires_every_secret_from_the_environment() -> None:
    env = compose("compose.yaml")["x-mimic-env"]
    assert env["MIMIC_ENV"] == "production"
    for name in SECRETS:
        assert re.fullmatch(rf"\$\{{{name}:\?[^}}]+\}}", env[name]), f"{name}: {env[name]}"
    assert ":?" in env["DATABASE_URL"]  # the Postgres password too
    assert "mimic:mimic@" not in env["DATABASE_URL"]


def test_published_ports_are_bound_to_loopback() -> None:
    for name in ("compose.yaml", "compose.dev.yaml"):
        for service, spec in compose(name)["services"].items():
            for port in spec.get("ports", []):
                assert str(port).startswith("127.0.0.1:"), f"{name} {service}: {port}"


def test_services_that_call_the_host_can_resolve_it() -> None:
    for service in ("mimic", "mimic-worker"):
        spec = compose("compose.yaml")["services"][service]
        assert "host.docker.internal:host-gateway" in spec["extra_hosts"]
        assert spec["restart"] == "unless-stopped"


def test_the_dev_compose_matches_the_readme() -> None:
    env = compose("compose.dev.yaml")["x-mimic-env"]
    assert env["MIMIC_ENV"] == "dev"  # the dev key and the Stripe test endpoint


def test_the_build_context_leaves_local_state_out() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for path in (".venv", ".mimic", ".git", ".env"):
        assert path in ignored


def test_health_checks_take_their_port_from_settings() -> None:
    assert "MIMIC_PORT" in (ROOT / "Containerfile").read_text()
    worker = compose("compose.yaml")["services"]["mimic-worker"]["healthcheck"]["test"]
    assert "WORKER_HEALTH_PORT" in " ".join(worker)


def _interpolate(value: str, given: dict[str, str]) -> str:
    """compose's ${VAR:?msg} and ${VAR:-default}, with ``given`` as the environment."""

    def one(match: re.Match[str]) -> str:
        name, op, rest = match.group(1), match.group(2), match.group(3)
        if name in given:
            return given[name]
        assert op == ":-", f"{name} is required but the test gave no value"
        return rest

    return re.sub(r"\$\{(\w+)(:\?|:-)([^}]*)\}", one, value)


def test_production_compose_starts_when_its_required_values_are_given() -> None:
    from mimic.core.settings import Settings

    given = {
        "POSTGRES_PASSWORD": "pw",
        "STRIPE_WEBHOOK_SECRET": "whsec_x",
        "RESEND_WEBHOOK_SECRET": "whsec_eA==",
        "MIMIC_SERVICE_API_KEY": "s" * 32,
        "MIMIC_API_KEYS": "a" * 32,
        "MIMIC_ENCRYPTION_KEYS": "k1:" + "A" * 43 + "=",
        "INKPASS_INTERNAL_URL": "http://host.docker.internal:8002",
    }
    env = {
        k: _interpolate(str(v), given) for k, v in compose("compose.yaml")["x-mimic-env"].items()
    }
    settings = Settings.from_env(env)  # production refuses dev conveniences: none are left
    assert settings.env == "production"
    assert settings.email.provider == "smtp"
    assert settings.email.smtp_host == "mailpit"
