"""The standalone ledger operations (`store/ledger_fast.py`) keep every ledger invariant.

`charge_now`, `settle_now`, `settle_soon` and `refund_now` bypass SQLAlchemy's transaction
machinery (raw statements on SQLite's own connections, one statement on PostgreSQL), so
they are checked here directly, on both databases, and against the composable forms they
must agree with.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable

import anyio
import pytest

from hypereal.errors import InsufficientCredits, NotFound
from hypereal.services import Services
from hypereal.settings import Settings
from hypereal.store import db as db_module
from hypereal.store import ledger, ledger_fast
from hypereal.store.db import Database
from hypereal.store.ledger import CHARGE, REFUND, SETTLE, Entry
from hypereal.units import to_milli
from tests.conftest import TestAccount

PRICE = to_milli(3)


async def balance_and_total(db: Database, account_id: str) -> tuple[int, int]:
    async with db.read() as conn:
        return await ledger.balance(conn, account_id), await ledger.total(conn, account_id)


async def rows(db: Database, account_id: str) -> list[Entry]:
    async with db.read() as conn:
        return await ledger.page(conn, account_id, 10_000, None)


async def try_charge(db: Database, account_id: str, reference: str) -> Entry | InsufficientCredits:
    try:
        return await ledger_fast.charge_now(db, account_id, PRICE, reference)
    except InsufficientCredits as exc:
        return exc


async def test_concurrent_reservations_stop_exactly_at_zero(
    make_settings: Callable[..., Settings],
    make_services: Callable[[Settings], Awaitable[Services]],
    make_account: Callable[..., Awaitable[TestAccount]],
) -> None:
    # Two handles stand in for two processes: each has its own connections and its own
    # in-process write lock, so only the database keeps the balance from going negative.
    settings = make_settings(database_pool_size=4)
    first, second = await make_services(settings), await make_services(settings)
    covered = 40
    account = await make_account(credits=covered * 3, services=first)

    outcomes = await asyncio.gather(
        *(try_charge((first if n % 2 else second).db, account.id, f"chat_{n}") for n in range(3 * covered))
    )

    assert sum(isinstance(o, Entry) for o in outcomes) == covered
    assert all(isinstance(o, Entry | InsufficientCredits) for o in outcomes)
    balance, total = await balance_and_total(first.db, account.id)
    assert balance == 0 == total
    charges = [row for row in await rows(first.db, account.id) if row.kind == CHARGE]
    assert sorted(row.balance_after for row in charges) == [PRICE * n for n in range(covered)]


async def test_a_retried_reservation_is_charged_once(
    services: Services, make_account: Callable[..., Awaitable[TestAccount]]
) -> None:
    account = await make_account(credits=10)
    db = services.db

    first = await ledger_fast.charge_now(db, account.id, PRICE, "chat_retry", "chat model")
    again = await asyncio.gather(*(ledger_fast.charge_now(db, account.id, PRICE, "chat_retry") for _ in range(10)))

    assert first.new and first.amount == -PRICE and first.balance_after == to_milli(10) - PRICE
    assert all(entry.id == first.id and not entry.new for entry in again)
    assert (await balance_and_total(db, account.id)) == (to_milli(10) - PRICE,) * 2


async def test_a_retried_reservation_finds_its_charge_even_when_the_balance_is_spent(
    services: Services, make_account: Callable[..., Awaitable[TestAccount]]
) -> None:
    account = await make_account(credits=3)
    first = await ledger_fast.charge_now(services.db, account.id, PRICE, "chat_all")

    again = await ledger_fast.charge_now(services.db, account.id, PRICE, "chat_all")

    assert again.id == first.id and not again.new
    with pytest.raises(InsufficientCredits) as refused:
        await ledger_fast.charge_now(services.db, account.id, PRICE, "chat_other")
    assert refused.value.body()["available"] == 0
    assert [row.kind for row in await rows(services.db, account.id)].count(CHARGE) == 1


async def test_reservation_for_an_unknown_account_is_not_found(services: Services) -> None:
    with pytest.raises(NotFound):
        await ledger_fast.charge_now(services.db, "acct_missing", PRICE, "chat_x")


async def test_settlement_and_refund_retried_are_idempotent(
    services: Services, make_account: Callable[..., Awaitable[TestAccount]]
) -> None:
    account = await make_account(credits=100)
    db = services.db
    await ledger_fast.charge_now(db, account.id, to_milli(10), "chat_s")

    settled = await asyncio.gather(*(ledger_fast.settle_now(db, account.id, "chat_s", to_milli(4)) for _ in range(10)))
    refunded = await asyncio.gather(*(ledger_fast.refund_now(db, account.id, "chat_s") for _ in range(10)))

    assert {entry.id for entry in settled if entry} == {settled[0].id if settled[0] else -1}
    assert all(entry is not None and entry.kind == SETTLE and entry.amount == to_milli(6) for entry in settled)
    assert sum(entry.new for entry in settled if entry) == 1
    # A refund after the settlement returns only what the settlement kept: the actual cost.
    assert all(entry is not None and entry.kind == REFUND and entry.amount == to_milli(4) for entry in refunded)
    assert sum(entry.new for entry in refunded if entry) == 1
    assert await ledger_fast.settle_now(db, account.id, "chat_s", 0) is None  # refunded: nothing to settle
    assert (await balance_and_total(db, account.id)) == (to_milli(100),) * 2


async def test_refund_before_settlement_returns_everything_and_blocks_the_settlement(
    services: Services, make_account: Callable[..., Awaitable[TestAccount]]
) -> None:
    account = await make_account(credits=100)
    db = services.db
    await ledger_fast.charge_now(db, account.id, to_milli(10), "chat_r")

    refund = await ledger_fast.refund_now(db, account.id, "chat_r", "upstream failed")
    late = await ledger_fast.settle_now(db, account.id, "chat_r", to_milli(2))

    assert refund is not None and refund.amount == to_milli(10) and refund.note == "upstream failed"
    assert late is None
    assert await ledger_fast.refund_now(db, account.id, "chat_none") is None  # never charged
    assert (await balance_and_total(db, account.id)) == (to_milli(100),) * 2


async def test_a_settlement_of_the_charge_in_hand_is_made_once_and_never_after_a_refund(
    services: Services, make_account: Callable[..., Awaitable[TestAccount]]
) -> None:
    """`settle_soon` works the amount out from the charge its caller made, without reading it
    back: a second settlement, or one after the charge was refunded, must still return nothing."""
    account = await make_account(credits=100)
    db = services.db
    kept = await ledger_fast.charge_now(db, account.id, to_milli(10), "chat_kept")
    refunded = await ledger_fast.charge_now(db, account.id, to_milli(10), "chat_refunded")
    await ledger_fast.refund_now(db, account.id, "chat_refunded")

    first, again = await asyncio.gather(
        ledger_fast.settle_soon(db, kept, to_milli(3)), ledger_fast.settle_soon(db, kept, 0)
    )
    late = await ledger_fast.settle_soon(db, refunded, to_milli(3))

    assert first is not None and first.new and first.amount == to_milli(7)
    assert first.balance_after == to_milli(100 - 3)
    assert (first.key_id, first.model, first.category) == (kept.key_id, kept.model, kept.category)
    assert again is not None and not again.new and again.id == first.id
    assert late is None
    assert sorted(entry.kind for entry in await rows(db, account.id) if entry.reference == "chat_refunded") == [
        CHARGE,
        REFUND,
    ]
    assert (await balance_and_total(db, account.id)) == (to_milli(97),) * 2


async def test_settlements_of_charges_in_hand_racing_refunds_never_return_more_than_the_charge(
    services: Services, make_account: Callable[..., Awaitable[TestAccount]]
) -> None:
    account = await make_account(credits=100)
    db = services.db
    charges = [await ledger_fast.charge_now(db, account.id, to_milli(5), f"chat_{n}") for n in range(10)]

    await asyncio.gather(
        *(ledger_fast.settle_soon(db, charged, to_milli(1)) for charged in charges),
        *(ledger_fast.refund_now(db, account.id, charged.reference) for charged in charges),
    )

    assert (await balance_and_total(db, account.id)) == (to_milli(100),) * 2


async def test_settlement_racing_refund_never_returns_more_than_the_charge(
    services: Services, make_account: Callable[..., Awaitable[TestAccount]]
) -> None:
    account = await make_account(credits=100)
    db = services.db
    for n in range(10):
        await ledger_fast.charge_now(db, account.id, to_milli(5), f"chat_{n}")

    await asyncio.gather(
        *(ledger_fast.settle_now(db, account.id, f"chat_{n}", to_milli(1)) for n in range(10)),
        *(ledger_fast.refund_now(db, account.id, f"chat_{n}") for n in range(10)),
    )

    # Whichever came first, each charge ends fully returned (settle + refund of the rest, or
    # refund alone) and the balance still equals the sum of the ledger.
    assert (await balance_and_total(db, account.id)) == (to_milli(100),) * 2


async def test_standalone_and_composable_forms_agree(
    services: Services, make_account: Callable[..., Awaitable[TestAccount]]
) -> None:
    account = await make_account(credits=100)
    db = services.db
    async with db.write() as conn:
        composed = await ledger.charge(conn, account.id, to_milli(8), "job_1")

    standalone = await ledger_fast.charge_now(db, account.id, to_milli(8), "job_1")
    settled = await ledger_fast.settle_now(db, account.id, "job_1", to_milli(3))
    async with db.write() as conn:
        settled_again = await ledger.settle(conn, account.id, "job_1", to_milli(1))

    assert standalone == composed
    assert settled is not None and settled == settled_again and settled.amount == to_milli(5)
    assert (await balance_and_total(db, account.id)) == (to_milli(97),) * 2


async def test_a_reservation_waits_for_another_process_holding_the_sqlite_write_lock(
    services: Services, make_account: Callable[..., Awaitable[TestAccount]]
) -> None:
    if not services.db.is_sqlite:
        pytest.skip("the write lock of a database file is SQLite's")
    account = await make_account(credits=10)
    other = sqlite3.connect(services.db._database, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
    try:
        pending = asyncio.ensure_future(ledger_fast.charge_now(services.db, account.id, PRICE, "chat_waits"))
        await asyncio.sleep(0.3)
        assert not pending.done()  # queued on the file lock, off the event loop
        other.execute("UPDATE accounts SET balance = balance + 1000 WHERE id = ?", (account.id,))
        other.execute("COMMIT")
        entry = await asyncio.wait_for(pending, 10)
    finally:
        other.close()
    # The charge was made after the other writer's commit, on the balance it left.
    assert entry.new and entry.balance_after == to_milli(10) + 1000 - PRICE
    # And the next one takes the fast way again.
    assert (await ledger_fast.charge_now(services.db, account.id, PRICE, "chat_after")).new


async def test_the_log_of_fast_commits_is_checkpointed(
    services: Services, make_account: Callable[..., Awaitable[TestAccount]], monkeypatch: pytest.MonkeyPatch
) -> None:
    if not services.db.is_sqlite:
        pytest.skip("write-ahead log checkpoints are SQLite's")
    monkeypatch.setattr(db_module, "CHECKPOINT_EVERY_WRITES", 50)
    account = await make_account(credits=100_000)
    wal = services.db._database + "-wal"

    for n in range(2000):
        await ledger_fast.charge_now(services.db, account.id, 1, f"chat_{n}")
        if n % 50 == 49 and services.db._checkpoint is not None:
            await services.db._checkpoint  # runs on its thread; on a busy machine it may need a while

    # Unchecked, 2000 commits of a few pages each leave a log of tens of megabytes; checkpointed,
    # SQLite starts writing the log from its beginning again.
    assert (await anyio.Path(wal).stat()).st_size < 4 * 1024 * 1024
    assert (await balance_and_total(services.db, account.id))[0] == to_milli(100_000) - 2000


async def test_a_log_a_reader_kept_from_starting_over_starts_over_soon_after(
    services: Services, make_account: Callable[..., Awaitable[TestAccount]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader's snapshot blocks the restart of a round; the next try comes a few commits
    later, not a whole round later, so the log does not grow for a round more."""
    if not services.db.is_sqlite:
        pytest.skip("write-ahead log checkpoints are SQLite's")
    monkeypatch.setattr(db_module, "CHECKPOINT_EVERY_WRITES", 1_000_000)
    account = await make_account(credits=100_000)
    db = services.db
    for n in range(300):
        await ledger_fast.charge_now(db, account.id, 1, f"chat_{n}")
    before = log_frames(db)  # (copies them to the database too: a reader then reads from the file)
    await ledger_fast.charge_now(db, account.id, 1, "chat_in_the_log")  # the reader's snapshot ends in the log
    reader = sqlite3.connect(db._database)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM ledger").fetchone()  # a snapshot: the log cannot start over

    await db._run_checkpoint()
    assert db._restart_blocked
    reader.rollback()
    reader.close()
    for n in range(db_module.RESTART_RETRY_WRITES):
        await ledger_fast.charge_now(db, account.id, 1, f"chat_after_{n}")
    assert db._checkpoint is not None
    await db._checkpoint

    assert not db._restart_blocked
    await ledger_fast.charge_now(db, account.id, 1, "chat_last")
    # The log started over: it holds the few commits made since, not the 300 before.
    assert log_frames(db) < before / 3


