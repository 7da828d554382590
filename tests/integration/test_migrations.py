"""Migrations produce exactly the schema the code declares, on an empty database of either kind;
a first start, which creates the declared tables at once, produces the same schema as they do."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from hypereal.settings import load_settings
from hypereal.store.db import Database
from hypereal.store.migrate import HEAD, _config, revision, schema_drift, upgrade
from hypereal.store.tables import metadata

MIGRATIONS = Path(__file__).parents[2] / "src" / "hypereal" / "store" / "migrations" / "versions"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    new_postgres_url: Callable[[], str] = request.getfixturevalue("new_postgres_url")
    return new_postgres_url()


@pytest.fixture
async def empty_database(empty_database_url: str) -> AsyncIterator[Database]:
    db = Database(load_settings(environ={}, database_url=empty_database_url).effective_database_url)
    try:
        yield db
    finally:
        await db.close()


async def table_names(db: Database) -> set[str]:
    async with db.read() as conn:
        return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))


async def migrate_with_alembic(db: Database, target: str = "head") -> None:
    """Every migration in turn, as a database made by an older version gets them."""
    async with db.write() as conn:
        await conn.run_sync(lambda sync: command.upgrade(_config(sync), target))


def schema(sync: Connection) -> dict[str, Any]:
    """Everything the inspector reports of each table, in column order: what a query could tell apart."""
    inspector = inspect(sync)
    described: dict[str, Any] = {}
    for table in sorted(inspector.get_table_names()):
        described[table] = {
            "columns": [
                (column["name"], str(column["type"]), column["nullable"], column.get("default"))
                for column in inspector.get_columns(table)
            ],
            "primary key": inspector.get_pk_constraint(table)["constrained_columns"],
            "foreign keys": sorted(
                (tuple(key["constrained_columns"]), key["referred_table"], tuple(key["referred_columns"]))
                for key in inspector.get_foreign_keys(table)
            ),
            "indexes": sorted(
                (index["name"], tuple(index["column_names"]), bool(index["unique"]))
                for index in inspector.get_indexes(table)
            ),
            "unique": sorted(
                (str(unique["name"]), tuple(unique["column_names"]))
                for unique in inspector.get_unique_constraints(table)
            ),
            "checks": sorted(
                (str(check["name"]), check["sqltext"]) for check in inspector.get_check_constraints(table)
            ),
        }
    return described


async def described(db: Database) -> dict[str, Any]:
    async with db.read() as conn:
        return await conn.run_sync(schema)


async def test_migrations_produce_exactly_the_declared_schema(empty_database: Database) -> None:
    assert await table_names(empty_database) == set()
    await migrate_with_alembic(empty_database)
    assert await schema_drift(empty_database) == []
    assert await table_names(empty_database) == set(metadata.tables) | {"alembic_version"}


async def test_a_first_start_creates_the_schema_the_migrations_make(
    empty_database_url: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if empty_database_url.startswith("sqlite"):
        migrated_url = f"sqlite:///{tmp_path / 'migrated.db'}"
    else:
        migrated_url = request.getfixturevalue("new_postgres_url")()
    created = Database(load_settings(environ={}, database_url=empty_database_url).effective_database_url)
    migrated = Database(load_settings(environ={}, database_url=migrated_url).effective_database_url)
    try:
        await upgrade(created)
        await migrate_with_alembic(migrated)
        assert await revision(created) == await revision(migrated) == HEAD
        made_at_once = await described(created)
        assert set(made_at_once) == set(metadata.tables) | {"alembic_version"}
        assert made_at_once == await described(migrated)
    finally:
        await migrated.close()
        await created.close()


async def test_a_first_start_does_not_load_alembic(empty_database_url: str) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", AT_HEAD_SCRIPT, empty_database_url, stdout=asyncio.subprocess.PIPE
    )
    output, _ = await process.communicate()
    assert process.returncode == 0
    assert output.decode().strip() == "False"


async def test_a_database_an_older_version_made_is_migrated_from_where_it_stands(empty_database: Database) -> None:
    await migrate_with_alembic(empty_database, "0003")
    await upgrade(empty_database)
    assert await revision(empty_database) == HEAD
    assert await schema_drift(empty_database) == []


async def test_upgrading_twice_changes_nothing(empty_database: Database) -> None:
    await upgrade(empty_database)
    async with empty_database.read() as conn:
        version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar_one()
    await upgrade(empty_database)
    async with empty_database.read() as conn:
        assert (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar_one() == version
    assert await schema_drift(empty_database) == []


async def test_the_database_is_at_the_newest_revision(empty_database: Database) -> None:
    await upgrade(empty_database)
    revisions = {path.stem.split("_", 1)[0] for path in MIGRATIONS.glob("[0-9]*.py")}
    async with empty_database.read() as conn:
        version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar_one()
    assert version == max(revisions)


async def test_drift_is_detected(empty_database: Database) -> None:
    # The comparison itself must be able to fail, or the first test proves nothing.
    await migrate_with_alembic(empty_database)
    async with empty_database.write() as conn:
        await conn.execute(text("CREATE TABLE stray (id INTEGER PRIMARY KEY)"))
        await conn.execute(text("DROP INDEX ix_ledger_account_id_id"))
    drift = await schema_drift(empty_database)
    kinds = {change[0] if isinstance(change, tuple) else change[0][0] for change in drift}
    assert {"remove_table", "add_index"} <= kinds


UPGRADE_SCRIPT = """
import asyncio, sys
from hypereal.settings import load_settings
from hypereal.store.db import Database
from hypereal.store.migrate import upgrade

