"""The email phase of `make bench`: Mimic's send rate against aiosmtplib's own, in one run.

A local aiosmtpd server (a thread of the bench process) counts what it receives. The reference
is aiosmtplib alone at the same concurrency as a worker (10), building messages with Mimic's
own builder and sending them to that server twice: a connection per message, then reused
connections. It runs in two places: in the bench process, beside the server, where it shares
the server's interpreter lock (the setup the issue's target was measured in), and in a
process of its own, as the worker is (the fairer one). Mimic's rate is one `mimic worker`
process draining a backlog of sends queued through the API (EMAIL_PROVIDER=dev, pointed at
the same server).
"""

from __future__ import annotations

import asyncio
import functools
import json
import subprocess
import sys
import threading
import time
import uuid
from email.mime.multipart import MIMEMultipart
from typing import Any

import aiosmtplib

SEND_PATH = "/api/v1/notifications/email"


class SmtpCounter:
    """A real aiosmtpd server on loopback that counts messages."""

    def __init__(self, port: int) -> None:
        from aiosmtpd.controller import Controller

        self.port, self.count = port, 0
        lock = threading.Lock()
        counter = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                with lock:
                    counter.count += 1
                return "250 OK"

        self._controller = Controller(Handler(), hostname="127.0.0.1", port=port)

    def __enter__(self) -> SmtpCounter:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()


#: What every send of the bench asks for (the API's sends and the reference's messages).
TEMPLATE, DATA = "welcome", {"name": "Bench", "login_url": "https://example.com/login"}


@functools.cache
def _rendered() -> Any:
    from mimic.email.rendering import Templates

    return Templates().render(TEMPLATE, DATA)


def _message(i: int) -> MIMEMultipart:
    """The message Mimic sends for the bench's request (the same template, data, sender and
    builder), so the ratio measures Mimic's overhead, not a difference in the messages."""
    from mimic.email.providers import OutgoingEmail
    from mimic.email.providers.smtp import mime_message

    rendered = _rendered()
    return mime_message(
        OutgoingEmail(
            notification_id=str(uuid.uuid4()),
            sender="Mimic <no-reply@mimic.local>",
            to=[f"u{i}@example.com"],
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
        )
    )


async def reference(port: int, count: int, concurrency: int) -> tuple[float, float]:
    """aiosmtplib alone: (messages/s opening a connection per message, reusing connections)."""
    queue = iter(range(count))

    async def one_per_message() -> None:
        for i in queue:
            await aiosmtplib.send(_message(i), hostname="127.0.0.1", port=port)

    started = time.perf_counter()
    await asyncio.gather(*(one_per_message() for _ in range(concurrency)))
    fresh = count / (time.perf_counter() - started)

    queue = iter(range(count))

    async def reusing() -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port)
        await client.connect()
        for i in queue:
            await client.send_message(_message(i))
        await client.quit()

    started = time.perf_counter()
    await asyncio.gather(*(reusing() for _ in range(concurrency)))
    reused = count / (time.perf_counter() - started)
    return fresh, reused


async def accept_sends(api_port: int, key: str, count: int, concurrency: int) -> float:
    """Queue ``count`` sends through the API (keep-alive connections); returns sends/s."""
    from bench.load import replay

    def request(i: int) -> bytes:
        body = json.dumps(
            {
                "to": f"u{i}@example.com",
                "template": TEMPLATE,
                "data": DATA,
            }
        ).encode()
        head = (
            f"POST {SEND_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{api_port}\r\n"
            f"X-API-Key: {key}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        return head + body

    result = await replay(api_port, [request(i) for i in range(count)], concurrency)
    statuses, elapsed = result["statuses"], float(result["elapsed"])
    if set(statuses) != {202}:
        raise SystemExit(f"sends were refused: {statuses}")
    return count / elapsed


def reference_in_own_process(port: int, count: int, concurrency: int) -> tuple[float, float]:
    """:func:`reference` in a process of its own, as the worker is (in the bench process it
    shares one interpreter lock with the SMTP server's thread)."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.email", str(port), str(count), str(concurrency)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    fresh, reused = json.loads(out.strip().splitlines()[-1])
    return float(fresh), float(reused)


if __name__ == "__main__":
    port, count, concurrency = (int(a) for a in sys.argv[1:4])
    print(json.dumps(asyncio.run(reference(port, count, concurrency))))
