"""The inkpass tasks, one per seed task name: deliveries of the seed's inkpass routes."""

from __future__ import annotations

import procrastinate

from mimic.billing.inkpass import PATHS
from mimic.core.deps import Deps
from mimic.core.jobs import QUEUE_WEBHOOKS, RETRY, job_body
from mimic.events.delivery import run_deliveries


@job_body
async def route_to_inkpass(
    deps: Deps, delivery_id: str | None = None, delivery_ids: list[str] | None = None
) -> None:
    await run_deliveries(deps, delivery_id, delivery_ids)


def blueprint() -> procrastinate.Blueprint:
    """A new blueprint for each app: procrastinate ties a task to the app it was added to."""
    tasks = procrastinate.Blueprint()
    for name in PATHS.values():
        tasks.task(name=name, queue=QUEUE_WEBHOOKS, pass_context=True, retry=RETRY)(
            route_to_inkpass
        )
    return tasks
