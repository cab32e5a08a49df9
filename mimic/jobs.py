"""Kept so that runbooks with ``PROCRASTINATE_APP=mimic.jobs.app`` keep working.

The procrastinate app lives in :mod:`mimic.worker` (``PROCRASTINATE_APP=mimic.worker.app``).
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "app":
        from mimic import worker

        return worker.app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
