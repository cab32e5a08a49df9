"""`make api-conformance`: schemathesis against a running `mimic api`, failing on any finding.

Starts the API as a real process (dev mode, so the Stripe test endpoint is in the document)
on a Postgres of its own in a temporary folder, waits
for /readyz, runs schemathesis with the admin key and four checks, and stops the API.

    uv run python -m tests.api_conformance [--max-examples N]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import httpx

from tests.fakes import FakeHTTPServer, stripe_responder
from tests.helpers import TEST_SECRETS
from tests.procs import PrivatePostgres, free_port

CHECKS = (
    "not_a_server_error,status_code_conformance,response_schema_conformance,"
    "content_type_conformance"
)


def wait_ready(url: str, api: subprocess.Popen[bytes], within: float = 120) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if api.poll() is not None:
            raise SystemExit(f"mimic api exited with {api.returncode} before it was ready")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"mimic api was not ready within {within:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-examples", type=int, default=50)
    args = parser.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with (
        tempfile.TemporaryDirectory(prefix="mimic-conformance-") as data_dir,
        FakeHTTPServer(stripe_responder) as stripe,
    ):
        postgres = PrivatePostgres(pathlib.Path(data_dir) / "pg")
        env = {
            **os.environ,
            **TEST_SECRETS,
            "MIMIC_ENV": "dev",
            "MIMIC_PORT": str(port),
            "DATABASE_URL": postgres.uri,
            "WORKER_HEALTH_PORT": "0",
            "MIMIC_LOG_LEVEL": "WARNING",
            # Billing against a fake Stripe (a local HTTP server), as in the tests.
            "BILLING_PRODUCTS": "tentackl_solo=price_solo_sub",
            "STRIPE_API_URL": stripe.url,
        }
        api = subprocess.Popen([sys.executable, "-m", "mimic", "api"], env=env)
        try:
            wait_ready(url, api)
            command = [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "run",
                f"{url}/docs/openapi.json",
                "--header",
                f"X-API-Key: {TEST_SECRETS['MIMIC_API_KEYS']}",
                "--checks",
                CHECKS,
                "--max-examples",
                str(args.max_examples),
                "--seed",
                "1",
            ]
            print("+", " ".join(command[:6]), "...", flush=True)
            return subprocess.run(command, check=False).returncode
        finally:
            api.terminate()
            api.wait(timeout=30)
            postgres.stop()


if __name__ == "__main__":
    raise SystemExit(main())
