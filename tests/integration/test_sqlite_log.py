"""The SQLite write-ahead log stays bounded under writes that never pause (`Database` directly),
and a server stopped with SIGTERM leaves none behind.

SQLite starts its log over only when a write begins after a checkpoint copied every frame and
no reader is in the log; checkpoints running beside continuous writes never found that, and
the log grew for as long as the traffic lasted (1.1 GB in 15 s of chat calls). Here each
write yields to the event loop, so that checkpoints run, but the next one is always due.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import httpx
import pytest

from hypereal.store import db as db_module
from hypereal.store.db import Database
from tests.conftest import ADMIN_HEADERS, Server

WRITES = 2000
"""Each adds a row of 4,000 bytes: 8 MB of log or more, were it never started over."""
LIMIT = 512 * 1024


@pytest.fixture
async def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Database]:
    # Checkpoints every few commits and a small limit, so that a few thousand writes show it.
    monkeypatch.setattr(db_module, "CHECKPOINT_EVERY_WRITES", 20)
    monkeypatch.setattr(db_module, "WAL_SIZE_LIMIT", LIMIT)
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'log.db'}")
    await database.write_now(lambda connection: connection.execute("CREATE TABLE rows (data BLOB)"))
    yield database
    await database.close()


def add_row(connection: sqlite3.Connection) -> None:
    connection.execute("INSERT INTO rows (data) VALUES (randomblob(4000))")


async def write_without_pause(database: Database, count: int) -> None:
    for _ in range(count):
        await database.write_now(add_row)
        await asyncio.sleep(0)


async def checkpoint_round(database: Database) -> None:
    """Let the checkpoint under way finish, write until the next one starts and let it finish,
    then write once more: the write that may start the log over."""
    await checkpoint_done(database)
    await write_without_pause(database, db_module.CHECKPOINT_EVERY_WRITES)
    await checkpoint_done(database)
    await database.write_now(add_row)


async def checkpoint_done(database: Database) -> None:
    if database._checkpoint is not None:
        await database._checkpoint


async def log_size(database: Database) -> int:
    return (await anyio.Path(database._database + "-wal").stat()).st_size


async def test_under_writes_that_never_pause_the_log_starts_over_within_its_limit(database: Database) -> None:
    await write_without_pause(database, WRITES)
    await checkpoint_round(database)

    assert await log_size(database) <= LIMIT
    async with database.read() as conn:
        written = (await conn.exec_driver_sql("SELECT count(*) FROM rows")).scalar()
    assert written == WRITES + db_module.CHECKPOINT_EVERY_WRITES + 1


async def test_a_reader_in_the_log_holds_it_back_without_holding_up_writes(database: Database) -> None:
    reader = sqlite3.connect(database._database, isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM rows").fetchone()  # a snapshot in the log from now on
        # Checkpoints cannot start the log over under the reader; they give up at once rather
        # than wait for it with the writes held back, so the writes all go through.
        await write_without_pause(database, WRITES // 2)
        assert await log_size(database) > LIMIT
        assert reader.execute("SELECT count(*) FROM rows").fetchone() == (0,)
    finally:
        reader.execute("COMMIT")
        reader.close()

    await checkpoint_round(database)

    assert await log_size(database) <= LIMIT


@pytest.mark.slow
def test_a_server_stopped_with_sigterm_closes_its_database_and_leaves_no_log(
    tmp_path: Path, start_server: Callable[..., Server]
) -> None:
    data_dir = tmp_path / "stopped"
    server = start_server(data_dir=data_dir, worker=True)
    for n in range(20):
        made = httpx.post(
            server.url + "/api/v1/admin/accounts", json={"name": f"a{n}", "credits": 10}, headers=ADMIN_HEADERS
        )
        assert made.status_code == 201, made.text
    log = data_dir / "hypereal.db-wal"
    assert log.stat().st_size > 0

    server.stop()

    # uvicorn raises the SIGTERM again once shut down; the services closed before it did.
    assert server.process.returncode == -15
    assert not log.exists() or log.stat().st_size == 0
    assert "Traceback" not in server.output()
