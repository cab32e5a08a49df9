"""`mimic run` from nothing: embedded Postgres, migrations, API and worker; Ctrl-C stops all."""

from __future__ import annotations

import pathlib
import signal
import time

import httpx
import psycopg
import pytest

from tests.procs import free_port, start_mimic, stop, wait_http_ok

pytestmark = pytest.mark.slow


def embedded_uri(data_dir: pathlib.Path) -> str:
    return f"postgresql://postgres:@/postgres?host={data_dir / 'pgdata'}"


def test_mimic_run_serves_api_and_worker_on_the_embedded_database(
    tmp_path: pathlib.Path,
) -> None:
    port = free_port()
    env = {
        "MIMIC_DATA_DIR": str(tmp_path),
        "MIMIC_PORT": str(port),
        "DATABASE_URL": "",
        "INKPASS_INTERNAL_URL": "",  # unset: `mimic run` starts its inkpass stand-in
        "MIMIC_SERVICE_API_KEY": "",  # the documented dev key
        "MIMIC_API_KEYS": "",
    }
    base = f"http://127.0.0.1:{port}"

    # Output to a file: a chatty process tree blocks on a pipe nobody reads while it runs.
    log = tmp_path / "run.log"
    proc = start_mimic("run", env, log=log)
    try:
        wait_http_ok(f"{base}/readyz", proc)
        # The banner comes once the API answers, not before.
        for _ in range(50):
            if "mimic: API on" in log.read_text():
                break
            time.sleep(0.1)
        assert f"mimic: API on {base} (docs at /docs)" in log.read_text()
        assert (tmp_path / "dev-encryption-key").exists()  # dev BYOK works as pasted
        # A second `make run` on the same port says what to change, and stops.
        second = start_mimic("run", env)
        assert second.wait(timeout=60) == 2
        assert second.stdout is not None
        said = second.stdout.read().decode()
        second.stdout.close()
        assert f"port {port} on 127.0.0.1 is in use" in said
        assert "set MIMIC_PORT" in said
        assert "Errno" not in said
        assert httpx.get(f"{base}/docs").status_code == 200
        with psycopg.connect(embedded_uri(tmp_path), autocommit=True) as conn:
            workers = conn.execute("SELECT count(*) FROM procrastinate_workers").fetchone()
            conn.execute("CREATE TABLE kept_between_runs (id int)")
        assert workers == (2,)  # one worker process: its webhooks share and its email share
        # The README's example: a dev Stripe event ends `delivered` at the stand-in.
        sent = httpx.post(
            f"{base}/api/v1/gateway/webhooks/stripe/test",
            json={"type": "checkout.session.completed", "data": {"object": {"id": "cs_1"}}},
        )
        event_id = sent.json()["event_id"]
        status = None
        for _ in range(100):
            status = httpx.get(
                f"{base}/api/v1/gateway/webhooks/events/{event_id}",
                headers={"X-API-Key": "mimic-dev-key"},
            ).json()["status"]
            if status == "delivered":
                break
            time.sleep(0.1)
        assert status == "delivered"
    finally:
        stop(proc, signal.SIGINT)
    output = log.read_text()
    assert proc.returncode == 0, output
    assert "inkpass stand-in: POST /internal/billing/subscription-created" in output
    assert "Stopped worker" in output
    assert "Traceback" not in output
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(embedded_uri(tmp_path), connect_timeout=2)

    # A second run reuses the same data directory.
    proc = start_mimic("run", env)
    try:
        wait_http_ok(f"{base}/readyz", proc)
        with psycopg.connect(embedded_uri(tmp_path)) as conn:
            kept = conn.execute("SELECT to_regclass('kept_between_runs')").fetchone()
        assert kept == ("kept_between_runs",)
    finally:
        output = stop(proc, signal.SIGTERM)
    assert proc.returncode == 0, output
