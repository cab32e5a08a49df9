"""`make mail` prints a message readably (subject and decoded text, not base64), takes a port,
and says in one line when the port is busy."""

from __future__ import annotations

import asyncio
import email.message
import pathlib
import socket
import subprocess
import sys
import time

import aiosmtplib

from tests.procs import free_port

SCRIPT = pathlib.Path(__file__).parents[2] / "scripts" / "mailsink.py"


async def test_a_base64_message_is_printed_decoded_on_the_port_given() -> None:
    port = free_port()
    sink = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SCRIPT),
        "--port",
        str(port),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert sink.stdout is not None
    try:
        first = await asyncio.wait_for(sink.stdout.readline(), 20)
        assert b"printing what arrives" in first
        message = email.message.EmailMessage()
        message["From"] = "mimic@example.com"
        message["To"] = "ann@example.com"
        message["Subject"] = "Reset your password"
        # Non-ASCII text sent as base64, as Mimic's messages often are.
        message.set_content("Réinitialiser: https://app.example.com/reset/tok123\n", cte="base64")
        await aiosmtplib.send(message, hostname="127.0.0.1", port=port)
        printed = b"".join([await asyncio.wait_for(sink.stdout.readline(), 10) for _ in range(4)])
        text = printed.decode()
        assert "Subject: Reset your password" in text
        assert "Réinitialiser: https://app.example.com/reset/tok123" in text
    finally:
        sink.terminate()
        await sink.wait()


def test_a_busy_port_is_one_line_not_a_traceback() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, str(SCRIPT), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert f"port {port} is busy" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert time.monotonic() - started < 30
