from __future__ import annotations

import procrastinate

from mimic.settings import Settings


def register(app: procrastinate.App, settings: Settings) -> None:
    pass
