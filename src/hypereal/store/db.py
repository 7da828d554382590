"""The database handle: one async engine, with separate read and write transactions.

SQLite allows one writer at a time. A deferred transaction that reads and then writes can
fail at once with "database is locked" when another writer got in between, which busy
timeouts do not cure; so write transactions start with BEGIN IMMEDIATE and, inside one
process, queue on a lock instead of spinning on the file lock. Readers use WAL snapshots
and never wait for writers.

The hot ledger writes skip SQLAlchemy on SQLite: `write_now` runs a few statements as one
transaction on a connection of the event loop's own, and `write_soon` queues writes nobody
waits on (chat settlements) so that those of one turn of the loop share a commit.

The write-ahead log is kept small. SQLite starts it over only when a write begins after a
checkpoint has copied every frame in it and no reader still reads from it. A checkpoint
running on a thread beside continuous writes never leaves it so, since frames are committed
while it copies, and the log grew for as long as the traffic lasted (1.1 GB in 15 s of chat
calls). So every `CHECKPOINT_EVERY_WRITES` writes two checkpoints on a thread copy the log
while the writes go on (the second only what was committed during the first), then a last
one copies the few frames committed since, on the loop's own connection between two writes:
the next write starts the log over, and the file is trimmed back to `WAL_SIZE_LIMIT`. That
last one runs on the loop, syncs included, because holding the writes back across a trip
to a thread would turn the write lock into a queue that outlives the hold: each waiting
write wakes one turn of the loop after the one before it, and new ones line up behind them
(measured: commit latency from 0.03 to 1.6 ms at the median, for good). None of them waits
for a reader: with a reader in the log, the log cannot start over, and the next round tries.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Generic, TypeVar

import aiosqlite
from sqlalchemy import event, make_url, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

_READ_ONLY = "hypereal_read_only"
CHECKPOINT_EVERY_WRITES = 500
"""About SQLite's own automatic checkpoint interval of 1000 pages, for ledger-sized writes.
Counted in writes, not commits: the writes of one turn of the loop share a commit, and a
round of 500 such commits let the log pass 250 MB."""
RESTART_RETRY_WRITES = 20
"""After a reader kept the log from starting over, how many writes until the next try: a
reader's snapshot lasts milliseconds, and a whole round more lets the log grow for nothing."""
WAL_SIZE_LIMIT = 32 * 1024 * 1024
"""Bytes the log file is trimmed back to when it starts over (SQLite's journal_size_limit)."""
BUSY_TIMEOUT_MS = 60_000
_T = TypeVar("_T")
log = logging.getLogger(__name__)


