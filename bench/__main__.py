"""`make bench`: ingress throughput, routing throughput against procrastinate's own, latency.

Everything runs on this machine over loopback: a fresh embedded Postgres (or DATABASE_URL's,
which should be an empty database), `mimic api` and `mimic worker` as real processes, an
inkpass stand-in, and the load generator (bench/load.py, a process of its own). They all share
the machine's cores, so the figures are for the whole system on one box, not for the API alone.

Every goal is a ratio to a reference measured in the same run, on the same database:

- ingest (`--phases ingest`, part of `webhooks`): pgbench running Mimic's own per-webhook
  transaction, before and after Mimic (bench/ingest.py);
- routing (`--phases routing`, part of `webhooks`): procrastinate running no-op jobs
  (bench/noop.py), tuned as a careful operator would and stock, at the same concurrency (10)
  and the same backlog as `mimic worker` draining deliveries, at each size of `--backlogs`
  (5,000 and 100,000). Every fill, Mimic's and the reference's alike, is followed by ANALYZE
  (a never-analyzed jobs table slows procrastinate's fetch as the backlog grows, which would
  flatter Mimic), every drain by deleting the finished jobs and a VACUUM, so each run starts
  from the same table. Printed: each rate; Mimic over tuned procrastinate at the same size
  (target >= 0.80) and over stock; Mimic at 100,000 over Mimic at 5,000 (target >= 0.90);
  transactions per delivery. bench/routing.py documents the method;
- email (`--phases email`): aiosmtplib alone sending the same messages (bench/email.py);
- upgrade (`--phases upgrade`): the migration to partitioned events on 1,000,000 stored events,
  timed (its lock time) and checked (bench/upgrade.py).

Transactions per job are read from pg_stat_database (every Mimic worker statement runs in
autocommit, so for Mimic this is also its SQL round trips per delivery). The `webhooks` phase
also measures end-to-end latency and the events API as the table grows (`lists`); the routing
phase ends with two worker processes (`mimic worker --processes 2`) at the smallest backlog.

  python -m bench [--phases email,webhooks] [--backlogs 5000,100000] [--requests 5000]
                  [--concurrency 16] [--e2e 300]
  python -m bench --phases routing       (the routing measurements alone, for tuning)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import uvicorn

from bench.email import SmtpCounter, accept_sends, reference, reference_in_own_process
from bench.ingest import CLEANUP as PGBENCH_CLEANUP
from bench.ingest import peak_rss_mb, pgbench_tps
from bench.load import SECRET, Connection, signed_request
from bench.routing import FILL_CONNECTIONS, drain_mimic, routing_phase
from bench.upgrade import upgrade_phase
from mimic.core.embedded import start_embedded
from mimic.core.migrate import load_steps, migrate
from mimic.core.pagination import encode_cursor


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))
    return ordered[index]


def report(name: str, latencies: list[float]) -> str:
    ms = [v * 1000 for v in latencies]
    return (
        f"{name}: n={len(ms)} p50={percentile(ms, 50):.1f} ms p90={percentile(ms, 90):.1f} ms "
        f"p99={percentile(ms, 99):.1f} ms max={max(ms):.1f} ms mean={statistics.mean(ms):.1f} ms"
    )


async def load(port: int, requests: int, concurrency: int) -> dict[str, Any]:
    """Run the load generator (bench/load.py, a process of its own) and read its figures."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.load",
        f"--port={port}",
        f"--requests={requests}",
        f"--concurrency={concurrency}",
        stdout=subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"the load generator failed (exit {proc.returncode})")
    result: dict[str, Any] = json.loads(out)
    if set(result["statuses"]) != {"200"}:
        raise SystemExit(f"webhooks were refused: {result['statuses']}")
    return result


async def throughput(port: int, requests: int, concurrency: int) -> tuple[float, float]:
    """Signed webhooks through keep-alive connections: (webhooks/s, p99 latency in ms)."""
    result = await load(port, requests, concurrency)
    rate = requests / result["elapsed"]
    print(
        f"  mimic api: {requests} signed Stripe webhooks at concurrency {concurrency} in "
        f"{result['elapsed']:.2f} s = {rate:.0f} webhooks/s"
    )
    print("    " + report("latency", result["latencies"]))
    return rate, percentile([v * 1000 for v in result["latencies"]], 99)