def log_frames(db: Database) -> int:
    """How many frames the write-ahead log holds now."""
    probe = sqlite3.connect(db._database)
    try:
        frames: int = probe.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
        return frames
    finally:
        probe.close()


def counted_commits(db: Database) -> list[str]:
    """The COMMITs the event loop's own SQLite connection sends from now on."""
    statements: list[str] = []
    db._inline_connection().set_trace_callback(statements.append)
    return statements


async def test_settlements_made_in_one_turn_share_one_commit_on_both_databases(
    services: Services, make_account: Callable[..., Awaitable[TestAccount]]
) -> None:
    account = await make_account(credits=100)
    db = services.db
    charges = [await ledger_fast.charge_now(db, account.id, to_milli(5), f"chat_{n}") for n in range(20)]
    statements = counted_commits(db) if db.is_sqlite else []

    settled = await asyncio.gather(*(ledger_fast.settle_soon(db, charged, to_milli(2)) for charged in charges))

    assert all(entry is not None and entry.new and entry.amount == to_milli(3) for entry in settled)
    if db.is_sqlite:
        assert statements.count("COMMIT") == 1
    assert (await balance_and_total(db, account.id)) == (to_milli(100 - 20 * 2),) * 2


async def test_reservations_made_in_one_turn_share_one_commit_and_stop_at_zero(
    services: Services, make_account: Callable[..., Awaitable[TestAccount]]
) -> None:
    """Concurrent chat calls' reservations commit together on SQLite, each still guarded by the
    balance: the ones the balance cannot cover fail alone, the others are charged."""
    account = await make_account(credits=10)
    db = services.db
    statements = counted_commits(db) if db.is_sqlite else []

    outcomes = await asyncio.gather(*(try_charge(db, account.id, f"chat_{n}") for n in range(5)))

    charged = [outcome for outcome in outcomes if isinstance(outcome, Entry)]
    assert len(charged) == 3  # 3 x 3 credits out of 10
    assert sum(isinstance(outcome, InsufficientCredits) for outcome in outcomes) == 2
    if db.is_sqlite:
        assert statements.count("COMMIT") == 1
    assert (await balance_and_total(db, account.id)) == (to_milli(1),) * 2


