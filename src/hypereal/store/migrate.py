"""Bring a database to the schema of this version, with Alembic.

A database already at the newest revision is recognised by one query, without Alembic: it
is most of a start's imports, and most starts find the schema current.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from hypereal.store.db import Database

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
MIGRATION_LOCK_ID = 0x6879_7065_7265_616C  # any constant shared by every process of this application
HEAD = max(path.name.split("_", 1)[0] for path in (MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))
"""The newest revision: the migrations' files are named after their revisions, in order."""


async def revision(db: Database) -> str | None:
    """The revision the database is at; None before the first migration."""
    try:
        async with db.read() as conn:
            return (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    except DBAPIError:  # no such table yet
        return None


def _config(connection: Connection) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


async def upgrade(db: Database) -> None:
    if await revision(db) == HEAD:
        return
    from alembic import command

    async with db.write() as conn:
        if db.is_postgres:
            # Processes started together on an empty database would each create the tables and
            # all but one fail; the first takes this lock and migrates, the others wait for its
            # commit and find the schema current. (SQLite's BEGIN IMMEDIATE already serialises.)
            await conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        await conn.run_sync(lambda sync_conn: command.upgrade(_config(sync_conn), "head"))


async def schema_drift(db: Database) -> list[Any]:
    """Differences between the migrated database and the declared tables (empty when equal)."""

    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from hypereal.store.tables import metadata

    def compare(sync_conn: Connection) -> list[Any]:
        context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))

    async with db.read() as conn:
        return await conn.run_sync(compare)