def inkpass_app(arrivals: dict[str, float]) -> Callable[..., Awaitable[None]]:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        more = True
        body = b""
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        event_id = json.loads(body)["event_id"]
        arrivals.setdefault(event_id, time.time())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


async def end_to_end(port: int, arrivals: dict[str, float], count: int) -> None:
    conn = await Connection.open(port)
    # Warm-up, not counted: the worker was just started (connections, prepared statements).
    warm_up = 20
    for _ in range(warm_up):
        assert await conn.send(signed_request(port)[0]) == 200
    deadline = time.monotonic() + 10
    while len(arrivals) < warm_up and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    arrivals.clear()
    sent: dict[str, float] = {}
    for _ in range(count):
        request, event_id = signed_request(port)
        sent[event_id] = time.time()
        assert await conn.send(request) == 200
        await asyncio.sleep(0.02)  # a steady trickle, not a backlog
    deadline = time.monotonic() + 30
    while not all(e in arrivals for e in sent) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    conn.close()
    latencies = [arrivals[e] - sent[e] for e in sent if e in arrivals]
    print(f"end-to-end: {len(latencies)}/{count} webhooks reached inkpass")
    print("  " + report("webhook POST -> inkpass call", latencies))


async def wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(300):
            if proc.poll() is not None:
                raise SystemExit(f"process exited with {proc.returncode}")
            try:
                if (await http.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit(f"{url} never became ready")


async def pending_jobs(dsn: str, queue: str | None = None) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing') "
                "AND ($1::text IS NULL OR queue_name = $1)",
                queue,
            )
        )
    finally:
        await conn.close()


class Drain:
    """How fast a backlog in one queue empties: jobs/s, transactions per job, and the
    consumer's peak resident memory."""

    def __init__(self, rate: float, jobs: int, xacts_per_job: float, rss_mb: float) -> None:
        self.rate, self.jobs, self.xacts_per_job = rate, jobs, xacts_per_job
        self.rss_mb = rss_mb


#: What is left to do in a queue: its jobs not finished.
JOBS_LEFT = (
    "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing') AND queue_name = $1"
)
#: What is left to send: notifications not sent yet (a job may carry several).
EMAILS_LEFT = (
    "SELECT count(*) FROM notifications WHERE status IN ('queued', 'sending') AND $1 <> ''"
)


async def measure_drain(
    dsn: str, queue: str, command: list[str], env: dict[str, str], count_sql: str = JOBS_LEFT
) -> tuple[Drain, subprocess.Popen[bytes]]:
    """Start the consumer, then time the backlog (``count_sql``: jobs by default) from its
    first finished item to empty. Rates and transactions are per item."""
    conn = await asyncpg.connect(dsn)
    xact_sql = "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
    polls = 0
    try:
        backlog = int(await conn.fetchval(count_sql, queue))
        handle = subprocess.Popen(command, env=env)
        while (left := int(await conn.fetchval(count_sql, queue))) >= backlog:
            if handle.poll() is not None:
                raise SystemExit(f"{command} exited with {handle.returncode} before any job ran")
            await asyncio.sleep(0.01)
        started, first_left = time.perf_counter(), left
        await conn.execute("SELECT pg_stat_force_next_flush()")
        xacts_before = int(await conn.fetchval(xact_sql))
        while left:
            # Count often only near the end: a count over a big backlog is work for the
            # database the consumer shares (a scan of 100,000 jobs takes about 20 ms). The
            # wait is a twentieth of the time left at the rate so far (50 ms to 1 s), so the
            # end is seen within 5% of the last stretch.
            done, spent = first_left - left, time.perf_counter() - started
            wait = left * spent / done / 20 if done else 0.05
            await asyncio.sleep(min(1.0, max(0.05, wait)))
            left = int(await conn.fetchval(count_sql, queue))
            polls += 1
        elapsed = time.perf_counter() - started
        rss_mb = peak_rss_mb(handle.pid)
        # The consumer's backends report their statistics when they exit: stop it first.
        handle.terminate()
        await asyncio.to_thread(handle.wait, 30)
        await asyncio.sleep(0.5)
        await conn.execute("SELECT pg_stat_force_next_flush()")
        xacts = int(await conn.fetchval(xact_sql)) - xacts_before - polls - 2
        return Drain(first_left / elapsed, first_left, xacts / first_left, rss_mb), handle
    finally:
        await conn.close()