class Database:
    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.is_postgres = url.startswith("postgresql")
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        self._writer: aiosqlite.Connection | None = None
        self._inline: sqlite3.Connection | None = None
        self._inline_writes = 0
        self._queued: list[_Queued] = []
        self._flush_scheduled = False
        self._checkpoint: asyncio.Task[None] | None = None
        self._restart_blocked = False
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
        queue behind the same in-process lock as `write()`; an exception from `work` undoes
        its writes and is raised here. Whatever `write_soon` queued commits in the same
        transaction, before `work`.
        """
        if self._write_lock is None:
            raise RuntimeError("write_now is for SQLite databases")
        async with self._write_lock:
            batch, self._queued = _live(self._queued), []
            try:
                outcome = self._inline_transaction(batch, work)
                if outcome is None:
                    outcome = await self._on_writer_thread(batch, work)
            except asyncio.CancelledError:
                raise  # the thread's transaction goes on, and resolves the queued writes itself
            except BaseException as exc:
                _fail(batch, exc)  # the queued writes did not happen either
                raise
        return outcome.result()

    def _inline_transaction(
        self, batch: list[_Queued], work: Callable[[sqlite3.Connection], _T]
    ) -> _Outcome[_T] | None:
        """The transaction at once on the loop's connection; None when another connection
        holds the file's write lock."""
        inline = self._inline_connection()
        if not _begin(inline):
            return None
        outcome = _run_batch(inline, batch, work)
        self._after_inline_commit(len(batch) + (work is not _nothing))
        return outcome

    async def _on_writer_thread(self, batch: list[_Queued], work: Callable[[sqlite3.Connection], _T]) -> _Outcome[_T]:
        """The transaction on the thread connection. A caller cancelled meanwhile does not stop
        it there; the queued writes still learn how it ended."""
        try:
            writer = await self._thread_connection()
        except asyncio.CancelledError:
            self._queue(batch, first=True)  # not begun: the next transaction takes them
            raise
        running = asyncio.ensure_future(_on_thread(writer, partial(_batch_transaction, writer._conn, batch, work)))
        try:
            return await asyncio.shield(running)
        except asyncio.CancelledError:
            running.add_done_callback(partial(_settle_queued, batch))
            raise

    def write_soon(self, work: Callable[[sqlite3.Connection], _T]) -> asyncio.Future[_T]:
        """SQLite: `work(connection)` in the next write transaction, shared with others.

        Writes queued in one turn of the event loop, and any made before the next
        `write_now`, commit together: one commit instead of one each, which is most of the
        cost of a small write. Each runs in a savepoint of its own, so one that fails undoes
        only its own writes; the future holds its result or its exception once committed.
        A caller may await it (a chat call's reservation, committed before the upstream
        call) or not (its settlement). A future cancelled before its transaction began (its
        caller gave up) is left out of it: the write never happens.
        """
        if self._write_lock is None:
            raise RuntimeError("write_soon is for SQLite databases")
        future: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
        self._queue([_Queued(work, future)])
        return future

    def _queue(self, writes: list[_Queued], *, first: bool = False) -> None:
        self._queued = [*writes, *self._queued] if first else [*self._queued, *writes]
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_queued)

    def _flush_queued(self) -> None:
        """Commit what `write_soon` queued: at once when nothing holds the write lock, else in turn."""
        self._flush_scheduled = False
        self._queued = _live(self._queued)
        if not self._queued:
            return
        assert self._write_lock is not None
        if not self._write_lock.locked():
            # Nothing can take the lock between this check and the commit: no await comes between.
            batch, self._queued = self._queued, []
            try:
                outcome = self._inline_transaction(batch, _nothing)
            except Exception as exc:  # the database itself failed (disk full, I/O): so did every write
                _fail(batch, exc)
                return
            if outcome is not None:
                outcome.result()
                return
            self._queued = [*batch, *self._queued]
        task = asyncio.get_running_loop().create_task(self.write_now(_nothing), name="sqlite-queued-writes")
        task.add_done_callback(_log_failure)

    def _inline_connection(self) -> sqlite3.Connection:
        if self._inline is None:
            connection = sqlite3.connect(self._database, isolation_level=None, check_same_thread=False)
            _prepare_sqlite(connection)
            connection.execute("PRAGMA busy_timeout=0")
            # Checkpoints copy the log into the database and sync: this process chooses when.
            connection.execute("PRAGMA wal_autocheckpoint=0")
            self._inline = connection
        return self._inline

    async def _thread_connection(self) -> aiosqlite.Connection:
        if self._writer is None:
            self._writer = await _connect_sqlite(self._database)
            await _on_thread(self._writer, partial(_prepare_sqlite, self._writer._conn))
        return self._writer

    def _after_inline_commit(self, writes: int) -> None:
        """Every so many writes committed on the loop's connection, a checkpoint on the
        thread's; sooner again when a reader kept the last one from starting the log over."""
        self._inline_writes += writes
        every = RESTART_RETRY_WRITES if self._restart_blocked else CHECKPOINT_EVERY_WRITES
        if self._inline_writes < every or (self._checkpoint is not None and not self._checkpoint.done()):
            return
        self._inline_writes = 0
        self._checkpoint = asyncio.get_running_loop().create_task(self._run_checkpoint(), name="sqlite-checkpoint")

    async def _run_checkpoint(self) -> None:
        """Copy the log into the database beside the writes, then start it over between two."""
        assert self._write_lock is not None
        if not self._restart_blocked:  # else all but the last few commits are copied already
            writer = await self._thread_connection()
            for _ in range(2):
                await _on_thread(writer, partial(_checkpoint, writer._conn, "PASSIVE"))
        async with self._write_lock:
            # No await from here on: the lock is free again before any write could queue on it.
            blocked, _, _ = _checkpoint(self._inline_connection(), "RESTART")
        self._restart_blocked = bool(blocked)

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
        if self._queued:
            await self.write_now(_nothing)
        if self._checkpoint is not None:
            with suppress(Exception):
                await self._checkpoint
        if self._inline is not None:
            inline, self._inline = self._inline, None
            with suppress(sqlite3.Error):
                _checkpoint(inline, "TRUNCATE")  # leave no log behind (unless another process is in it)
            inline.close()
        if self._writer is not None:
            writer, self._writer = self._writer, None
            await writer.close()
        await self.engine.dispose()