async def test_a_reservation_whose_caller_gives_up_before_its_commit_is_never_made(
    services: Services, make_account: Callable[..., Awaitable[TestAccount]]
) -> None:
    if not services.db.is_sqlite:
        pytest.skip("queued writes sharing a commit are SQLite's")
    account = await make_account(credits=10)
    db = services.db

    abandoned = asyncio.ensure_future(ledger_fast.charge_now(db, account.id, PRICE, "chat_abandoned"))
    kept = asyncio.ensure_future(ledger_fast.charge_now(db, account.id, PRICE, "chat_kept"))
    await asyncio.sleep(0)  # both queued, neither committed
    abandoned.cancel()
    await kept
    with pytest.raises(asyncio.CancelledError):
        await abandoned

    assert [entry.reference for entry in await rows(db, account.id) if entry.kind == CHARGE] == ["chat_kept"]
    assert (await balance_and_total(db, account.id)) == (to_milli(7),) * 2


async def test_a_failing_queued_write_undoes_only_its_own_writes(
    services: Services, make_account: Callable[..., Awaitable[TestAccount]]
) -> None:
    if not services.db.is_sqlite:
        pytest.skip("queued writes sharing a commit are SQLite's")
    account = await make_account(credits=100)
    db = services.db
    charged = await ledger_fast.charge_now(db, account.id, to_milli(5), "chat_kept")

    def half_then_fail(connection: sqlite3.Connection) -> None:
        connection.execute("UPDATE accounts SET balance = 0 WHERE id = ?", (account.id,))
        raise RuntimeError("the second statement failed")

    kept = ledger_fast.settle_soon(db, charged, to_milli(1))
    failed = db.write_soon(half_then_fail)
    settled = await kept
    with pytest.raises(RuntimeError, match="second statement"):
        await failed

    assert settled is not None and settled.amount == to_milli(4)
    assert (await balance_and_total(db, account.id)) == (to_milli(99),) * 2