async def ingest_only(port: int, requests: int, concurrency: int) -> None:
    """A backlog of signed webhooks through the API, not timed."""
    await load(port, requests, concurrency)


FILL_EVENTS = """
INSERT INTO webhook_events (id, provider, event_type, event_id, payload, raw_body, status,
                            received_at)
SELECT gen_random_uuid(), (ARRAY['stripe', 'resend', 'postmark'])[1 + n % 3],
       (ARRAY['invoice.paid', 'customer.created', 'email.delivered', 'Bounce'])[1 + n % 4],
       'evt_fill_' || n || '_' || $2, '{"id": "evt_fill"}'::jsonb, '\\x7b7d'::bytea,
       (ARRAY['received', 'delivered', 'failed', 'ignored'])[1 + n / 5 % 4],
       now() - make_interval(secs => n * $3::float8)
  FROM generate_series($4::bigint + 1, $4::bigint + $1) AS n
"""
#: The fill spreads events over this many days (inside EVENT_RETENTION_DAYS' default of 90),
#: so they sit in their months' partitions as events received over time would.
FILL_DAYS = 80
#: The monthly partitions of the fill's past (the migration made the current and later ones).
PAST_PARTITIONS = """
SELECT mimic_add_partition('webhook_events', 'received_at', m AT TIME ZONE 'UTC',
                           (m + interval '1 month') AT TIME ZONE 'UTC')
  FROM generate_series(date_trunc('month', (now() - make_interval(days => $1)) AT TIME ZONE 'UTC'),
                       date_trunc('month', now() AT TIME ZONE 'UTC') - interval '1 month',
                       interval '1 month') AS m
 WHERE to_regclass('webhook_events_' || to_char(m, 'YYYYMMDD')) IS NULL
"""


async def list_latency(port: int, dsn: str, label: str) -> None:
    """p50/p99 of a filtered first page and of a page deep down the cursor, over HTTP."""
    conn = await asyncpg.connect(dsn)
    try:
        total = await conn.fetchval("SELECT count(*) FROM webhook_events")
        middle = await conn.fetchrow(
            "SELECT received_at, id FROM webhook_events WHERE provider = 'stripe' "
            "ORDER BY received_at DESC, id DESC OFFSET $1 LIMIT 1",
            total // 6,
        )
    finally:
        await conn.close()
    assert middle is not None
    deep = encode_cursor(middle["received_at"], middle["id"])
    pages = {
        "first page, provider=stripe&event_type=invoice.paid": {
            "provider": "stripe",
            "event_type": "invoice.paid",
        },
        "deep cursor page, provider=stripe": {"provider": "stripe", "cursor": deep},
    }
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": "bench-key"}
    ) as http:
        for name, params in pages.items():
            times = []
            for _ in range(200):
                started = time.perf_counter()
                response = await http.get(
                    "/api/v1/gateway/webhooks/events", params={**params, "limit": "50"}
                )
                times.append(time.perf_counter() - started)
                assert response.status_code == 200, response.text
                assert response.json()["items"], name
            print(f"  {label}, {total:,} events, " + report(name, times))


async def console_latency(port: int, dsn: str, label: str) -> None:
    """p50/p99 of the console's pages, signed in, over HTTP (an upper bound of server time;
    target: under 50 ms each)."""
    conn = await asyncpg.connect(dsn)
    try:
        event = await conn.fetchval(
            "SELECT id FROM webhook_events ORDER BY received_at DESC LIMIT 1"
        )
    finally:
        await conn.close()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        signed = await http.post("/console/login", data={"key": "bench-key"})
        assert signed.status_code == 303, signed.text
        for path in (
            "/console",
            "/console/events",
            "/console/events?provider=stripe&status=failed",
            f"/console/events/{event}",
            "/console/deliveries",
            "/console/audit",
        ):
            times = []
            for _ in range(50):
                started = time.perf_counter()
                response = await http.get(path)
                times.append(time.perf_counter() - started)
                assert response.status_code == 200, (path, response.text[:200])
            print(f"  {label}, console " + report(path, times) + " (target p50 < 50 ms)")


