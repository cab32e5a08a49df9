from __future__ import annotations

import asyncio
import os
import pathlib
import subprocess
import sys

import asyncpg
import msgspec
import pytest

from mimic.core.db import Connection
from mimic.core.errors import SchemaError
from mimic.core.migrate import BASELINE, MIGRATIONS_DIR, Step, load_steps, migrate, schema_status


async def test_five_processes_at_once_end_with_one_schema(empty_database_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": empty_database_url, "MIMIC_ENV": "dev"}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "mimic",
            "migrate",
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(5)
    ]
    outputs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), 60)
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode()
        assert b"Traceback" not in err

    conn = await asyncpg.connect(empty_database_url)
    try:
        rows = await conn.fetch("SELECT version FROM mimic_schema_migrations")
        versions = [r["version"] for r in rows]
        assert sorted(versions) == sorted(s.version for s in load_steps())
        assert len(versions) == len(set(versions))
        assert await conn.fetchval("SELECT to_regclass('procrastinate_jobs')") is not None
        assert await conn.fetchval("SELECT to_regclass('webhook_events')") is not None
        status = await schema_status(Connection(conn), load_steps())
        assert status.current
    finally:
        await conn.close()


async def test_rerun_applies_nothing(database_url: str) -> None:
    assert await migrate(database_url, load_steps()) == []


async def test_edited_applied_migration_stops_startup(
    database_url: str, tmp_path: pathlib.Path
) -> None:
    for source in MIGRATIONS_DIR.iterdir():
        (tmp_path / source.name).write_text(source.read_text() + "\n-- edited\n")
    with pytest.raises(SchemaError, match="0001_webhooks was changed after it was applied"):
        await migrate(database_url, load_steps(tmp_path))


async def test_new_migration_is_applied_and_recorded(
    database_url: str, tmp_path: pathlib.Path
) -> None:
    for source in MIGRATIONS_DIR.iterdir():
        (tmp_path / source.name).write_text(source.read_text())
    (tmp_path / "9999_extra.sql").write_text("CREATE TABLE extra_probe (id int);")
    steps = load_steps(tmp_path)
    conn = await asyncpg.connect(database_url)
    try:
        assert (await schema_status(Connection(conn), steps)).pending == ["9999_extra"]
        assert await migrate(database_url, steps) == ["9999_extra"]
        assert (await schema_status(Connection(conn), steps)).current
        assert await conn.fetchval("SELECT to_regclass('extra_probe')") is not None
    finally:
        await conn.close()


async def test_failed_migration_rolls_back_and_is_not_recorded(
    database_url: str, tmp_path: pathlib.Path
) -> None:
    for source in MIGRATIONS_DIR.iterdir():
        (tmp_path / source.name).write_text(source.read_text())
    (tmp_path / "9999_broken.sql").write_text(
        "CREATE TABLE half_done (id int); SELECT * FROM no_such_table;"
    )
    with pytest.raises(SchemaError, match=r"migration 9999_broken failed: .*no_such_table"):
        await migrate(database_url, load_steps(tmp_path))
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT to_regclass('half_done')") is None
        recorded = await conn.fetchval(
            "SELECT count(*) FROM mimic_schema_migrations WHERE version = '9999_broken'"
        )
        assert recorded == 0
    finally:
        await conn.close()


async def test_procrastinate_upgrade_applies_only_its_new_migrations(
    database_url: str, empty_database_url: str
) -> None:
    # A future procrastinate ships one more migration than the schema we applied.
    upgrade = Step(
        version="procrastinate/99.00.00_01_probe",
        sql="CREATE TABLE procrastinate_upgrade_probe (id int);",
        in_baseline=True,
    )
    steps = [*load_steps(), upgrade]
    assert await migrate(database_url, steps) == [upgrade.version]
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT to_regclass('procrastinate_upgrade_probe')")
    finally:
        await conn.close()

    # On an empty database the full schema already contains it: recorded, not run.
    await migrate(empty_database_url, steps)
    conn = await asyncpg.connect(empty_database_url)
    try:
        assert await conn.fetchval("SELECT to_regclass('procrastinate_upgrade_probe')") is None
        assert (await schema_status(Connection(conn), steps)).current
    finally:
        await conn.close()


async def test_a_changed_procrastinate_schema_text_is_not_an_edit(database_url: str) -> None:
    steps = load_steps()
    changed = [
        msgspec.structs.replace(s, sql=s.sql + "\n-- 3.10.1") if s.version == BASELINE else s
        for s in steps
    ]
    assert await migrate(database_url, changed) == []
