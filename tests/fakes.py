"""Real local HTTP servers standing in for inkpass, Resend, Postmark and Stripe.

Each fake is a stdlib ``ThreadingHTTPServer`` on 127.0.0.1 with a scripted list of
replies (status, body, headers, delay, or a dropped connection) and a record of every
request it received. It runs in its own threads, so it never blocks the test's loop.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import email
import email.message
import email.policy
import json
import socket
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    #: time.monotonic() when the request arrived.
    at: float = 0.0

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: Any = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False
    #: Do what the responder does at once (e.g. record a send), but answer after `delay`.
    respond: bool = False


Responder = Callable[[Received], Reply]


class FakeHTTPServer:
    def __init__(self, responder: Responder | None = None) -> None:
        self.requests: list[Received] = []
        self._script: collections.deque[Reply] = collections.deque()
        self._responder = responder
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def script(self, *replies: Reply) -> None:
        """Queue replies for the next requests; after they run out, the responder answers."""
        with self._lock:
            self._script.extend(replies)

    def _next_reply(self, received: Received) -> Reply:
        with self._lock:
            self.requests.append(received)
            if self._script:
                return self._script.popleft()
        return self._responder(received) if self._responder else Reply()

    async def wait_for_requests(self, count: int, within: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + within
        while len(self.requests) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"expected {count} requests, got {len(self.requests)} in {within}s"
                )
            await asyncio.sleep(0.02)
        return list(self.requests)

    def __enter__(self) -> FakeHTTPServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                received = Received(
                    method=self.command,
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                    at=time.monotonic(),
                )
                reply = fake._next_reply(received)
                delay = reply.delay
                if reply.respond and fake._responder is not None:
                    reply = fake._responder(received)  # done now, answered late
                if delay:
                    time.sleep(delay)
                if reply.drop:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                payload = (
                    reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                )
                self.send_response(reply.status)
                headers = {"Content-Type": "application/json", **reply.headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

        return Handler


def fake_server(responder: Responder | None = None) -> Iterator[FakeHTTPServer]:
    with FakeHTTPServer(responder) as server:
        yield server


def resend_responder() -> Responder:
    """Resend's API as far as Mimic uses it: POST /emails, idempotent by key."""
    ids: dict[str, str] = {}

    def respond(request: Received) -> Reply:
        if request.method != "POST" or request.path != "/emails":
            return Reply(status=404, body={"name": "not_found", "message": "no route"})
        key = request.headers.get("idempotency-key") or uuid.uuid4().hex
        email_id = ids.setdefault(key, f"re_{uuid.uuid4().hex[:16]}")
        return Reply(status=200, body={"id": email_id})

    return respond


def postmark_responder() -> Responder:
    """Postmark's API: POST /email, and outbound search by metadata."""
    sent: dict[str, str] = {}  # notification id -> MessageID

    def respond(request: Received) -> Reply:
        if request.method == "POST" and request.path == "/email":
            body = request.json()
            message_id = str(uuid.uuid4())
            sent[body["Metadata"]["mimic_notification_id"]] = message_id
            return Reply(body={"MessageID": message_id, "ErrorCode": 0, "Message": "OK"})
        if request.method == "GET" and request.path.startswith("/messages/outbound"):
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(request.path).query)
            wanted = query.get("metadata_mimic_notification_id", [""])[0]
            found = [{"MessageID": sent[wanted]}] if wanted in sent else []
            return Reply(body={"TotalCount": len(found), "Messages": found})
        return Reply(status=404, body={"ErrorCode": 404, "Message": "no route"})

    return respond


class SmtpSink:
    """A real aiosmtpd SMTP server on loopback that keeps what it receives."""

    def __init__(
        self,
        refuse: set[str] | None = None,
        login: tuple[str, str] | None = None,
        later: dict[str, int] | None = None,
    ) -> None:
        """``refuse``: recipients answered 550 (permanent); ``later``: recipient -> how many
        times a message to it is answered 451 at DATA (temporary) before it is taken."""
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        self.messages: list[email.message.EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.connections = 0
        self.refuse = refuse or set()
        self.later = dict(later or {})
        sink = self

        class Handler:
            async def handle_EHLO(
                self, server: Any, session: Any, envelope: Any, hostname: str, responses: Any
            ) -> Any:
                sink.connections += 1  # one greeting per connection
                session.host_name = hostname
                return responses

            async def handle_RCPT(
                self, server: Any, session: Any, envelope: Any, address: str, options: Any
            ) -> str:
                if address in sink.refuse:
                    return "550 5.1.1 mailbox unavailable"
                envelope.rcpt_tos.append(address)
                return "250 OK"

            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                for rcpt in envelope.rcpt_tos:
                    if sink.later.get(rcpt, 0) > 0:
                        sink.later[rcpt] -= 1
                        return "451 4.3.0 try again later"
                parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
                assert isinstance(parsed, email.message.EmailMessage)
                sink.messages.append(parsed)
                sink.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
                return "250 Message accepted"

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.logins: list[str] = []
        options: dict[str, Any] = {}
        if login is not None:

            def authenticate(
                server: Any, session: Any, envelope: Any, mechanism: str, data: Any
            ) -> AuthResult:
                ok = (
                    isinstance(data, LoginPassword)
                    and (
                        data.login.decode(),
                        data.password.decode(),
                    )
                    == login
                )
                if ok:
                    self.logins.append(data.login.decode())
                return AuthResult(success=ok)

            # Loopback only, so AUTH without TLS is acceptable here. AUTH is offered, not
            # required (aiosmtpd warns on that combination); tests check `logins`.
            options = {"authenticator": authenticate, "auth_require_tls": False}
        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, **options)

    def __enter__(self) -> SmtpSink:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()


def form(request: Received) -> dict[str, str]:
    return {k: v[0] for k, v in urllib.parse.parse_qs(request.body.decode()).items()}


def stripe_responder(request: Received) -> Reply:
    """Stripe's API as far as Mimic uses it (form-encoded in, JSON out)."""
    path = request.path.split("?")[0]
    if request.method == "GET" and path.startswith("/v1/prices/"):
        price = path.rsplit("/", 1)[1]
        kind = "recurring" if price.endswith("_sub") else "one_time"
        return Reply(body={"id": price, "object": "price", "type": kind})
    if request.method == "POST" and path == "/v1/checkout/sessions":
        sent = form(request)
        metadata = {k[9:-1]: v for k, v in sent.items() if k.startswith("metadata[")}
        session_id = f"cs_test_{uuid.uuid4().hex[:16]}"
        return Reply(
            body={
                "id": session_id,
                "object": "checkout.session",
                "url": f"https://checkout.stripe.com/c/pay/{session_id}",
                "expires_at": 1_790_086_400,
                "mode": sent.get("mode"),
                "metadata": metadata,
            }
        )
    if request.method == "POST" and path == "/v1/billing_portal/sessions":
        return Reply(
            body={
                "id": "bps_123",
                "object": "billing_portal.session",
                "url": "https://billing.stripe.com/p/session/test_123",
            }
        )
    return Reply(status=404, body={"error": {"type": "invalid_request_error", "message": "no"}})


class Tarpit:
    """A server on loopback that never finishes a line: one byte every ``every`` seconds
    (an SMTP server that holds its client forever). ``connections`` counts who came."""

    def __init__(self, every: float) -> None:
        self.every = every
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def _drip(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while True:
                writer.write(b"2")
                await writer.drain()
                await asyncio.sleep(self.every)
        writer.close()

    async def __aenter__(self) -> Tarpit:
        self._server = await asyncio.start_server(self._drip, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