async def lists_phase(api_port: int, dsn: str, events: int) -> None:
    """The events API and the console's pages as the events table grows."""
    print("phase 3: the events API (through HTTP) as the table grows")
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(PAST_PARTITIONS, FILL_DAYS + 1)
        have = int(await conn.fetchval("SELECT count(*) FROM webhook_events"))
    finally:
        await conn.close()
    spacing = FILL_DAYS * 86400 / events
    await fill_events(dsn, max(0, 10_000 - have), "a", spacing)
    await list_latency(api_port, dsn, "10k")
    await console_latency(api_port, dsn, "10k")
    fill_started = time.perf_counter()
    await fill_events(dsn, events - 10_000, "b", spacing, offset=10_000)
    print(f"  (filled to {events:,} in {time.perf_counter() - fill_started:.0f} s)")
    label = f"{events / 1_000_000:g}M" if events >= 1_000_000 else f"{events:,}"
    await list_latency(api_port, dsn, f"{label} (filled)")
    await console_latency(api_port, dsn, f"{label} (filled)")


async def fill_events(dsn: str, count: int, tag: str, spacing: float, offset: int = 0) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        # In slices, each its own transaction (one 10M-row statement holds a long snapshot).
        for start in range(0, count, 1_000_000):
            await conn.execute(
                FILL_EVENTS, min(1_000_000, count - start), tag, spacing, offset + start
            )
        await conn.execute("ANALYZE webhook_events")
    finally:
        await conn.close()


PHASES = {"email", "ingest", "scale", "routing", "lists", "upgrade", "webhooks"}


async def main(args: argparse.Namespace) -> None:
    phases = set(args.phases.split(","))
    if phases - PHASES:
        raise SystemExit(f"--phases: unknown {', '.join(sorted(phases - PHASES))}")
    sizes = [int(n) for n in args.backlogs.split(",")]
    if not sizes or min(sizes) < 1:
        raise SystemExit("--backlogs: positive numbers, e.g. 5000,100000")
    data_dir = tempfile.mkdtemp(prefix="mimic-bench-")
    dsn = os.environ.get("DATABASE_URL") or start_embedded(data_dir)
    await migrate(dsn, load_steps())
    api_port, inkpass_port, smtp_port = free_port(), free_port(), free_port()
    smtp = SmtpCounter(smtp_port).__enter__()
    arrivals: dict[str, float] = {}
    inkpass = uvicorn.Server(
        uvicorn.Config(
            inkpass_app(arrivals), host="127.0.0.1", port=inkpass_port, log_level="error"
        )
    )
    inkpass_task = asyncio.create_task(inkpass.serve())
    health_port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "MIMIC_PORT": str(api_port),
        "MIMIC_LOG_LEVEL": "WARNING",
        "STRIPE_WEBHOOK_SECRET": SECRET,
        "MIMIC_SERVICE_API_KEY": "bench-service-key",
        "MIMIC_API_KEYS": "bench-key",
        # The per-key request limit stays on (its statement is part of each request's cost)
        # but never refuses: the bench sends faster than the default admin rate.
        "API_ADMIN_RATE_PER_SECOND": "10000",
        "API_ADMIN_BURST": "100000",
        "INKPASS_INTERNAL_URL": f"http://127.0.0.1:{inkpass_port}",
        "WORKER_HEALTH_PORT": str(health_port),
        "EMAIL_PROVIDER": "dev",
        "DEV_SMTP_HOST": "127.0.0.1",
        "DEV_SMTP_PORT": str(smtp_port),
    }
    api = subprocess.Popen([sys.executable, "-m", "mimic", "api"], env=env)
    worker: subprocess.Popen[bytes] | None = None
    try:
        await wait_ready(f"http://127.0.0.1:{api_port}/readyz", api)
        source = "DATABASE_URL" if os.environ.get("DATABASE_URL") else "embedded PostgreSQL"
        print(f"machine: {os.cpu_count()} cores; Postgres: {source}")
        concurrency = 10  # WORKER_CONCURRENCY_WEBHOOKS' and _EMAIL's default, for both alike
        if "email" in phases:
            await email_phase(dsn, env, api_port, smtp, args.emails, concurrency)
        if "ingest" in phases and "webhooks" not in phases:
            await ingest_phase(dsn, api_port, args)
        if "scale" in phases or "webhooks" in phases:
            await scale_phase(dsn, env, api_port, api.pid)
        if "lists" in phases and "webhooks" not in phases:
            await lists_phase(api_port, dsn, args.events)
        if "upgrade" in phases:
            await upgrade_phase(dsn, args.upgrade_events)
        if "webhooks" not in phases and "routing" not in phases:
            print(f"peak RSS: mimic api {peak_rss_mb(api.pid):.0f} MB (target <= 150)")
            return
        if "webhooks" in phases:
            await ingest_phase(dsn, api_port, args)
        rates = await routing_phase(
            dsn, env, api_port, sizes, concurrency, measure_drain, ingest_only
        )
        # Two worker processes at the smallest size, measured as the routing phase measures one.
        small = min(sizes)
        two, queued = await drain_mimic(
            dsn,
            env,
            api_port,
            small,
            FILL_CONNECTIONS,
            [sys.executable, "-m", "mimic", "worker", "--processes", "2"],
            measure_drain,
            ingest_only,
        )
        print(
            f"  {small:,} queued: mimic worker --processes 2: {two.rate:.0f} deliveries/s "
            f"= {two.rate / rates[small]:.2f} x one process; {queued}"
        )
        print(f"peak RSS: mimic api {peak_rss_mb(api.pid):.0f} MB (target <= 150 each)")
        if "webhooks" not in phases:
            return

        # measure_drain stopped the workers (to count their transactions): one for latency.
        worker = subprocess.Popen([sys.executable, "-m", "mimic", "worker"], env=env)
        await wait_ready(f"http://127.0.0.1:{health_port}/readyz", worker)
        arrivals.clear()
        await end_to_end(api_port, arrivals, args.e2e)

        await lists_phase(api_port, dsn, args.events)
    finally:
        for proc in (api, worker):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)
        inkpass.should_exit = True
        await inkpass_task
        smtp.__exit__()


