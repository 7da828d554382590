"""Bring a database to the schema of this version, with Alembic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection

from hypereal.store.db import Database
from hypereal.store.tables import metadata

MIGRATIONS = Path(__file__).parent / "migrations"
MIGRATION_LOCK_ID = 0x6879_7065_7265_616C  # any constant shared by every process of this application


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


async def upgrade(db: Database) -> None:
    async with db.write() as conn:
        if db.is_postgres:
            # Processes started together on an empty database would each create the tables and
            # all but one fail; the first takes this lock and migrates, the others wait for its
            # commit and find the schema current. (SQLite's BEGIN IMMEDIATE already serialises.)
            await conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        await conn.run_sync(lambda sync_conn: command.upgrade(_config(sync_conn), "head"))


async def schema_drift(db: Database) -> list[Any]:
    """Differences between the migrated database and the declared tables (empty when equal)."""

    def compare(sync_conn: Connection) -> list[Any]:
        context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))

    async with db.read() as conn:
        return await conn.run_sync(compare)
