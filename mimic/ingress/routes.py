from __future__ import annotations

from litestar.types import ControllerRouterHandler

from mimic.settings import Settings


def routes(settings: Settings) -> list[ControllerRouterHandler]:
    return []
