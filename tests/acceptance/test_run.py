"""`mimic run` from nothing: embedded Postgres, migrations, API and worker; Ctrl-C stops all."""

from __future__ import annotations

import pathlib
import signal

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
    env = {"MIMIC_DATA_DIR": str(tmp_path), "MIMIC_PORT": str(port), "DATABASE_URL": ""}
    base = f"http://127.0.0.1:{port}"

    proc = start_mimic("run", env)
    try:
        wait_http_ok(f"{base}/readyz", proc)
        assert httpx.get(f"{base}/docs").status_code == 200
        with psycopg.connect(embedded_uri(tmp_path), autocommit=True) as conn:
            workers = conn.execute("SELECT count(*) FROM procrastinate_workers").fetchone()
            conn.execute("CREATE TABLE kept_between_runs (id int)")
        assert workers == (1,)
    finally:
        output = stop(proc, signal.SIGINT)
    assert proc.returncode == 0, output
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
