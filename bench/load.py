"""The ingest load generator: signed Stripe webhooks over keep-alive HTTP/1.1 connections.

It runs as a process of its own (``python -m bench.load``) on uvloop, so that what it costs
is small beside the server and is not charged to the bench process's event loop, which also
runs the inkpass stand-in and the SMTP server of other phases. Requests are signed before the
clock starts. It prints one JSON object: rate, latencies and the statuses seen.

  python -m bench.load --port 8006 --requests 10000 --concurrency 16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid

import uvloop
from stripe import WebhookSignature

from bench.ingest import stripe_event

SECRET = "whsec_bench_only_secret"
PATH = "/api/v1/gateway/webhooks/stripe"


def signed_request(port: int, event_type: str = "invoice.paid") -> tuple[bytes, str]:
    event_id = f"evt_bench_{uuid.uuid4().hex}"
    body = json.dumps(stripe_event(event_id, event_type, int(time.time())))
    sig = WebhookSignature.generate_signature_header(body, SECRET)
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nStripe-Signature: {sig}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body.encode(), event_id


class Connection:
    """A minimal keep-alive HTTP/1.1 client: the generator must cost less than the server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, request: bytes) -> int:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        self.writer.close()


async def drive(port: int, requests: int, concurrency: int) -> dict[str, object]:
    """Send ``requests`` signed webhooks over ``concurrency`` connections, after one warm-up
    request per connection (connections, pool, caches)."""
    prepared = [signed_request(port)[0] for _ in range(requests)]
    connections = [await Connection.open(port) for _ in range(concurrency)]
    for conn in connections:
        await conn.send(signed_request(port)[0])
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue = iter(prepared)

    async def one(conn: Connection) -> None:
        for request in queue:
            started = time.perf_counter()
            status = await conn.send(request)
            latencies.append(time.perf_counter() - started)
            statuses[status] = statuses.get(status, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(one(conn) for conn in connections))
    elapsed = time.perf_counter() - started
    for conn in connections:
        conn.close()
    return {"elapsed": elapsed, "latencies": latencies, "statuses": statuses}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--requests", type=int, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    args = parser.parse_args()
    print(json.dumps(uvloop.run(drive(args.port, args.requests, args.concurrency))))


if __name__ == "__main__":
    main()
