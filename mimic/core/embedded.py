"""The embedded PostgreSQL (pgserver) used when DATABASE_URL is unset in dev."""

from __future__ import annotations

import logging
import pathlib
import warnings
from typing import Any

from mimic.core.settings import ConfigError, Settings

logger = logging.getLogger(__name__)

# Handles must outlive the call: pgserver stops the server when the last handle's
# process exits, and not before.
_servers: dict[pathlib.Path, Any] = {}


def start_embedded(data_dir: str) -> str:
    """Start (or join) the pgserver under ``data_dir`` and return its URI."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset and falls back to /tmp.
        warnings.simplefilter("ignore")
        import pgserver  # heavy import; only dev needs it

    # pgserver narrates every pg_ctl call at INFO, even at exit.
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    pgdata = (pathlib.Path(data_dir) / "pgdata").resolve()
    if pgdata not in _servers:
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        logger.info("starting embedded PostgreSQL in %s", pgdata)
        _servers[pgdata] = pgserver.get_server(pgdata, cleanup_mode="stop")
    return str(_servers[pgdata].get_uri())


def resolve_database(settings: Settings) -> Settings:
    """Return settings with a database URL, starting the embedded server if needed."""
    if settings.database.url is not None:
        return settings
    if not settings.is_dev:
        raise ConfigError("DATABASE_URL: required when MIMIC_ENV=production but not set")
    return settings.with_database_url(start_embedded(settings.server.data_dir))
