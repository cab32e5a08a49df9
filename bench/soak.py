"""`make soak`: Mimic under steady load for a while, through a worker crash and a Postgres crash.

  python -m bench.soak [--minutes 10]

A fresh embedded Postgres (or DATABASE_URL), `mimic api` and `mimic worker` as processes, a
local destination (inkpass) and a local SMTP server. It measures the ingest rate for a few
seconds, then sends signed Stripe webhooks at half that rate, and an email for every 20th, for
the given time. Half way it kills the worker (SIGKILL) and starts another, then stops Postgres
(`pg_ctl stop -m immediate`) and starts it again; webhooks answered 503 meanwhile are sent
again later, as a provider would. At the end it waits for the queue to drain and checks, and
prints:

- every acknowledged event is stored once, and each of its deliveries reached the destination
  (by idempotency key) and succeeded;
- every accepted email was sent;
- no answer was a 500;
- each process's resident memory grew by at most 10% between minute 2 (for the worker started
  half way, 30 s after its start) and the end;
- the tables' size per event stored.

It exits 1 if any check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import pathlib
import pwd
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from typing import Any

import asyncpg
import httpx
import uvicorn

from bench.email import DATA, TEMPLATE
from bench.load import SECRET, Connection, signed_request
from mimic.core.embedded import bin_dir, start_embedded
from mimic.core.migrate import load_steps, migrate


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Destination:
    """The local inkpass: every idempotency key it was called with, and how often."""

    def __init__(self) -> None:
        self.keys: dict[str, int] = {}
        self._lock = threading.Lock()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        more = True
        while more:
            more = (await receive()).get("more_body", False)
        key = dict(scope["headers"]).get(b"idempotency-key", b"").decode()
        with self._lock:
            self.keys[key] = self.keys.get(key, 0) + 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


class Mail:
    """A local SMTP server: the notification id of every message (from its MIME boundary)."""

    def __init__(self, port: int) -> None:
        from aiosmtpd.controller import Controller

        self.ids: dict[str, int] = {}
        mail = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                text = envelope.content.decode("utf-8", errors="replace")
                marker = text.find("mimic-")
                found = text[marker + 6 : marker + 42] if marker >= 0 else "?"
                mail.ids[found] = mail.ids.get(found, 0) + 1
                return "250 OK"

        self._controller = Controller(Handler(), hostname="127.0.0.1", port=port)
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()


def restart_postgres(dsn: str) -> None:
    """pg_ctl stop -m immediate, then start, as the data directory's owner."""
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(dsn).query)
    pgdata = query["host"][0]  # the embedded server's socket lives in its data directory
    owner = os.stat(pgdata).st_uid
    run_as = ["runuser", "-u", pwd.getpwuid(owner).pw_name, "--"] if os.geteuid() == 0 else []
    pg_ctl = str(bin_dir() / "pg_ctl")
    subprocess.run([*run_as, pg_ctl, "-D", pgdata, "-m", "immediate", "stop"], check=True)
    time.sleep(2)
    subprocess.run(
        # As the embedded server runs: no TCP, its socket in its data directory.
        [
            *run_as,
            pg_ctl,
            "-D",
            pgdata,
            "-o",
            f"-h '' -k {pgdata}",
            "-l",
            f"{pgdata}/restart.log",
            "-w",
            "start",
        ],
        check=True,
        capture_output=True,
    )


async def wait_ready(url: str) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(300):
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(url)).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise SystemExit(f"{url} never became ready")


class Load:
    """Webhooks at a steady rate over keep-alive connections; 503s sent again later."""

    def __init__(self, port: int, api: httpx.AsyncClient) -> None:
        self.port, self.api = port, api
        self.acked: set[str] = set()
        self.emails: set[str] = set()
        self.statuses: dict[int, int] = {}
        self.retry: list[tuple[bytes, str]] = []

    async def run(self, rate: float, seconds: float, connections: int = 8) -> None:
        deadline = time.monotonic() + seconds
        per_connection = rate / connections

        async def one_connection() -> None:
            conn: Connection | None = None
            sent = 0
            started = time.monotonic()
            while time.monotonic() < deadline:
                request, event_id = self.retry.pop() if self.retry else signed_request(self.port)
                try:
                    if conn is None:
                        conn = await Connection.open(self.port)
                    status = await asyncio.wait_for(conn.send(request), 30)
                except (OSError, TimeoutError, ConnectionError):
                    status = 0
                    if conn is not None:
                        conn.close()
                    conn = None
                self.statuses[status] = self.statuses.get(status, 0) + 1
                if status == 200:
                    self.acked.add(event_id)
                    if len(self.acked) % 20 == 0:
                        await self.email()
                else:  # not acknowledged: the provider sends it again later
                    self.retry.append((request, event_id))
                    await asyncio.sleep(0.5)
                sent += 1
                ahead = started + sent / per_connection - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            if conn is not None:
                conn.close()

        await asyncio.gather(*(one_connection() for _ in range(connections)))

    async def email(self) -> None:
        with contextlib.suppress(httpx.HTTPError):
            answer = await self.api.post(
                "/api/v1/notifications/email",
                json={"template": TEMPLATE, "to": ["soak@example.com"], "data": DATA},
            )
            self.statuses[answer.status_code] = self.statuses.get(answer.status_code, 0) + 1
            if answer.status_code == 202:
                self.emails.add(answer.json()["id"])


