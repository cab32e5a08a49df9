"""Child processes of `mimic run` and `mimic worker --processes N`: start them, forward
SIGTERM/SIGINT, restart one that dies (or stop the rest), and announce readiness."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time


class Child:
    """One `mimic <command>` child process, started (and restarted) with extra env."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.argv, self.env = argv, env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mimic", *self.argv], env={**os.environ, **self.env}
        )

    def code(self) -> int | None:
        return self.proc.poll() if self.proc else None


# uvicorn re-raises the signal it was stopped with, so "killed by SIGTERM/SIGINT" after we
# asked it to stop is a clean exit too.
_CLEAN = {0, -signal.SIGTERM, -signal.SIGINT, 128 + signal.SIGINT}


def supervise(children: list[Child], *, restart: bool) -> int:
    """Run the children until SIGTERM/SIGINT, which each gets in turn (they stop gracefully).

    A child that exits by itself is restarted (``restart``) or stops all the others.
    """
    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.proc is not None and child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    for child in children:
        child.start()
    delays = {id(child): 1.0 for child in children}
    while not stopping:
        time.sleep(0.2)
        for child in children:
            code = child.code()
            if code is None or stopping:
                continue
            if not restart:
                forward(signal.SIGTERM, None)
                break
            delay = delays[id(child)]
            print(
                f"mimic: {' '.join(child.argv)} exited ({code}); restarting in {delay:g}s",
                flush=True,
            )
            time.sleep(delay)
            delays[id(child)] = min(delay * 2, 30.0)
            if not stopping:
                child.start()
    # A signal that came while a child was being started: make sure every child has it.
    forward(signal.SIGTERM, None)
    codes = [child.proc.wait() for child in children if child.proc is not None]
    return 0 if all(code in _CLEAN for code in codes) else 1


def announce_when_ready(readyz: str, banner: str, within: float = 120.0) -> None:
    """Print the banner once the API answers /readyz (not before: it would be a promise)."""
    import httpx

    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if httpx.get(readyz, timeout=2).status_code == 200:
                print(banner, flush=True)
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        # As uvicorn binds: a port left in TIME_WAIT by a previous run is free to reuse.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True