@dataclass(slots=True)
class _Queued:
    work: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]


@dataclass(slots=True)
class _Outcome(Generic[_T]):
    """What a transaction's own work returned or raised, and what each queued write did."""

    value: _T | None = None
    error: BaseException | None = None
    queued: list[tuple[_Queued, Any, BaseException | None]] = field(default_factory=list)

    def result(self) -> _T:
        """Resolve the queued writes' futures (on the loop), then return or raise the work's own outcome."""
        for queued, value, error in self.queued:
            if queued.future.done():
                continue
            if error is None:
                queued.future.set_result(value)
            else:
                queued.future.set_exception(error)
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]


def _begin(connection: sqlite3.Connection) -> bool:
    """BEGIN IMMEDIATE; False when another connection holds the write lock (no busy wait here)."""
    try:
        connection.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY:
            raise
        return False
    return True


def _batch_transaction(
    connection: sqlite3.Connection, batch: list[_Queued], work: Callable[[sqlite3.Connection], _T]
) -> _Outcome[_T]:
    connection.execute("BEGIN IMMEDIATE")
    return _run_batch(connection, batch, work)


def _run_batch(
    connection: sqlite3.Connection, batch: list[_Queued], work: Callable[[sqlite3.Connection], _T]
) -> _Outcome[_T]:
    """The queued writes and then `work`, in the transaction just begun, then COMMIT.

    Alone, `work` runs bare and its failure rolls the transaction back; with others, each
    runs in a savepoint so that a failure undoes only its own writes. A failed COMMIT fails
    them all.
    """
    outcome: _Outcome[_T] = _Outcome()
    try:
        if not batch:
            outcome.value = work(connection)
        else:
            for queued in batch:
                value, error = _in_savepoint(connection, queued.work)
                outcome.queued.append((queued, value, error))
            if work is not _nothing:
                outcome.value, outcome.error = _in_savepoint(connection, work)
        connection.execute("COMMIT")
    except BaseException as exc:
        if connection.in_transaction:  # a failed COMMIT may have ended it already
            connection.execute("ROLLBACK")
        if not batch:
            raise
        outcome.queued = [(queued, None, exc) for queued in batch]
        outcome.value, outcome.error = None, exc
    return outcome


def _in_savepoint(
    connection: sqlite3.Connection, work: Callable[[sqlite3.Connection], _T]
) -> tuple[Any, Exception | None]:
    connection.execute("SAVEPOINT queued")
    try:
        value = work(connection)
    except Exception as exc:
        connection.execute("ROLLBACK TO queued")
        connection.execute("RELEASE queued")
        return None, exc
    connection.execute("RELEASE queued")
    return value, None


def _live(queued: list[_Queued]) -> list[_Queued]:
    """The queued writes whose callers still want them."""
    return [write for write in queued if not write.future.cancelled()]


def _fail(batch: list[_Queued], error: BaseException) -> None:
    for queued in batch:
        if not queued.future.done():
            queued.future.set_exception(error)


def _settle_queued(batch: list[_Queued], running: asyncio.Future[_Outcome[Any]]) -> None:
    if running.cancelled():
        _fail(batch, asyncio.CancelledError())
    elif running.exception() is not None:
        _fail(batch, running.exception())  # type: ignore[arg-type]
    else:
        with suppress(BaseException):
            running.result().result()


def _checkpoint(connection: sqlite3.Connection, mode: str) -> tuple[int, int, int]:
    """(blocked, frames in the log, frames copied). Never waits for another connection: the
    modes that need every reader out of the log (RESTART, TRUNCATE) give up at once instead."""
    (waits,) = connection.execute("PRAGMA busy_timeout").fetchone()
    connection.execute("PRAGMA busy_timeout=0")
    try:
        blocked, frames, copied = connection.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
    finally:
        connection.execute(f"PRAGMA busy_timeout={waits}")
    return blocked, frames, copied


def _nothing(connection: sqlite3.Connection) -> None:
    return None


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("queued SQLite writes failed", exc_info=task.exception())


def _prepare_sqlite(dbapi_conn: Any) -> None:
    # Take transaction control away from the driver so BEGIN is ours to emit.
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    # Whichever connection's write starts the log over trims the file, so every one says how far.
    cursor.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
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
