"""The resources a request handler or a task uses, opened once per process."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from mimic.db import Database
from mimic.settings import Settings


@dataclass(frozen=True)
class Deps:
    settings: Settings
    db: Database
    http: httpx.AsyncClient