async def test_a_queued_settlement_commits_before_a_refund_that_follows_it(
    services: Services, make_account: Callable[..., Awaitable[TestAccount]]
) -> None:
    if not services.db.is_sqlite:
        pytest.skip("on PostgreSQL a settlement is a task of its own; Settlements orders it before a refund")
    account = await make_account(credits=100)
    db = services.db
    charged = await ledger_fast.charge_now(db, account.id, to_milli(10), "chat_order")

    settling = ledger_fast.settle_soon(db, charged, to_milli(4))
    refunded = await ledger_fast.refund_now(db, account.id, "chat_order")

    # The refund saw the settlement: it returns only what the settlement kept.
    assert refunded is not None and refunded.amount == to_milli(4)
    assert (settled := await settling) is not None and settled.amount == to_milli(6)
    assert (await balance_and_total(db, account.id)) == (to_milli(100),) * 2


async def test_queued_writes_wait_for_another_process_holding_the_sqlite_write_lock(
    services: Services, make_account: Callable[..., Awaitable[TestAccount]]
) -> None:
    if not services.db.is_sqlite:
        pytest.skip("the write lock of a database file is SQLite's")
    account = await make_account(credits=10)
    charged = await ledger_fast.charge_now(services.db, account.id, PRICE, "chat_queued")
    other = sqlite3.connect(services.db._database, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        settling = ledger_fast.settle_soon(services.db, charged, to_milli(1))
        await asyncio.sleep(0.3)
        assert not settling.done()  # waiting on the file lock, off the event loop
        other.execute("COMMIT")
        settled = await asyncio.wait_for(settling, 10)
    finally:
        other.close()
    assert settled is not None and settled.new and settled.amount == PRICE - to_milli(1)
    assert (await balance_and_total(services.db, account.id)) == (to_milli(9),) * 2


async def test_queued_writes_are_committed_when_the_database_closes(
    make_settings: Callable[..., Settings],
    make_services: Callable[[Settings], Awaitable[Services]],
    make_account: Callable[..., Awaitable[TestAccount]],
) -> None:
    settings = make_settings()
    first = await make_services(settings)
    if not first.db.is_sqlite:
        pytest.skip("queued writes are SQLite's")
    account = await make_account(credits=10, services=first)
    charged = await ledger_fast.charge_now(first.db, account.id, PRICE, "chat_closing")
    settling = ledger_fast.settle_soon(first.db, charged, 0)
    await first.db.close()
    assert settling.done() and settling.result() is not None

    reopened = Database(settings.effective_database_url)
    try:
        assert (await balance_and_total(reopened, account.id)) == (to_milli(10),) * 2
    finally:
        await reopened.close()


async def test_queued_writes_fail_together_when_the_database_fails(
    services: Services, make_account: Callable[..., Awaitable[TestAccount]], monkeypatch: pytest.MonkeyPatch
) -> None:
    if not services.db.is_sqlite:
        pytest.skip("queued writes are SQLite's")
    account = await make_account(credits=10)
    charged = await ledger_fast.charge_now(services.db, account.id, PRICE, "chat_io")

    def broken(connection: sqlite3.Connection) -> bool:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(db_module, "_begin", broken)
    first = ledger_fast.settle_soon(services.db, charged, 0)
    second = ledger_fast.settle_soon(services.db, charged, 0)
    for settling in (first, second):
        with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
            await asyncio.wait_for(settling, 5)

    monkeypatch.undo()
    # Nothing was written: the charge is still whole, and settles once the database is back.
    settled = await ledger_fast.settle_now(services.db, account.id, "chat_io", 0)
    assert settled is not None and settled.amount == PRICE
