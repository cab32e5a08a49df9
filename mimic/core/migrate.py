"""Schema on startup: numbered SQL files plus procrastinate's own schema, under an advisory lock.

Each step runs in its own transaction and is recorded with a SHA-256 checksum in
``mimic_schema_migrations``. Procrastinate's schema comes from the installed package
(never copied here):

- on an empty database, its full ``schema.sql`` is applied as step ``0000_procrastinate``,
  and every migration the package ships is recorded as included in it;
- after a procrastinate upgrade, the package's new migrations
  (``procrastinate/<version>_<name>.sql``) are applied in order, like ours.
"""

from __future__ import annotations

import hashlib
import logging
import pathlib
import re
from collections.abc import Sequence
from importlib import resources
from importlib.resources.abc import Traversable

import msgspec
from procrastinate.schema import SchemaManager

from mimic.core.db import Connection, connect
from mimic.core.errors import DatabaseUnavailable, MimicError, SchemaError

logger = logging.getLogger(__name__)

#: Shipped inside the package, so an installed wheel migrates as a source tree does.
MIGRATIONS_DIR: Traversable = resources.files("mimic.core") / "migrations"
_MIGRATION_NAME = re.compile(r"^[0-9]{4}_[a-z0-9_]+\.sql$")
# Any fixed 64-bit number; every Mimic process agrees on it.
ADVISORY_LOCK_KEY = 0x4D494D4943  # "MIMIC"

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS mimic_schema_migrations (
    version text PRIMARY KEY,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class Step(msgspec.Struct, frozen=True):
    version: str
    sql: str
    #: procrastinate's full schema changes with each release; its migrations carry upgrades.
    verify: bool = True
    #: Already contained in the full procrastinate schema when that is applied fresh.
    in_baseline: bool = False

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


BASELINE = "0000_procrastinate"


def procrastinate_steps() -> list[Step]:
    folder = pathlib.Path(SchemaManager.get_migrations_path())
    return [
        Step(version=f"procrastinate/{f.stem}", sql=f.read_text(encoding="utf-8"), in_baseline=True)
        for f in sorted(folder.glob("*.sql"))
    ]


def load_steps(directory: Traversable = MIGRATIONS_DIR) -> list[Step]:
    steps = [Step(version=BASELINE, sql=SchemaManager.get_schema(), verify=False)]
    steps += procrastinate_steps()
    files = sorted(
        (f for f in directory.iterdir() if _MIGRATION_NAME.match(f.name)), key=lambda f: f.name
    )
    if not files:
        raise SchemaError(f"no migrations found in {directory}")
    steps += [
        Step(version=f.name.removesuffix(".sql"), sql=f.read_text(encoding="utf-8")) for f in files
    ]
    return steps


class SchemaStatus(msgspec.Struct, frozen=True):
    pending: list[str]

    @property
    def current(self) -> bool:
        return not self.pending


async def _applied(conn: Connection) -> dict[str, str]:
    exists = await conn.fetchval("SELECT to_regclass('mimic_schema_migrations')")
    if exists is None:
        return {}
    rows = await conn.fetch("SELECT version, checksum FROM mimic_schema_migrations")
    return {row["version"]: row["checksum"] for row in rows}


def _check(steps: Sequence[Step], applied: dict[str, str]) -> list[Step]:
    """Return the steps still to apply; refuse edited ones."""
    for step in steps:
        recorded = applied.get(step.version)
        if step.verify and recorded is not None and recorded != step.checksum:
            raise SchemaError(
                f"migration {step.version} was changed after it was applied "
                f"(checksum mismatch); restore it and add a new numbered migration"
            )
    return [step for step in steps if step.version not in applied]


async def schema_status(conn: Connection, steps: Sequence[Step]) -> SchemaStatus:
    applied = await _applied(conn)
    return SchemaStatus(pending=[s.version for s in _check(steps, applied)])


async def migrate(dsn: str, steps: Sequence[Step]) -> list[str]:
    """Apply pending steps; safe to call from many processes at once."""
    async with connect(dsn) as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", ADVISORY_LOCK_KEY)
        try:
            await conn.execute(_CREATE_TABLE)
            todo = _check(steps, await _applied(conn))
            fresh = any(step.version == BASELINE for step in todo)
            for step in todo:
                if fresh and step.in_baseline:
                    await _record(conn, step)
                    continue
                logger.info("applying migration %s", step.version)
                try:
                    async with conn.transaction():
                        await _apply(conn, step)
                except DatabaseUnavailable:
                    raise
                except MimicError as exc:
                    # The operator needs Postgres's own words here (the API never shows them).
                    reason = exc.__cause__ or exc.message
                    raise SchemaError(f"migration {step.version} failed: {reason}") from exc
            return [step.version for step in todo]
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", ADVISORY_LOCK_KEY)


async def _apply(conn: Connection, step: Step) -> None:
    await conn.execute(step.sql)
    await _record(conn, step)


async def _record(conn: Connection, step: Step) -> None:
    await conn.execute(
        "INSERT INTO mimic_schema_migrations (version, checksum) VALUES ($1, $2)",
        step.version,
        step.checksum,
    )
