"""The reference for routing speed: procrastinate itself running no-op jobs.

  python -m bench.noop [--tuned] [--concurrency 10]     (DATABASE_URL set)

Stock: procrastinate's own connector, pool and polling (5 s). Tuned: set up as a careful
operator would, like Mimic's worker (its pool: autocommit, no per-checkout check; a 0.5 s
poll), so the difference to Mimic is Mimic's own work per job. Either way the worker reads its
own queue only, as Mimic's names its own: it never takes (and fails, no such task) a job of
Mimic's that another phase left queued.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os

import procrastinate

from mimic.worker import job_pool

QUEUE = "bench_noop"
TASK = "bench.noop"

# `python -m bench.noop` defines its app in __main__, which procrastinate warns about (a
# concern for tasks imported by name elsewhere; here the worker is the only user).
logging.getLogger("procrastinate.blueprints").setLevel(logging.ERROR)
app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(conninfo=os.environ.get("DATABASE_URL", ""))
)


@app.task(name=TASK, queue=QUEUE)
async def noop(n: int) -> None:
    return None


async def main(args: argparse.Namespace) -> None:
    dsn = os.environ["DATABASE_URL"]
    pool = job_pool(dsn, size=args.concurrency + 4) if args.tuned else None
    if pool is not None:
        await pool.open(wait=True)
    try:
        async with app.open_async(pool=pool):
            await app.run_worker_async(
                queues=[QUEUE],
                concurrency=args.concurrency,
                # Tuned like Mimic's worker (WORKER_POLL_SECONDS' default), else stock.
                fetch_job_polling_interval=0.5 if args.tuned else 5.0,
            )
    finally:
        if pool is not None:
            await pool.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.noop", description=__doc__)
    parser.add_argument("--tuned", action="store_true")
    parser.add_argument("--concurrency", type=int, default=10)
    asyncio.run(main(parser.parse_args()))
