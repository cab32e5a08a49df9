"""MIMIC_ROUTES_FILE: destinations and routes kept in git, checked at startup, read-only
through the API."""

from __future__ import annotations

import pathlib
import textwrap

import asyncpg
import pytest

from mimic.app import create_app
from mimic.core.settings import ConfigError
from mimic.events.routes_file import route_id
from tests.helpers import ADMIN, client_for, make_settings

DESTINATIONS = "/api/v1/gateway/destinations"
ROUTES = "/api/v1/gateway/routes"
SECRET = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="

FILE = """\
# Routes to the CRM, reviewed like code.
[[destinations]]
name = "crm"
url = "http://127.0.0.1:9"
api_key = { header = "Authorization", value_env = "CRM_TOKEN" }
signing_secret_env = "CRM_SECRET"
policy = { timeout_seconds = 5, max_attempts = 4 }

[[routes]]
name = "bounces-to-crm"
provider = "resend"
event_types = ["email.bounced", "email.complained"]
destination = "crm"
path = "/hooks/email"

[[routes]]
name = "pro-subscriptions"
provider = "stripe"
event_types = ["customer.subscription.*"]
destination = "crm"
body = "event"
filter = [{ path = "data.object.metadata.product_type", op = "eq", value = "pro" }]
"""


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_TOKEN", "Bearer crm-token-0123456789")
    monkeypatch.setenv("CRM_SECRET", SECRET)


def write(tmp_path: pathlib.Path, text: str) -> str:
    path = tmp_path / "routes.toml"
    path.write_text(textwrap.dedent(text))
    return str(path)


async def test_the_file_defines_routes_that_the_api_cannot_change(
    database_url: str, db: asyncpg.Connection, tmp_path: pathlib.Path
) -> None:
    settings = make_settings(database_url, MIMIC_ROUTES_FILE=write(tmp_path, FILE))
    async with client_for(create_app(settings)) as client:
        crm = (await client.get(f"{DESTINATIONS}/crm", headers=ADMIN)).json()
        assert crm["managed_by"] == "config"
        assert crm["api_key"] == {"header": "Authorization", "last4": "6789"}
        assert len(crm["signing_secrets"]) == 1
        assert crm["policy"]["max_attempts"] == 4
        routes = (await client.get(ROUTES, params={"destination": "crm"}, headers=ADMIN)).json()
        assert [r["name"] for r in routes] == ["bounces-to-crm", "pro-subscriptions"]
        assert {r["managed_by"] for r in routes} == {"config"}
        rid = str(route_id("pro-subscriptions"))
        for response in (
            await client.patch(f"{ROUTES}/{rid}", json={"path": "/x"}, headers=ADMIN),
            await client.delete(f"{ROUTES}/{rid}", headers=ADMIN),
            await client.patch(f"{DESTINATIONS}/crm", json={"url": "http://x"}, headers=ADMIN),
            await client.delete(f"{DESTINATIONS}/crm", headers=ADMIN),
            await client.post(f"{DESTINATIONS}/crm/rotate-secret", headers=ADMIN),
        ):
            assert response.status_code == 409, response.text
            assert response.json()["error"] == "managed_by_config"
            assert "MIMIC_ROUTES_FILE" in response.json()["detail"]
        # Pausing is an operator's action, not configuration.
        paused = await client.post(f"{DESTINATIONS}/crm/pause", headers=ADMIN)
        assert paused.json()["state"] == "paused"
        matched = await client.post(
            f"{ROUTES}/test",
            json={
                "provider": "stripe",
                "payload": {
                    "type": "customer.subscription.updated",
                    "data": {"object": {"metadata": {"product_type": "pro"}}},
                },
            },
            headers=ADMIN,
        )
        [match] = [m for m in matched.json()["matched"] if m["route"]["destination"] == "crm"]
        assert match["destination_state"] == "paused"
        assert match["route"]["name"] == "pro-subscriptions"
        assert match["request"]["headers"]["Authorization"] == "****6789"
    sync = await db.fetchrow("SELECT key_id, outcome, detail FROM audit_log")
    assert sync is not None
    assert (sync["key_id"], sync["outcome"]) == ("routes-file", "ok")

    # The next start, with one route gone from the file: it is removed; the pause stays.
    shorter = FILE[: FILE.index('[[routes]]\nname = "pro-subscriptions"')]
    settings = make_settings(database_url, MIMIC_ROUTES_FILE=write(tmp_path, shorter))
    async with client_for(create_app(settings)) as client:
        routes = (await client.get(ROUTES, params={"destination": "crm"}, headers=ADMIN)).json()
        assert [r["name"] for r in routes] == ["bounces-to-crm"]
        crm = (await client.get(f"{DESTINATIONS}/crm", headers=ADMIN)).json()
        assert crm["state"] == "paused"

    # Without the file, its destination goes to the API once nothing refers to it.
    settings = make_settings(database_url, MIMIC_ROUTES_FILE=write(tmp_path, "# empty\n"))
    async with client_for(create_app(settings)) as client:
        assert (await client.get(f"{DESTINATIONS}/crm", headers=ADMIN)).status_code == 404
        assert len((await client.get(ROUTES, headers=ADMIN)).json()) == 4  # the seed's


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (('"customer.subscription.*"', '"customer.subscriptoin.*"'), ":19: routes[1].event_types"),
        (('op = "eq"', 'op = "like"'), ":22: routes[1].filter"),
        (('destination = "crm"\nbody', 'destination = "erp"\nbody'), ":20: routes[1].destination"),
        (('url = "http://127.0.0.1:9"', 'url = "127.0.0.1:9"'), ":4: destinations[0].url"),
        (
            ('path = "/hooks/email"', 'path = "/hooks/email"\ncolour = "red"'),
            ":15: routes[0].colour",
        ),
        (('value_env = "CRM_TOKEN"', 'value_env = "NO_SUCH_VAR"'), ":5: destinations[0].api_key"),
    ],
)
def test_a_bad_file_stops_startup_naming_the_line_and_field(
    database_url: str, tmp_path: pathlib.Path, change: tuple[str, str], where: str
) -> None:
    old, new = change
    assert old in FILE
    path = write(tmp_path, FILE.replace(old, new, 1))
    with pytest.raises(ConfigError) as raised:
        create_app(make_settings(database_url, MIMIC_ROUTES_FILE=path))
    assert str(raised.value).startswith(path + where), str(raised.value)


def test_a_file_that_is_not_toml_says_so(database_url: str, tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "[[routes]\nname = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        create_app(make_settings(database_url, MIMIC_ROUTES_FILE=path))