async def main(args: argparse.Namespace) -> int:
    data_dir = tempfile.mkdtemp(prefix="mimic-soak-")
    dsn = os.environ.get("DATABASE_URL") or start_embedded(data_dir)
    await migrate(dsn, load_steps())
    api_port, ink_port, smtp_port = free_port(), free_port(), free_port()
    destination, mail = Destination(), Mail(smtp_port)
    ink = uvicorn.Server(
        uvicorn.Config(destination, host="127.0.0.1", port=ink_port, log_level="error")
    )
    ink_task = asyncio.create_task(ink.serve())
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "MIMIC_PORT": str(api_port),
        "MIMIC_LOG_LEVEL": "WARNING",
        "STRIPE_WEBHOOK_SECRET": SECRET,
        "MIMIC_SERVICE_API_KEY": "soak-service-key",
        "MIMIC_API_KEYS": "soak-key",
        "API_ADMIN_RATE_PER_SECOND": "10000",
        "API_ADMIN_BURST": "100000",
        "INKPASS_INTERNAL_URL": f"http://127.0.0.1:{ink_port}",
        "WORKER_HEALTH_PORT": "0",
        "EMAIL_PROVIDER": "dev",
        "DEV_SMTP_HOST": "127.0.0.1",
        "DEV_SMTP_PORT": str(smtp_port),
        # A dead worker's jobs come back within seconds (its heartbeat well inside that).
        "WORKER_HEARTBEAT_SECONDS": "1",
        "WORKER_STALLED_AFTER_SECONDS": "5",
        "STALLED_SWEEP_SECONDS": "2",
        "DELIVERY_BACKOFF_MAX_SECONDS": "5",
        "EMAIL_BACKOFF_MAX_SECONDS": "5",
    }
    api = subprocess.Popen([sys.executable, "-m", "mimic", "api"], env=env)
    worker = subprocess.Popen([sys.executable, "-m", "mimic", "worker"], env=env)
    failures: list[str] = []
    try:
        await wait_ready(f"http://127.0.0.1:{api_port}/readyz")
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{api_port}", headers={"X-API-Key": "soak-key"}
        ) as http:
            probe = Load(api_port, http)
            started = time.monotonic()
            await probe.run(rate=100_000, seconds=5)
            measured = probe.statuses.get(200, 0) / (time.monotonic() - started)
            rate = measured / 2
            total = args.minutes * 60
            print(
                f"soak: {args.minutes:g} min at {rate:.0f} webhooks/s (half of {measured:.0f}/s "
                "measured now), an email per 20 webhooks; worker SIGKILL and Postgres "
                "stop -m immediate half way",
                flush=True,
            )
            load = Load(api_port, http)
            load.acked |= probe.acked
            load.emails |= probe.emails
            load.statuses = dict(probe.statuses)
            begun = time.monotonic()
            running = asyncio.create_task(load.run(rate, total))
            samples: dict[str, float] = {}
            api_sample_at = min(120.0, total * 2 / 3)
            worker_sample_at = max(api_sample_at, total / 2 + 30)

            async def sample_api() -> None:
                await asyncio.sleep(api_sample_at)
                samples["api"] = rss_mb(api.pid)

            api_sampling = asyncio.create_task(sample_api())
            await asyncio.sleep(total / 2)
            print("  half way: SIGKILL the worker, start another", flush=True)
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            worker = subprocess.Popen([sys.executable, "-m", "mimic", "worker"], env=env)
            if not os.environ.get("DATABASE_URL"):
                print("  half way: Postgres stop -m immediate, then start", flush=True)
                await asyncio.to_thread(restart_postgres, dsn)
            await asyncio.sleep(max(0.0, worker_sample_at - (time.monotonic() - begun)))
            samples["worker"] = rss_mb(worker.pid)
            await running
            await api_sampling
            ends = {"api": rss_mb(api.pid), "worker": rss_mb(worker.pid)}
        print(f"  answers: {dict(sorted(load.statuses.items()))}", flush=True)
        failures += await check(dsn, load, destination, mail, samples, ends)
    finally:
        for proc in (api, worker):
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)
        ink.should_exit = True
        await ink_task
        mail.stop()
    print("soak: " + ("FAILED: " + "; ".join(failures) if failures else "every check held"))
    return 1 if failures else 0