async def reference_tps(dsn: str, clients: int, seconds: int) -> float:
    """One pgbench run of the webhook transaction (its rows are deleted afterwards)."""
    tps, p99 = await asyncio.to_thread(pgbench_tps, dsn, clients, seconds)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(PGBENCH_CLEANUP)
    finally:
        await conn.close()
    print(f"  reference, pgbench at {clients} client(s): {tps:.0f} tps, p99 {p99:.1f} ms")
    return tps


async def ingest_phase(dsn: str, api_port: int, args: argparse.Namespace) -> None:
    """Mimic's ingest against pgbench running one webhook's transaction, at 16 and at 1.

    pgbench runs before and after Mimic, and the ratio is to the mean of the two, so that a
    drift of the shared machine during the run moves the reference as much as Mimic."""
    seconds = args.pgbench_seconds
    print(
        "phase 1: ingest (API + Postgres; no worker running) against pgbench running the same "
        f"five-statement transaction (prepared, {seconds} s per run, before and after Mimic)"
    )
    # Each run lasts a second or more (a shorter one is mostly noise on a shared machine).
    for clients, requests in ((args.concurrency, args.requests * 2), (1, args.requests)):
        before = await reference_tps(dsn, clients, seconds)
        rate, p99 = await throughput(api_port, requests, clients)
        after = await reference_tps(dsn, clients, seconds)
        tps = (before + after) / 2
        target = ">= 1.5, p99 <= 50 ms" if clients > 1 else ">= 0.8"
        print(
            f"  => {rate / tps:.2f} x pgbench at concurrency {clients} (target {target}); "
            f"p99 {p99:.1f} ms"
        )


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def scale_phase(dsn: str, env: dict[str, str], api_port: int, api_pid: int) -> None:
    """Ingest with one API process and with two on the same database (16 connections in all),
    and what each used of the machine's CPU; routing with two workers is in the routing
    phase's last line."""
    print("phase S: ingest through one API process, then two (16 connections in all)")
    second_port = free_port()
    second = subprocess.Popen(
        [sys.executable, "-m", "mimic", "api"], env={**env, "MIMIC_PORT": str(second_port)}
    )
    try:
        await wait_ready(f"http://127.0.0.1:{second_port}/readyz", second)
        # Warm-up, not counted: connections, prepared statements, the routes' cache.
        await asyncio.gather(load(api_port, 2_000, 8), load(second_port, 2_000, 8))
        for ports in ([api_port], [api_port, second_port]):
            pids = [api_pid, second.pid][: len(ports)]
            before = [cpu_seconds(p) for p in pids]
            results = await asyncio.gather(*(load(p, 10_000, 16 // len(ports)) for p in ports))
            # The generators' own clocks (they sign every request before theirs start).
            elapsed = max(r["elapsed"] for r in results)
            used = [cpu_seconds(p) - b for p, b in zip(pids, before, strict=True)]
            rate = 10_000 * len(results) / elapsed
            print(
                f"  {len(ports)} API process(es): {rate:.0f} webhooks/s; CPU per process "
                + ", ".join(f"{u / elapsed:.0%}" for u in used)
                + f" of one core (the machine has {os.cpu_count()})"
            )
    finally:
        second.terminate()
        second.wait(timeout=30)


async def email_phase(
    dsn: str, env: dict[str, str], api_port: int, smtp: SmtpCounter, count: int, concurrency: int
) -> None:
    print(f"phase E: email, {count} messages to a local aiosmtpd server, concurrency {concurrency}")
    fresh, reused = await reference(smtp.port, count, concurrency)
    print(
        f"  reference, aiosmtplib alone in the bench process (beside the server): {fresh:.0f} "
        f"messages/s with a connection per message, {reused:.0f} messages/s reusing connections"
    )
    own_fresh, own_reused = await asyncio.to_thread(
        reference_in_own_process, smtp.port, count, concurrency
    )
    print(
        f"  reference, aiosmtplib alone in a process of its own: {own_fresh:.0f} messages/s "
        f"with a connection per message, {own_reused:.0f} messages/s reusing connections"
    )
    accepted = await accept_sends(api_port, "bench-key", count, 8)
    print(f"  mimic api: {count} sends accepted at {accepted:.0f} sends/s (8 connections)")
    conn = await asyncpg.connect(dsn)
    try:
        jobs = int(await conn.fetchval(JOBS_LEFT, "email"))
    finally:
        await conn.close()
    print(f"  queued as {jobs} jobs ({count / jobs:.1f} sends per job)")
    before = smtp.count
    drain, worker = await measure_drain(
        dsn, "email", [sys.executable, "-m", "mimic", "worker"], env, EMAILS_LEFT
    )
    worker.terminate()
    worker.wait(timeout=30)
    print(
        f"  mimic worker, 1 process: {drain.jobs} emails at {drain.rate:.0f} emails/s "
        f"= {drain.rate / reused:.2f} x aiosmtplib reusing connections beside the server "
        f"(target >= 0.70), {drain.rate / own_reused:.2f} x in a process of its own; "
        f"{drain.rate / fresh:.2f} x a connection per message; "
        f"{drain.xacts_per_job:.1f} transactions per email; server got {smtp.count - before}; "
        f"worker peak RSS {drain.rss_mb:.0f} MB"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--e2e", type=int, default=300, help="webhooks for the latency phase")
    parser.add_argument(
        "--events", type=int, default=10_000_000, help="events in the table for the list phase"
    )
    parser.add_argument(
        "--upgrade-events",
        type=int,
        default=1_000_000,
        help="events stored before the upgrade phase migrates them into partitions",
    )
    parser.add_argument(
        "--pgbench-seconds", type=int, default=10, help="length of each pgbench reference run"
    )
    parser.add_argument("--emails", type=int, default=3000, help="messages for the email phase")
    parser.add_argument(
        "--phases",
        default="email,webhooks,upgrade",
        help="comma list: email (send rate), ingest (against pgbench), scale (one API process "
        "and two), upgrade (the migration to partitions on --upgrade-events events), "
        "routing (mimic worker against procrastinate no-op jobs, at each backlog "
        "size), lists (the events API and the console as the table grows), webhooks (scale, "
        "ingest, routing, two worker processes, latency, lists)",
    )
    parser.add_argument(
        "--backlogs",
        default="5000,100000",
        help="comma list of queued deliveries (and no-op jobs) the routing phase drains",
    )
    asyncio.run(main(parser.parse_args()))