async def main() -> None:
    db = Database(load_settings(environ={}, database_url=sys.argv[1]).effective_database_url)
    try:
        await upgrade(db)
    finally:
        await db.close()

asyncio.run(main())
"""


@pytest.mark.slow
async def test_processes_starting_together_on_an_empty_database_all_succeed(empty_database_url: str) -> None:
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", UPGRADE_SCRIPT, empty_database_url, stderr=asyncio.subprocess.PIPE
        )
        for _ in range(3)
    ]
    results = [
        (await process.wait(), (await process.stderr.read()).decode()) for process in processes if process.stderr
    ]
    assert [code for code, _ in results] == [0, 0, 0], [err for _, err in results]
    db = Database(load_settings(environ={}, database_url=empty_database_url).effective_database_url)
    try:
        assert await schema_drift(db) == []
    finally:
        await db.close()


async def test_migration_attributes_entries_written_before_it(empty_database_url: str) -> None:
    db = Database(load_settings(environ={}, database_url=empty_database_url).effective_database_url)
    try:
        async with db.write() as conn:
            await conn.run_sync(lambda sync: command.upgrade(_config(sync), "0003"))
            await conn.execute(text(OLD_ROWS_ACCOUNT))
            await conn.execute(text(OLD_ROWS_JOB))
            await conn.execute(text(OLD_ROWS_LEDGER))
        await upgrade(db)
        async with db.read() as conn:
            rows = (
                await conn.execute(text("SELECT reference, kind, key_id, model, category FROM ledger ORDER BY id"))
            ).all()
    finally:
        await db.close()
    assert [tuple(row) for row in rows] == [
        ("grant_1", "adjustment", None, None, None),
        ("job_1", "charge", "key_1", "local-image", "image"),
        ("job_1", "refund", "key_1", "local-image", "image"),
        ("chat_1", "charge", None, "local-echo", "llm"),
        ("chat_1", "settle", None, "local-echo", "llm"),
    ]


OLD_ROWS_ACCOUNT = "INSERT INTO accounts VALUES ('acc_1', 'old', 90000, 'whsec_x', NULL, 1.0)"
OLD_ROWS_JOB = """
INSERT INTO jobs (id, account_id, key_id, model, category, type, mode, params, status, stage, credits,
                  attempts, deadline_at, cancel_requested, created_at)
VALUES ('job_1', 'acc_1', 'key_1', 'local-image', 'image', 'image', 'auto', '{}', 'failed', 'failed', 0,
        1, 10.0, false, 2.0)
"""
OLD_ROWS_LEDGER = """
INSERT INTO ledger (account_id, kind, amount, balance_after, reference, note, created_at) VALUES
 ('acc_1', 'adjustment', 100000, 100000, 'grant_1', NULL, 1.0),
 ('acc_1', 'charge', -1000, 99000, 'job_1', 'local-image', 2.0),
 ('acc_1', 'refund', 1000, 100000, 'job_1', 'boom', 3.0),
 ('acc_1', 'charge', -20000, 80000, 'chat_1', 'chat local-echo', 4.0),
 ('acc_1', 'settle', 10000, 90000, 'chat_1', NULL, 5.0)
"""


def test_the_head_read_from_the_file_names_is_alembics_head() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS.parent))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD


AT_HEAD_SCRIPT = """
import asyncio, sys
from hypereal.settings import load_settings
from hypereal.store.db import Database
from hypereal.store.migrate import HEAD, revision, upgrade

async def main() -> None:
    db = Database(load_settings(environ={}, database_url=sys.argv[1]).effective_database_url)
    try:
        await upgrade(db)
        assert await revision(db) == HEAD
    finally:
        await db.close()
    print("alembic" in sys.modules)

asyncio.run(main())
"""


async def test_a_start_on_a_current_database_does_not_load_alembic(empty_database: Database) -> None:
    """Alembic is a third of a start's imports; a database at the head does not need it."""
    await upgrade(empty_database)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", AT_HEAD_SCRIPT, empty_database.url, stdout=asyncio.subprocess.PIPE
    )
    output, _ = await process.communicate()
    assert process.returncode == 0
    assert output.decode().strip() == "False"