async def check(
    dsn: str,
    load: Load,
    destination: Destination,
    mail: Mail,
    samples: dict[str, float],
    ends: dict[str, float],
) -> list[str]:
    found: list[str] = []
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            left = await conn.fetchval(
                "SELECT (SELECT count(*) FROM webhook_deliveries "
                "        WHERE status NOT IN ('success', 'failed')) + "
                "       (SELECT count(*) FROM notifications WHERE status IN ('queued', 'sending'))"
            )
            if left == 0:
                break
            await asyncio.sleep(1)
        stored = {
            r["event_id"]: r["n"]
            for r in await conn.fetch(
                "SELECT event_id, count(*) AS n FROM webhook_events GROUP BY event_id"
            )
        }
        deliveries = await conn.fetch("SELECT id::text AS id, status FROM webhook_deliveries")
        notifications = {
            str(r["id"]): r["status"]
            for r in await conn.fetch("SELECT id, status FROM notifications")
        }
        sizes = {
            r["t"]: r["bytes"]
            for r in await conn.fetch(
                # A partitioned table's size is its partitions' (its own is 0).
                "SELECT c.relname AS t, coalesce((SELECT sum(pg_total_relation_size(p.relid)) "
                "FROM pg_partition_tree(c.oid) p), pg_total_relation_size(c.oid))::bigint "
                "AS bytes FROM pg_class c "
                "WHERE c.relname IN ('webhook_events', 'webhook_deliveries', "
                "'webhook_event_keys', 'procrastinate_jobs', 'notifications', "
                "'notification_events')"
            )
        }
    finally:
        await conn.close()
    missing = [e for e in load.acked if stored.get(e) != 1]
    print(
        f"  events acknowledged: {len(load.acked)}; stored once: {len(load.acked) - len(missing)}"
    )
    if missing:
        found.append(f"{len(missing)} acknowledged event(s) not stored exactly once")
    not_done = [d["id"] for d in deliveries if d["status"] != "success"]
    unreached = [d["id"] for d in deliveries if d["id"] not in destination.keys]
    repeated = sum(1 for n in destination.keys.values() if n > 1)
    print(
        f"  deliveries: {len(deliveries)}; succeeded: {len(deliveries) - len(not_done)}; "
        f"reached the destination: {len(deliveries) - len(unreached)} ({repeated} of them "
        "more than once, the same idempotency key: at-least-once around the SIGKILL)"
    )
    if not_done or unreached:
        found.append(f"{len(not_done)} delivery(ies) not succeeded, {len(unreached)} never called")
    unsent = [n for n in load.emails if notifications.get(n) != "sent" or n not in mail.ids]
    twice = sum(1 for n in load.emails if mail.ids.get(n, 0) > 1)
    print(
        f"  emails accepted: {len(load.emails)}; sent: {len(load.emails) - len(unsent)}; "
        f"sent twice: {twice}"
    )
    if unsent:
        found.append(f"{len(unsent)} accepted email(s) not sent")
    if twice:
        found.append(f"{twice} email(s) sent twice")
    if load.statuses.get(500):
        found.append(f"{load.statuses[500]} answer(s) were 500")
    for name, first in samples.items():
        growth = ends[name] / first - 1
        print(f"  {name} resident memory: {first:.0f} MB -> {ends[name]:.0f} MB ({growth:+.1%})")
        if growth > 0.10:
            found.append(f"{name} memory grew {growth:.0%}")
    per_event = sum(sizes.values()) / max(len(stored), 1)
    print(
        "  table sizes: "
        + ", ".join(f"{t} {b / 1e6:.1f} MB" for t, b in sorted(sizes.items()))
        + f"; {per_event / 1024:.1f} KB per event stored"
    )
    if per_event > 20 * 1024:
        found.append(f"{per_event / 1024:.0f} KB per event stored")
    return found


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    sys.exit(asyncio.run(main(parser.parse_args())))
