"""Which events go where: event-type patterns, payload filters, and the router.

A stored route matches an event when its provider is the event's, one of its event-type
patterns matches (an exact name, a prefix ``customer.subscription.*``, or ``*``) and every
condition of its filter holds on the payload. Mimic's own handlers (email tracking) are rules
in code, always on, besides the stored routes.

The router caches the stored routes per process. The statement that stores a batch of events
checks the version the cache was read at (``gateway_version``); when a change has committed
since, the batch is matched again against the new routes, so a change applies to the next
event every API process receives, at the cost of one index lookup per batch.
"""

from __future__ import annotations

import functools
import typing
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from mimic.core.errors import BadRequest
from mimic.events.schemas import (
    BodyKind,
    Condition,
    DestinationState,
    Route,
)

#: The task of every delivery to a destination, except the seed's inkpass routes.
DELIVER_TASK = "mimic.tasks.deliver"
MAX_PATH_DEPTH = 16
#: The seed's inkpass paths -> their task names; filled by the billing domain (which owns the
#: inkpass contract) when the wiring registers it.
SEED_TASKS: dict[str, str] = {}


def task_for(body: str, path: str) -> str:
    """A route's task: the seed's name for the seed's inkpass routes, else the generic one."""
    if body == "inkpass" and path in SEED_TASKS:
        return SEED_TASKS[path]
    return DELIVER_TASK


class Rule(msgspec.Struct, frozen=True):
    """One of Mimic's own handlers for a provider's event type (in code, always on)."""

    provider: str
    event_type: str
    route: Route


# --- event types ------------------------------------------------------------------------------


def pattern_matches(pattern: str, event_type: str) -> bool:
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return event_type.startswith(pattern[:-1])
    return pattern == event_type


@functools.cache
def _stripe_types() -> tuple[str, ...]:
    """Every event type the installed Stripe SDK knows (its ``Event.type`` literal)."""
    from stripe._event import Event

    try:
        hint = typing.get_type_hints(Event)["type"]
    except Exception:  # the SDK changed shape: fall back to the types Mimic routes itself
        return ()
    return tuple(str(t) for t in typing.get_args(hint))


#: Beyond the types Mimic's own handlers read (added by ``known_types``).
_RESEND_TYPES = (
    "email.sent",
    "email.scheduled",
    "email.delivered",
    "email.delivery_delayed",
    "email.complained",
    "email.bounced",
    "email.opened",
    "email.clicked",
    "email.failed",
    "email.received",
    "contact.created",
    "contact.updated",
    "contact.deleted",
    "domain.created",
    "domain.updated",
    "domain.deleted",
)
_POSTMARK_TYPES = ("Delivery", "Bounce", "SpamComplaint", "Open", "Click", "SubscriptionChange")


