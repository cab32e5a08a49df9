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
import os
import re
import sys
import time
import uuid
from typing import Any, cast

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


_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*([0-9]+)", re.IGNORECASE)


class Connection(asyncio.Protocol):
    """A minimal keep-alive HTTP/1.1 client (one request at a time per connection): the
    generator must cost less than the server. A protocol rather than a stream, so each
    segment received costs one callback and one check for a whole response."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._waiter: asyncio.Future[int] | None = None
        self._transport: asyncio.Transport | None = None

    @classmethod
    async def open(cls, port: int) -> Connection:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(cls, "127.0.0.1", port)
        return conn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport: no isinstance here.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        length = _LENGTH.search(self._buffer, 0, end + 2)
        total = end + 4 + (int(length.group(1)) if length else 0)
        if len(self._buffer) < total or self._waiter is None:
            return
        status = int(self._buffer[9:12])
        del self._buffer[:total]
        self._waiter.set_result(status)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc or ConnectionError("the server closed the connection"))

    async def send(self, request: bytes) -> int:
        """Send one request and wait for its whole response: its status."""
        assert self._transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(request)
        return await self._waiter

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def replay(
    port: int, requests: list[bytes], concurrency: int, *, warm_up: bytes | None = None
) -> dict[str, Any]:
    """Send prepared requests over ``concurrency`` keep-alive connections (after one
    ``warm_up`` request per connection, if given: connections, pool, caches): the elapsed
    time, each latency and the statuses seen."""
    connections = [await Connection.open(port) for _ in range(concurrency)]
    if warm_up is not None:
        for conn in connections:
            await conn.send(warm_up)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue = iter(requests)

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


async def drive(port: int, requests: int, concurrency: int) -> dict[str, Any]:
    """Signed webhooks, each with a fresh event id."""
    prepared = [signed_request(port)[0] for _ in range(requests)]
    return await replay(port, prepared, concurrency, warm_up=signed_request(port)[0])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--requests", type=int, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    args = parser.parse_args()
    result = uvloop.run(drive(args.port, args.requests, args.concurrency))
    # Not print(): after uvloop has run, a write to a pipe the reader has not emptied yet can
    # come back partial (64 KiB of a 130 KiB result), and print() then drops the rest
    # without an error. The result is written until all of it is out.
    out = memoryview(json.dumps(result).encode() + b"\n")
    while out:
        out = out[os.write(sys.stdout.fileno(), out) :]


if __name__ == "__main__":
    main()
