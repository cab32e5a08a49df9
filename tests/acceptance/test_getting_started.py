"""The getting-started page and the README, run as written against a live `make run`-like stack:
`mimic run` (API and worker) on the test's database, the inkpass stand-in and an SMTP sink.

Every ```bash block of docs/getting-started.md, then of README.md, runs in order in one bash
session (so a variable set in one block is there in the next), with `set -euo pipefail`. The
page's address (localhost:8006) is the stack's; `curl` fails on an HTTP error; `uv run mimic`
is this interpreter's `python -m mimic`. ```shell blocks (`make run`, `make mail`: they run
until Ctrl-C) are the reader's to start and are not run here.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shlex
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.fakes import SmtpSink
from tests.helpers import ROOT
from tests.procs import free_port, start_mimic, stop, wait_http_ok

pytestmark = pytest.mark.slow

BLOCK = re.compile(r"^```bash\n(.*?)^```", re.MULTILINE | re.DOTALL)
SECRET = re.compile(r"STRIPE_WEBHOOK_SECRET=(whsec_\w+) make run")
PAGES = [ROOT / "docs" / "getting-started.md", ROOT / "README.md"]


def runnable(page: pathlib.Path) -> list[str]:
    blocks = BLOCK.findall(page.read_text())
    # The README's first block is `make run` / `make test` themselves.
    return [b for b in blocks if not re.search(r"^make (run|test)\b", b, re.MULTILINE)]


def test_every_page_has_runnable_examples_and_names_one_secret() -> None:
    for page in PAGES:
        assert runnable(page), page
        assert set(SECRET.findall(page.read_text())) == {"whsec_getting_started"}, page


def script(port: int) -> str:
    prelude = f"""
set -euo pipefail
curl() {{ command curl --silent --show-error --fail-with-body "$@"; echo; }}
uv() {{
  if [ "$1" = run ] && [ "$2" = mimic ]; then shift 2; {shlex.quote(sys.executable)} -m mimic "$@";
  else echo "uv $* is not run by this test" >&2; return 2; fi
}}
"""
    parts = [prelude]
    for page in PAGES:
        for number, block in enumerate(runnable(page), 1):
            text = block.replace("localhost:8006", f"127.0.0.1:{port}")
            text = text.replace("127.0.0.1:8006", f"127.0.0.1:{port}")
            parts.append(f"echo '--- {page.name} block {number}'\n{text}")
    return "\n".join(parts)


def test_the_getting_started_examples_work_against_a_live_stack(
    tmp_path: pathlib.Path, database_url: str
) -> None:
    port, standin_port = free_port(), free_port()
    env = {
        "MIMIC_ENV": "dev",
        "MIMIC_DATA_DIR": str(tmp_path),
        "MIMIC_PORT": str(port),
        "DATABASE_URL": database_url,
        "WORKER_HEALTH_PORT": "0",
        "INKPASS_INTERNAL_URL": f"http://127.0.0.1:{standin_port}",
        "MIMIC_SERVICE_API_KEY": "",
        "MIMIC_API_KEYS": "",
        "STRIPE_WEBHOOK_SECRET": "whsec_getting_started",
        "RESEND_WEBHOOK_SECRET": "",
        "MIMIC_ENCRYPTION_KEYS": "",
        "EMAIL_PROVIDER": "dev",
        "DEV_SMTP_HOST": "127.0.0.1",
    }
    base = f"http://127.0.0.1:{port}"
    with SmtpSink() as smtp:
        env["DEV_SMTP_PORT"] = str(smtp.port)
        standin_log, run_log = tmp_path / "standin.log", tmp_path / "run.log"
        standin = start_mimic("inkpass-standin", env, "--port", str(standin_port), log=standin_log)
        run = start_mimic("run", env, log=run_log)
        try:
            wait_http_ok(f"{base}/readyz", run)
            done = subprocess.run(
                ["bash", "-c", script(port)],
                env={**os.environ, **env},
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
            said = done.stdout
            assert '"duplicate":false' in said.replace(" ", "")
            assert '"duplicate":true' in said.replace(" ", "")
            # What the pages promise: every event routed to inkpass, every email sent.
            admin = {"X-API-Key": "mimic-dev-key"}
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                events = httpx.get(f"{base}/api/v1/gateway/webhooks/events", headers=admin)
                statuses = {e["status"] for e in events.json()["items"]}
                if statuses == {"delivered"} and len(smtp.messages) == 2:
                    break
                time.sleep(0.2)
            assert statuses == {"delivered"}, json.dumps(events.json(), indent=1)
            assert len(events.json()["items"]) == 3  # two signed (one per page), one test event
            assert len(smtp.messages) == 2, run_log.read_text()
        finally:
            stop(run, signal.SIGINT)
            stop(standin, signal.SIGTERM)
    assert "inkpass stand-in: POST /internal/billing/invoice-event" in standin_log.read_text()
    assert "Traceback" not in run_log.read_text()


def test_the_docs_site_builds_offline_and_strict(tmp_path: pathlib.Path) -> None:
    site = tmp_path / "site"
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    for page in site.rglob("*.html"):
        assets = re.findall(
            r'<(?:script|link|img)[^>]+(?:src|href)="(https?://[^"]+)"', page.read_text()
        )
        assert assets == [], f"{page}: loads {assets} from another host"
    assert (site / "reference" / "openapi.json").exists()