def known_types(provider: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The event types a provider sends, as far as Mimic knows (a pattern must match one)."""
    base: Iterable[str] = {
        "stripe": (*_stripe_types(), "checkout.session.completed"),
        "resend": _RESEND_TYPES,
        "postmark": _POSTMARK_TYPES,
    }.get(provider, ())
    return frozenset((*base, *extra))


def check_patterns(provider: str, patterns: Sequence[str], known: frozenset[str]) -> list[str]:
    """The patterns, each checked: a 400 naming the one that matches no known type."""
    for i, pattern in enumerate(patterns):
        shape_ok = pattern == "*" or (
            "*" not in pattern[:-1] if pattern.endswith(".*") else "*" not in pattern
        )
        if not shape_ok:
            raise BadRequest(
                f"event_types[{i}]: {pattern!r}: use an exact type, a prefix such as "
                "'customer.subscription.*', or '*'",
                code="invalid_event_types",
            )
        if not any(pattern_matches(pattern, t) for t in known):
            raise BadRequest(
                f"event_types[{i}]: {pattern!r} matches no {provider} event type Mimic knows "
                "(check the spelling against the provider's list)",
                code="invalid_event_types",
            )
    return list(dict.fromkeys(patterns))


# --- filters ----------------------------------------------------------------------------------

_MISSING = object()


def _segments(path: str) -> list[str]:
    return path.split(".")


def check_filter(conditions: Sequence[Condition]) -> list[Condition]:
    """Each condition checked: a 400 naming the field at fault (``filter[1].value``)."""
    for i, c in enumerate(conditions):
        where = f"filter[{i}]"
        parts = _segments(c.path)
        if any(not p for p in parts) or len(parts) > MAX_PATH_DEPTH:
            raise BadRequest(
                f"{where}.path: {c.path!r}: dot-separated keys, none empty, at most "
                f"{MAX_PATH_DEPTH} (e.g. data.object.metadata.product_type)",
                code="invalid_filter",
            )
        scalar = (str, int, float, bool, type(None))
        if c.op in ("eq", "ne") and not isinstance(c.value, scalar):
            raise BadRequest(
                f"{where}.value: {c.op} compares with a string, number, boolean or null",
                code="invalid_filter",
            )
        if c.op == "in" and not (
            isinstance(c.value, list)
            and c.value
            and len(c.value) <= 100
            and all(isinstance(v, scalar) for v in c.value)
        ):
            raise BadRequest(
                f"{where}.value: 'in' takes a list of 1-100 strings, numbers, booleans or nulls",
                code="invalid_filter",
            )
        if c.op == "exists" and not isinstance(c.value, bool | None):
            raise BadRequest(
                f"{where}.value: 'exists' takes true (present, the default) or false (absent)",
                code="invalid_filter",
            )
        if c.op == "prefix" and not (isinstance(c.value, str) and c.value):
            raise BadRequest(
                f"{where}.value: 'prefix' takes a non-empty string", code="invalid_filter"
            )
    return list(conditions)


def lookup(payload: Any, path: str) -> Any:
    """The value at a dotted path, or ``_MISSING``."""
    node = payload
    for part in _segments(path):
        if isinstance(node, dict):
            node = node.get(part, _MISSING)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
        if node is _MISSING:
            return _MISSING
    return node


def holds(condition: Condition, payload: Any) -> bool:
    found = lookup(payload, condition.path)
    if condition.op == "exists":
        return (found is not _MISSING) is (condition.value is not False)
    if found is _MISSING:
        return condition.op == "ne"
    if condition.op == "eq":
        return _equal(found, condition.value)
    if condition.op == "ne":
        return not _equal(found, condition.value)
    if condition.op == "in":
        return any(_equal(found, v) for v in condition.value)
    return isinstance(found, str) and found.startswith(condition.value)


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return bool(a == b)


# --- the stored routes, as the router sees them ------------------------------------------------


class StoredRoute(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    name: str | None
    provider: str
    event_types: tuple[str, ...]
    filter: tuple[Condition, ...]
    destination: str
    path: str
    body: BodyKind
    task_name: str
    destination_state: DestinationState

    def route(self) -> Route:
        return Route(
            target_service=self.destination,
            task_name=self.task_name,
            route_id=self.id,
            path=self.path,
            body=self.body,
        )


class RouteSet(msgspec.Struct, frozen=True):
    version: int
    routes: tuple[StoredRoute, ...]


Payload = Any


class Router:
    """Mimic's handlers plus the stored routes (cached; see the module's docstring)."""

    def __init__(self, *rule_sets: Iterable[Rule]) -> None:
        self._rules: dict[tuple[str, str], list[Route]] = {}
        for rules in rule_sets:
            for rule in rules:
                routes = self._rules.setdefault((rule.provider, rule.event_type), [])
                if rule.route in routes:
                    raise ValueError(f"route declared twice: {rule}")
                routes.append(rule.route)
        self.stored: RouteSet | None = None

    def handler_types(self, provider: str) -> set[str]:
        """The event types Mimic's own handlers take from a provider."""
        return {event_type for p, event_type in self._rules if p == provider}

    def handlers(self, provider: str, event_type: str) -> list[Route]:
        return list(self._rules.get((provider, event_type), ()))

    def routes_for(
        self, stored: RouteSet, provider: str, event_type: str, payload: Payload
    ) -> list[Route]:
        """Where an event goes: Mimic's handlers, then every enabled stored route that
        matches, except those to a disabled destination. ``payload`` is the parsed event, or
        a callable that parses it (only called when a matching route has a filter)."""
        found = self.handlers(provider, event_type)
        parsed: Any = _MISSING
        for r in stored.routes:
            if r.destination_state == "disabled" or r.provider != provider:
                continue
            if not any(pattern_matches(p, event_type) for p in r.event_types):
                continue
            if r.filter:
                if parsed is _MISSING:
                    parsed = payload() if callable(payload) else payload
                if not all(holds(c, parsed) for c in r.filter):
                    continue
            found.append(r.route())
        return found


def known_for(router: Router, provider: str) -> frozenset[str]:
    return known_types(provider, router.handler_types(provider))
