"""(provider, event type) -> routes. Each domain declares its rules; the wiring joins them."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from mimic.events.schemas import Route


class Rule(msgspec.Struct, frozen=True):
    provider: str
    event_type: str
    route: Route


class RoutingTable:
    """Every route of every event type; an event type with none is stored as ``ignored``."""

    def __init__(self, *rule_sets: Iterable[Rule]) -> None:
        self._routes: dict[tuple[str, str], list[Route]] = {}
        for rules in rule_sets:
            for rule in rules:
                routes = self._routes.setdefault((rule.provider, rule.event_type), [])
                if rule.route in routes:
                    raise ValueError(f"route declared twice: {rule}")
                routes.append(rule.route)

    def routes_for(self, provider: str, event_type: str) -> list[Route]:
        return list(self._routes.get((provider, event_type), ()))

    def event_types(self, provider: str) -> set[str]:
        return {event_type for p, event_type in self._routes if p == provider}
