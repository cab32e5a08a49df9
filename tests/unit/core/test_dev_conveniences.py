"""What dev provides itself, and what a dev log line looks like."""

from __future__ import annotations

import logging
import pathlib
import stat

import msgspec
import pytest

from mimic.core.embedded import DEV_KEY_FILE, dev_encryption_key, start_embedded
from mimic.core.jobs import RetryableError
from mimic.core.logs import configure_logging
from mimic.core.settings import ConfigError, Settings


def test_dev_creates_one_local_encryption_key(tmp_path: pathlib.Path) -> None:
    settings = Settings.from_env({"MIMIC_DATA_DIR": str(tmp_path)})
    assert settings.email.encryption_keys == ()
    first = dev_encryption_key(settings)
    again = dev_encryption_key(settings)
    assert len(first.email.encryption_keys) == 1
    assert first.email.encryption_keys == again.email.encryption_keys  # created once
    mode = (tmp_path / DEV_KEY_FILE).stat().st_mode
    assert stat.S_IMODE(mode) == 0o600


def test_a_data_dir_of_the_former_postgresql_16_is_refused_in_one_line(
    tmp_path: pathlib.Path,
) -> None:
    (tmp_path / "pgdata").mkdir()
    (tmp_path / "pgdata" / "PG_VERSION").write_text("16\n")  # what pgserver made
    with pytest.raises(ConfigError) as refused:
        start_embedded(str(tmp_path))
    message = str(refused.value)
    assert "PostgreSQL 16" in message
    assert "make clean" in message
    assert "mv " in message
    assert "\n" not in message
    assert not (tmp_path / "pgdata" / "postmaster.pid").exists()  # nothing was started


def test_configured_keys_and_production_get_no_local_key(tmp_path: pathlib.Path) -> None:
    configured = Settings.from_env(
        {"MIMIC_DATA_DIR": str(tmp_path), "MIMIC_ENCRYPTION_KEYS": "k1:" + "A" * 43 + "="}
    )
    assert dev_encryption_key(configured) == configured
    production = msgspec.structs.replace(
        Settings.from_env({"MIMIC_DATA_DIR": str(tmp_path)}), env="production"
    )
    assert dev_encryption_key(production) == production
    assert not (tmp_path / DEV_KEY_FILE).exists()


@pytest.mark.usefixtures("root_logging")
def test_an_expected_job_error_is_one_line_without_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(Settings.from_env({}))
    try:
        raise RetryableError("no SMTP server at localhost:1025", retry_after=1)
    except RetryableError as exc:
        logging.getLogger("procrastinate.worker").info("Job ended: Error, to retry", exc_info=exc)
    try:
        raise ValueError("a real bug")
    except ValueError as exc:
        logging.getLogger("procrastinate.worker").error("Job ended: Error", exc_info=exc)
    err = capsys.readouterr().err
    expected, unexpected = err.split("\n", 1)
    assert expected.endswith("Job ended: Error, to retry (no SMTP server at localhost:1025)")
    assert "Traceback" not in expected
    assert "Traceback" in unexpected  # a real bug keeps its traceback


def test_the_embedded_wheel_ships_the_programs_the_bench_and_tools_use() -> None:
    # make bench runs pgbench from here (the reference), and a standby needs pg_basebackup.
    from mimic.core.embedded import bin_dir

    for program in ("pg_ctl", "pgbench", "pg_basebackup"):
        assert (bin_dir() / program).is_file(), program
