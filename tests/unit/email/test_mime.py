"""The MIME message Mimic sends over SMTP, flattened as aiosmtplib sends it."""

from __future__ import annotations

import email
import email.policy
import uuid

from aiosmtplib.email import flatten_message

from mimic.email.providers import OutgoingEmail
from mimic.email.providers.smtp import mime_message


def test_a_body_holding_the_boundary_line_does_not_split_the_message() -> None:
    """The boundary is Mimic's own (no search per message); a body that spells it out, even
    as a closing delimiter line, still arrives as two whole parts."""
    nid = str(uuid.uuid4())
    boundary = f"mimic-{nid}"
    text = f"before\n--{boundary}\nContent-Type: text/html\n\n<b>injected</b>\n--{boundary}--\n"
    outgoing = OutgoingEmail(
        notification_id=nid,
        sender="no-reply@mimic.local",
        to=["ann@example.com"],
        subject="Boundary",
        html=f"<p>{text}</p>",
        text=text,
    )
    mime = mime_message(outgoing)
    assert mime.get_boundary() == boundary

    parsed = email.message_from_bytes(flatten_message(mime), policy=email.policy.default)
    parts = list(parsed.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert parts[0].get_content().replace("\r\n", "\n") == text
    assert parts[1].get_content().replace("\r\n", "\n") == f"<p>{text}</p>"


def test_two_messages_have_different_boundaries() -> None:
    def build(nid: str) -> str | None:
        return mime_message(
            OutgoingEmail(
                notification_id=nid, sender="a@b.c", to=["d@e.f"], subject="s", html="h", text="t"
            )
        ).get_boundary()

    assert build(str(uuid.uuid4())) != build(str(uuid.uuid4()))
