"""Property-based: whatever a caller sends, the answer is a 2xx or a 4xx with Mimic's error
body, never a 5xx, and a refused request stores nothing. Bodies are validly signed where
signing applies, so the fuzzing reaches past the signature check."""

from __future__ import annotations

import base64
import datetime
import json
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar import Litestar
from litestar.testing import TestClient
from svix.webhooks import Webhook

from mimic.app import create_app
from tests.helpers import TEST_SECRETS, make_settings, stripe_headers

FUZZ = settings(
    derandomize=True,  # the same examples on every run: CI is not a lottery
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
KEY = {"X-API-Key": TEST_SECRETS["MIMIC_API_KEYS"]}
WEBHOOKS = "/api/v1/gateway/webhooks"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
event_like = st.fixed_dictionaries(
    {},
    optional={
        "id": st.text(max_size=300) | json_values,
        "type": st.sampled_from(["invoice.paid", "email.bounced", "Delivery"]) | json_values,
        "data": json_values,
        "RecordType": st.sampled_from(["Delivery", "Bounce"]) | json_values,
        "MessageID": st.text(max_size=40) | json_values,
    },
)
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    event_like.map(lambda v: json.dumps(v).encode()),
)
header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=40)


@pytest.fixture
def client(database_url: str) -> Iterator[TestClient[Litestar]]:
    with TestClient(create_app(make_settings(database_url)), raise_server_exceptions=False) as c:
        yield c


class Store:
    """Counts of what a request could have stored."""

    def __init__(self, database_url: str) -> None:
        self.conn = psycopg.connect(database_url, autocommit=True)

    def counts(self) -> tuple[int, ...]:
        row = self.conn.execute(
            "SELECT (SELECT count(*) FROM webhook_events), (SELECT count(*) FROM notifications),"
            " (SELECT count(*) FROM procrastinate_jobs), (SELECT count(*) FROM audit_log)"
        ).fetchone()
        assert row is not None
        return tuple(row)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    found = Store(database_url)
    yield found
    found.conn.close()


def check(response: Any, before: tuple[int, ...], store: Store) -> None:
    assert response.status_code < 500, (response.status_code, response.text)
    if response.status_code >= 400:
        assert set(response.json()) == {"error", "detail"}, response.text
        assert store.counts() == before, "a refused request stored something"


@FUZZ
@given(body=bodies)
def test_signed_stripe_bodies(client: TestClient[Litestar], store: Store, body: bytes) -> None:
    before = store.counts()
    try:
        headers = stripe_headers(body)
    except UnicodeDecodeError:  # Stripe signs text; send a signature over something else
        headers = {"Stripe-Signature": f"t={int(time.time())},v1={'0' * 64}"}
    check(client.post(f"{WEBHOOKS}/stripe", content=body, headers=headers), before, store)


@FUZZ
@given(
    body=bodies,
    msg_id=header_text,
    extra=st.dictionaries(
        st.from_regex(r"\A[A-Za-z][A-Za-z0-9-]{0,20}\Z"), header_text, max_size=2
    ),
)
def test_signed_resend_bodies_and_headers(
    client: TestClient[Litestar], store: Store, body: bytes, msg_id: str, extra: dict[str, str]
) -> None:
    before = store.counts()
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in extra.items() if k.strip()]
    stamp = datetime.datetime.now(datetime.UTC)
    try:
        signature = Webhook(TEST_SECRETS["RESEND_WEBHOOK_SECRET"]).sign(
            msg_id, stamp, body.decode()
        )
    except UnicodeDecodeError:  # svix signs text; send a signature over something else
        signature = "v1,AAAA"
    headers += [
        (b"svix-id", msg_id.encode("latin-1")),
        (b"svix-timestamp", str(int(stamp.timestamp())).encode()),
        (b"svix-signature", signature.encode()),
    ]
    check(client.post(f"{WEBHOOKS}/resend", content=body, headers=headers), before, store)


@FUZZ
@given(body=bodies, user=header_text)
def test_postmark_bodies(
    client: TestClient[Litestar], store: Store, body: bytes, user: str
) -> None:
    before = store.counts()
    password = TEST_SECRETS["POSTMARK_WEBHOOK_SECRET"]
    auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    response = client.post(f"{WEBHOOKS}/postmark", content=body, headers={"Authorization": auth})
    check(response, before, store)


notification_like = st.fixed_dictionaries(
    {},
    optional={
        "to": st.emails() | st.lists(st.emails(), max_size=3) | json_values,
        "template": st.sampled_from(["welcome", "password_reset", "nope"]) | json_values,
        "data": st.dictionaries(st.text(max_size=10), json_values, max_size=4) | json_values,
        "locale": st.text(max_size=50) | json_values,
        "tenant_id": st.text(max_size=70) | json_values,
        "from": st.text(max_size=40) | json_values,
        "tags": st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=3),
        "send_at": st.datetimes().map(lambda d: d.isoformat()) | json_values,
        "provider": st.sampled_from(["dev", "smtp", "x"]) | json_values,
    },
)


@FUZZ
@given(body=notification_like, key=st.none() | header_text)
def test_notification_sends(
    client: TestClient[Litestar], store: Store, body: dict[str, Any], key: str | None
) -> None:
    before = store.counts()
    headers: dict[str, Any] = dict(KEY)
    if key is not None:
        headers["Idempotency-Key"] = key.encode("latin-1")
    headers["Content-Type"] = "application/json"
    # json.dumps writes NaN and Infinity as bare words: invalid JSON, which is fuzz too.
    content = json.dumps(body).encode()
    check(
        client.post("/api/v1/notifications/email", content=content, headers=headers), before, store
    )


@FUZZ
@given(
    params=st.dictionaries(
        st.sampled_from(["provider", "status", "event_type", "since", "until", "limit", "cursor"]),
        st.text(max_size=40),
        max_size=4,
    ),
    path=st.sampled_from(["/events", "/deliveries"]),
)
def test_admin_lists(
    client: TestClient[Litestar], store: Store, params: dict[str, str], path: str
) -> None:
    before = store.counts()
    check(client.get(f"{WEBHOOKS}{path}", params=params, headers=KEY), before, store)
