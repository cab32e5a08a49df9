"""`make mail`: a local SMTP sink (aiosmtpd) that prints each message readably: who sent it, to
whom, its subject and its text part decoded (a password-reset link can be read and clicked).

  python scripts/mailsink.py [--port 1025]

`make run` sends dev mail to 127.0.0.1:1025 (DEV_SMTP_PORT); on another port, set
DEV_SMTP_PORT to the same value for `make run`.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import signal
import socket
import sys
import threading
from typing import Any

from aiosmtpd.controller import Controller


def readable(raw: bytes) -> str:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    lines = [
        f"--- mail from {message.get('From', '?')} to {message.get('To', '?')}",
        f"Subject: {message.get('Subject', '')}",
    ]
    body = message.get_body(preferencelist=("plain", "html"))  # type: ignore[attr-defined]
    if body is not None:
        lines += ["", body.get_content().rstrip()]
    return "\n".join(lines) + "\n"


class Printer:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        print(readable(envelope.original_content or envelope.content), flush=True)
        return "250 OK"


def port_busy(host: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def main() -> int:
    parser = argparse.ArgumentParser(prog="make mail", description=__doc__)
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    if port_busy(args.host, args.port):
        print(
            f"make mail: port {args.port} is busy (another mail sink?); "
            f"try make mail MAIL_PORT={args.port + 1} and DEV_SMTP_PORT={args.port + 1} make run",
            file=sys.stderr,
        )
        return 2
    controller = Controller(Printer(), hostname=args.host, port=args.port)
    controller.start()
    print(f"make mail: printing what arrives at {args.host}:{args.port} (Ctrl-C stops)", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
