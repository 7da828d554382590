"""Migrations produce exactly the schema the code declares, on an empty database of either kind."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from hypereal.settings import load_settings
from hypereal.store.db import Database
from hypereal.store.migrate import schema_drift, upgrade
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


async def test_migrations_produce_exactly_the_declared_schema(empty_database: Database) -> None:
    assert await table_names(empty_database) == set()
    await upgrade(empty_database)
    assert await schema_drift(empty_database) == []
    assert await table_names(empty_database) == set(metadata.tables) | {"alembic_version"}


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
    await upgrade(empty_database)
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
