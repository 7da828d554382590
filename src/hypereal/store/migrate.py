"""Bring a database to the schema of this version, with Alembic.

A database already at the newest revision is recognised by one query, without Alembic: it
is most of a start's imports, and most starts find the schema current. An empty database
(a first start) gets the declared tables at once and is marked as at the newest revision,
as Alembic's documentation recommends for a new database: replaying every migration and
importing Alembic took longer than the rest of the start. A test holds the two ways to the
same schema, on both databases.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, MetaData, PrimaryKeyConstraint, String, Table, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from hypereal.store.db import Database
from hypereal.store.tables import metadata

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
MIGRATION_LOCK_ID = 0x6879_7065_7265_616C  # any constant shared by every process of this application
VERSION_TABLE = Table(
    "alembic_version",
    MetaData(),
    Column("version_num", String(32), nullable=False),
    PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)
"""Alembic's own table of the revision (as `alembic.ddl.impl` declares it)."""
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
    async with db.write() as conn:
        if db.is_postgres:
            # Processes started together on an empty database would each create the tables and
            # all but one fail; the first takes this lock and migrates, the others wait for its
            # commit and find the schema current. (SQLite's BEGIN IMMEDIATE already serialises.)
            await conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        await conn.run_sync(_upgrade)


def _upgrade(connection: Connection) -> None:
    """Inside the write transaction: what the database holds now is what the lock let through."""
    present = set(inspect(connection).get_table_names())
    if not present & (set(metadata.tables) | {VERSION_TABLE.name}):
        create_at_head(connection)
        return
    from alembic import command

    command.upgrade(_config(connection), "head")


def create_at_head(connection: Connection) -> None:
    """The declared tables on an empty database, marked as at the newest revision."""
    metadata.create_all(connection)
    VERSION_TABLE.create(connection)
    connection.execute(VERSION_TABLE.insert().values(version_num=HEAD))


async def schema_drift(db: Database) -> list[Any]:
    """Differences between the migrated database and the declared tables (empty when equal)."""

    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    def compare(sync_conn: Connection) -> list[Any]:
        context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))

    async with db.read() as conn:
        return await conn.run_sync(compare)
