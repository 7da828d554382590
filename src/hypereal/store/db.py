"""The database handle: one async engine, with separate read and write transactions.

SQLite allows one writer at a time. A deferred transaction that reads and then writes can
fail at once with "database is locked" when another writer got in between, which busy
timeouts do not cure; so write transactions start with BEGIN IMMEDIATE and, inside one
process, queue on a lock instead of spinning on the file lock. Readers use WAL snapshots
and never wait for writers.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from functools import partial
from typing import Any, TypeVar

import aiosqlite
from sqlalchemy import event, make_url, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

_READ_ONLY = "hypereal_read_only"
CHECKPOINT_EVERY_COMMITS = 500
"""About SQLite's own automatic checkpoint interval of 1000 pages, for ledger-sized commits."""
_T = TypeVar("_T")


class Database:
    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.is_postgres = url.startswith("postgresql")
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        self._writer: aiosqlite.Connection | None = None
        self._inline: sqlite3.Connection | None = None
        self._inline_commits = 0
        self._checkpoint: asyncio.Task[None] | None = None
        if self.is_sqlite:
            database = make_url(url).database or ":memory:"
            self._database = database
            self.engine: AsyncEngine = create_async_engine(
                url, pool_size=pool_size, max_overflow=pool_size, async_creator=partial(_connect_sqlite, database)
            )
            _configure_sqlite(self.engine)
        else:
            # At most twice the pool per process: PostgreSQL's default of 100 connections must
            # stretch over every server and worker process.
            self.engine = create_async_engine(url, pool_size=pool_size, max_overflow=pool_size)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that may write; committed on success, rolled back on error."""
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._write_lock, self.engine.begin() as conn:
            yield conn

    async def write_now(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """SQLite: `work(connection)` inside BEGIN IMMEDIATE ... COMMIT, in one go.

        For hot writes of a few statements (the ledger's), where SQLAlchemy and a trip per
        statement to aiosqlite's thread cost more than the statements. When no other
        connection holds the file's write lock, the transaction runs at once on a connection
        of the event loop's own: a WAL commit without fsync takes tens of microseconds, less
        than handing the work to a thread and back. When another process is writing, that
        connection gives up at once (no busy timeout, so the loop never waits on the file
        lock) and the transaction goes to the thread connection, which waits its turn. Both
        queue behind the same in-process lock as `write()`; an exception from `work` rolls
        the transaction back and is raised here.
        """
        if self._write_lock is None:
            raise RuntimeError("write_now is for SQLite databases")
        async with self._write_lock:
            inline = self._inline_connection()
            try:
                inline.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                    raise
            else:
                outcome = _finish(inline, work)
                self._after_inline_commit()
                return outcome
            writer = await self._thread_connection()
            return await _on_thread(writer, partial(_transaction, writer._conn, work))

    def _inline_connection(self) -> sqlite3.Connection:
        if self._inline is None:
            connection = sqlite3.connect(self._database, isolation_level=None, check_same_thread=False)
            _prepare_sqlite(connection)
            connection.execute("PRAGMA busy_timeout=0")
            # Checkpoints copy the log into the database and may fsync: never on the loop.
            connection.execute("PRAGMA wal_autocheckpoint=0")
            self._inline = connection
        return self._inline

    async def _thread_connection(self) -> aiosqlite.Connection:
        if self._writer is None:
            self._writer = await _connect_sqlite(self._database)
            await _on_thread(self._writer, partial(_prepare_sqlite, self._writer._conn))
        return self._writer

    def _after_inline_commit(self) -> None:
        """Every so many commits on the loop's connection, a checkpoint on the thread's."""
        self._inline_commits += 1
        if self._inline_commits % CHECKPOINT_EVERY_COMMITS or (
            self._checkpoint is not None and not self._checkpoint.done()
        ):
            return
        self._checkpoint = asyncio.get_running_loop().create_task(self._run_checkpoint(), name="sqlite-checkpoint")

    async def _run_checkpoint(self) -> None:
        # PASSIVE copies what it can without waiting for readers or blocking writers.
        writer = await self._thread_connection()
        await _on_thread(writer, partial(writer._conn.execute, "PRAGMA wal_checkpoint(PASSIVE)"))

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[AsyncConnection]:
        """A connection where each statement commits on its own: one round trip, no BEGIN/COMMIT."""
        async with self.engine.connect() as conn:
            yield await conn.execution_options(isolation_level="AUTOCOMMIT")

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only snapshot; never blocks writers and is never blocked by them."""
        async with self.engine.connect() as conn:
            if self.is_sqlite:
                conn = await conn.execution_options(**{_READ_ONLY: True})
            yield conn

    async def ping(self) -> None:
        async with self.read() as conn:
            await conn.execute(text("SELECT 1"))

    async def close(self) -> None:
        if self._checkpoint is not None:
            with suppress(Exception):
                await self._checkpoint
        if self._inline is not None:
            inline, self._inline = self._inline, None
            inline.close()
        if self._writer is not None:
            writer, self._writer = self._writer, None
            await writer.close()
        await self.engine.dispose()


def _transaction(connection: sqlite3.Connection, work: Callable[[sqlite3.Connection], _T]) -> _T:
    connection.execute("BEGIN IMMEDIATE")
    return _finish(connection, work)


def _finish(connection: sqlite3.Connection, work: Callable[[sqlite3.Connection], _T]) -> _T:
    """`work` in the transaction just begun, then COMMIT; ROLLBACK if it raises."""
    try:
        outcome = work(connection)
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")
    return outcome


def _prepare_sqlite(dbapi_conn: Any) -> None:
    # Take transaction control away from the driver so BEGIN is ours to emit.
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.close()


def _configure_sqlite(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
        _prepare_sqlite(dbapi_conn)

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get(_READ_ONLY):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


async def _connect_sqlite(database: str) -> aiosqlite.Connection:
    connection = _OneTripConnection(partial(sqlite3.connect, database, timeout=60), iter_chunk_size=64)
    # As SQLAlchemy does for the connections it opens itself: never hold the process open.
    connection._thread.daemon = True
    return await connection


class _OneTripConnection(aiosqlite.Connection):
    """An aiosqlite connection whose cursors cost one trip to its thread per statement.

    aiosqlite sends each cursor call (open, execute, fetch, close) to the thread that owns
    the SQLite connection and back, and each return waits for a turn of the event loop.
    SQLAlchemy makes four such calls per statement; under load a ledger transaction spent
    most of its time in those queues while holding the write lock.
    """

    def cursor(self) -> Any:
        return _OneTripCursor(self)


def _on_thread(connection: aiosqlite.Connection, work: Callable[[], _T]) -> Awaitable[_T]:
    """`work()` on the connection's own thread, through aiosqlite's queue (it has no public hook)."""
    execute: Callable[[Callable[[], _T]], Awaitable[_T]] = connection._execute
    return execute(work)


class _OneTripCursor:
    """Runs a statement and reads all of its rows in one call on the connection's thread.

    SQLAlchemy's async adapter reads every row of a statement right after executing it
    anyway (it has no server-side cursors on SQLite), so nothing is read earlier than before.
    """

    arraysize = 1

    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._connection = connection
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self._rows: list[Any] = []

    async def __aenter__(self) -> _OneTripCursor:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    async def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> _OneTripCursor:
        connection = self._connection._conn

        def run() -> tuple[Any, int, int | None, list[Any]]:
            cursor = connection.execute(sql) if parameters is None else connection.execute(sql, parameters)
            try:
                rows = cursor.fetchall() if cursor.description else []
                return cursor.description, cursor.rowcount, cursor.lastrowid, rows
            finally:
                cursor.close()

        self.description, self.rowcount, self.lastrowid, self._rows = await _on_thread(self._connection, run)
        return self

    async def executemany(self, sql: str, parameters: Sequence[Sequence[Any]]) -> _OneTripCursor:
        connection = self._connection._conn

        def run() -> tuple[int, int | None]:
            cursor = connection.executemany(sql, parameters)
            try:
                return cursor.rowcount, cursor.lastrowid
            finally:
                cursor.close()

        self.description, self._rows = None, []
        self.rowcount, self.lastrowid = await _on_thread(self._connection, run)
        return self

    async def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        count = self.arraysize if size is None else size
        taken, self._rows = self._rows[:count], self._rows[count:]
        return taken

    async def fetchall(self) -> list[Any]:
        taken, self._rows = self._rows, []
        return taken

    async def close(self) -> None:
        self._rows = []
