"""Ledger SQL. Every balance change is one ledger row in the same transaction.

The balance is moved by a guarded UPDATE (`balance >= amount`), which is atomic on both
databases, so it can never go negative whatever the concurrency. Each (account, reference,
kind) is unique: a retried charge, settlement or refund hits the constraint, its transaction
rolls back, and the caller gets the first outcome instead of a second payment. A top-up is
refused when it would take the balance past `bounds.MAX_BALANCE_CREDITS`; what comes back
to an account (settlements, refunds) is never refused, and fits in the room that bound
leaves below the 64-bit limit.

Two forms of each operation: `charge(conn, ...)` and friends compose with other writes in
the caller's transaction (a job and its charge commit together); `charge_now(db, ...)` and
friends are standalone transactions in as few round trips as each database allows, for the
chat hot path: on SQLite the whole transaction is one function run on a raw connection
(`Database.write_now`); on PostgreSQL a charge is one statement.

A charge records what it paid for (`Source`: the key, the model served, its category); the
settlement and the refund of that charge copy it from the charge row, here and nowhere
else, so usage can be summed by key, model or category over any kind of movement.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Select, String, bindparam, func, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.expression import ClauseElement

from hypereal.bounds import MAX_BALANCE_CREDITS
from hypereal.errors import InsufficientCredits, NotFound, ValidationFailed
from hypereal.store.compiled import SqliteStatement
from hypereal.store.db import Database
from hypereal.store.tables import accounts, ledger
from hypereal.units import to_credits, to_milli

CHARGE, REFUND, SETTLE, TOPUP, ADJUSTMENT = "charge", "refund", "settle", "topup", "adjustment"


@dataclass(frozen=True, slots=True)
class Source:
    """What a charge paid for: the calling key, the model that was served and its category."""

    key_id: str | None = None
    model: str | None = None
    category: str | None = None


NO_SOURCE = Source()


@dataclass(frozen=True, slots=True)
class Entry:
    id: int
    account_id: str
    kind: str
    amount: int
    balance_after: int
    reference: str
    note: str | None
    created_at: float
    key_id: str | None = None
    model: str | None = None
    category: str | None = None
    new: bool = field(default=False, compare=False)
    """True when this call wrote the row; False when a retry found it already there."""

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "amount": to_credits(self.amount),
            "balanceAfter": to_credits(self.balance_after),
            "reference": self.reference,
            "note": self.note,
            "createdAt": self.created_at,
            "keyId": self.key_id,
            "model": self.model,
            "category": self.category,
        }

    @property
    def source(self) -> Source:
        return Source(self.key_id, self.model, self.category)


# The statements of every chat call, built once: building one and computing its cache key
# cost more than running it on SQLite. Bind names differ from column names, which SQLAlchemy
# reserves for the SET and VALUES clauses.
_BY_REFERENCE = select(ledger).where(
    ledger.c.account_id == bindparam("b_account"), ledger.c.reference == bindparam("b_reference")
)
_FIND = _BY_REFERENCE.where(ledger.c.kind == bindparam("b_kind"))
_CREDIT = (
    update(accounts)
    .where(accounts.c.id == bindparam("b_account"))
    .values(balance=accounts.c.balance + bindparam("b_amount", type_=BigInteger))
    .returning(accounts.c.balance)
)
_DEBIT = (
    update(accounts)
    .where(accounts.c.id == bindparam("b_account"), accounts.c.balance >= bindparam("b_needed", type_=BigInteger))
    .values(balance=accounts.c.balance + bindparam("b_amount", type_=BigInteger))
    .returning(accounts.c.balance)
)
_INSERT = ledger.insert().returning(ledger.c.id)
_BALANCE = select(accounts.c.balance).where(accounts.c.id == bindparam("b_account"))
_ROW = (
    "account_id",
    "kind",
    "amount",
    "balance_after",
    "reference",
    "note",
    "created_at",
    "key_id",
    "model",
    "category",
)

# PostgreSQL: the guarded debit and its ledger row as one statement, so a charge is one round
# trip. The statement is atomic: no row when the balance cannot cover it, and a unique
# violation (a retried charge) undoes the debit with it.


def _new_row(balance_after: ColumnElement[Any]) -> Select[Any]:
    """The values of a new row, in `_ROW`'s order, from the statement's parameters; the
    balance it leaves from `balance_after`."""
    return select(
        bindparam("b_account", type_=String),
        bindparam("b_kind", type_=String),
        bindparam("b_amount", type_=BigInteger),
        balance_after,
        bindparam("b_reference", type_=String),
        bindparam("b_note", type_=String),
        bindparam("b_now", type_=ledger.c.created_at.type),
        bindparam("b_key", type_=String),
        bindparam("b_model", type_=String),
        bindparam("b_category", type_=String),
    )


_MOVED = _DEBIT.cte("moved")
_CHARGE_ONE_STATEMENT = (
    ledger.insert().from_select(list(_ROW), _new_row(_MOVED.c.balance)).returning(ledger.c.id, ledger.c.balance_after)
)
# PostgreSQL: a settlement's credit and its row as one statement, run once the account's row
# is locked (`_lock_account`): under the lock, with a snapshot taken after it, a settlement
# or refund already made is seen and nothing is returned twice.
_SETTLED = (
    update(accounts)
    .where(
        accounts.c.id == bindparam("b_account"),
        ~select(ledger.c.id)
        .where(
            ledger.c.account_id == bindparam("b_account"),
            ledger.c.reference == bindparam("b_reference"),
            ledger.c.kind.in_((SETTLE, REFUND)),
        )
        .exists(),
    )
    .values(balance=accounts.c.balance + bindparam("b_amount", type_=BigInteger))
    .returning(accounts.c.balance)
    .cte("settled")
)
_SETTLE_ONE_STATEMENT = (
    ledger.insert().from_select(list(_ROW), _new_row(_SETTLED.c.balance)).returning(ledger.c.id, ledger.c.balance_after)
)


def _row_from_account(*guards: ColumnElement[bool]) -> ClauseElement:
    """SQLite: the ledger row and the balance it leaves, selected from the account under
    `guards`, and inserted unless (account, reference, kind) is taken. Two statements a
    write, this and `_MOVE`, instead of a read, an UPDATE and an INSERT."""
    return (
        sqlite_insert(ledger)
        .from_select(
            list(_ROW),
            _new_row(accounts.c.balance + bindparam("b_amount", type_=BigInteger)).where(
                accounts.c.id == bindparam("b_account"), *guards
            ),
        )
        .on_conflict_do_nothing()
        .returning(ledger.c.id, ledger.c.balance_after)
    )


_REFUNDED = (
    select(ledger.c.id)
    .where(
        ledger.c.account_id == bindparam("b_account"),
        ledger.c.reference == bindparam("b_reference"),
        ledger.c.kind == REFUND,
    )
    .exists()
)
_SQLITE_FIND = SqliteStatement(_FIND)
_SQLITE_BY_REFERENCE = SqliteStatement(_BY_REFERENCE)
_SQLITE_BALANCE = SqliteStatement(_BALANCE)
_SQLITE_DEBIT_ROW = SqliteStatement(_row_from_account(accounts.c.balance >= bindparam("b_needed", type_=BigInteger)))
"""A charge's row, when the balance covers it."""
_SQLITE_RETURN_ROW = SqliteStatement(_row_from_account(~_REFUNDED))
"""A settlement's or a refund's row, unless the charge was refunded already: a settlement
after a refund would return the same credits twice."""
_SQLITE_MOVE = SqliteStatement(
    update(accounts)
    .where(accounts.c.id == bindparam("b_account"))
    .values(balance=accounts.c.balance + bindparam("b_amount", type_=BigInteger))
)


async def find(conn: AsyncConnection, account_id: str, reference: str, kind: str) -> Entry | None:
    row = (await conn.execute(_FIND, {"b_account": account_id, "b_reference": reference, "b_kind": kind})).first()
    return Entry(**row._mapping) if row else None


async def _entries(conn: AsyncConnection, account_id: str, reference: str) -> dict[str, Entry]:
    """The charge, settlement and refund under `reference`, by kind: one query instead of one each."""
    rows = await conn.execute(_BY_REFERENCE, {"b_account": account_id, "b_reference": reference})
    return {row.kind: Entry(**row._mapping) for row in rows}


async def balance(conn: AsyncConnection, account_id: str) -> int:
    value = (await conn.execute(_BALANCE, {"b_account": account_id})).scalar()
    if value is None:
        raise NotFound("Account not found")
    return int(value)


async def _append(
    conn: AsyncConnection, account_id: str, kind: str, amount: int, reference: str, note: str | None, source: Source
) -> Entry:
    """Move the balance by `amount` (negative = debit) and record it; refuses to go below zero."""
    if amount < 0:
        moved = await conn.execute(_DEBIT, {"b_account": account_id, "b_needed": -amount, "b_amount": amount})
    else:
        moved = await conn.execute(_CREDIT, {"b_account": account_id, "b_amount": amount})
    row = moved.first()
    if row is None:
        available = await balance(conn, account_id)
        raise InsufficientCredits(required=to_credits(-amount), available=to_credits(available))
    now = time.time()
    values = {
        "account_id": account_id,
        "kind": kind,
        "amount": amount,
        "balance_after": int(row[0]),
        "reference": reference,
        "note": note,
        "created_at": now,
        **_source_values(source),
    }
    entry_id = (await conn.execute(_INSERT, values)).scalar_one()
    return Entry(id=int(entry_id), new=True, **values)  # type: ignore[arg-type]


def _source_values(source: Source) -> dict[str, str | None]:
    return {"key_id": source.key_id, "model": source.model, "category": source.category}


async def append_once(
    conn: AsyncConnection,
    account_id: str,
    kind: str,
    amount: int,
    reference: str,
    note: str | None = None,
    source: Source = NO_SOURCE,
) -> Entry:
    """Append unless this (reference, kind) exists; then return the existing row unchanged.

    Runs in a savepoint so that losing a race on the unique constraint undoes only this
    step, not the caller's transaction.
    """
    existing = await find(conn, account_id, reference, kind)
    if existing is not None:
        return existing
    return await _append_new(conn, account_id, kind, amount, reference, note, source)


async def _append_new(
    conn: AsyncConnection, account_id: str, kind: str, amount: int, reference: str, note: str | None, source: Source
) -> Entry:
    """`append_once` after its caller found no row: a concurrent writer can still win the race."""
    try:
        async with conn.begin_nested():
            return await _append(conn, account_id, kind, amount, reference, note, source)
    except IntegrityError:
        winner = await find(conn, account_id, reference, kind)
        if winner is None:
            raise
        return winner


async def charge(
    conn: AsyncConnection,
    account_id: str,
    amount: int,
    reference: str,
    note: str | None = None,
    source: Source = NO_SOURCE,
) -> Entry:
    if amount < 0:
        raise ValueError("charge amount must be >= 0")
    return await append_once(conn, account_id, CHARGE, -amount, reference, note, source)


async def _lock_account(conn: AsyncConnection, account_id: str) -> None:
    """Serialise settlements and refunds of one account.

    A settlement and a refund of the same charge are different kinds, so the unique
    constraint does not stop both; each must see whether the other already happened. On
    PostgreSQL the row lock makes the second wait for the first to commit; SQLite writers
    are serialised already (BEGIN IMMEDIATE) and SQLAlchemy omits FOR UPDATE there, so
    the statement would lock nothing and is not sent.
    """
    if conn.dialect.name == "sqlite":
        return
    await conn.execute(select(accounts.c.id).where(accounts.c.id == account_id).with_for_update())


async def refund(conn: AsyncConnection, account_id: str, reference: str, note: str | None = None) -> Entry | None:
    """Give back what the charge under `reference` still holds (after any settlement). Once."""
    await _lock_account(conn, account_id)
    entries = await _entries(conn, account_id, reference)
    outcome = _refund_due(entries)
    if not isinstance(outcome, int):
        return outcome
    return await _append_new(conn, account_id, REFUND, outcome, reference, note, entries[CHARGE].source)


def _refund_due(entries: dict[str, Entry]) -> Entry | int | None:
    """What a refund must return (an amount), or its earlier outcome (an entry, or None: no charge)."""
    charged = entries.get(CHARGE)
    if charged is None:
        return None
    if REFUND in entries:
        return entries[REFUND]
    settled = entries.get(SETTLE)
    return -charged.amount - (settled.amount if settled else 0)


async def settle(conn: AsyncConnection, account_id: str, reference: str, actual: int) -> Entry | None:
    """Settle a charge to the `actual` cost: return the unused part, once.

    An actual cost above the charge is capped at the charge: the reservation is the most a
    caller agreed to pay, and charging more could push the balance below zero.
    """
    await _lock_account(conn, account_id)
    entries = await _entries(conn, account_id, reference)
    outcome = _settlement_due(entries, actual)
    if not isinstance(outcome, int):
        return outcome
    return await _append_new(conn, account_id, SETTLE, outcome, reference, None, entries[CHARGE].source)


def _settlement_due(entries: dict[str, Entry], actual: int) -> Entry | int | None:
    """What a settlement must return (an amount), or its earlier outcome (an entry, or None)."""
    charged = entries.get(CHARGE)
    if charged is None or REFUND in entries:
        return None
    if SETTLE in entries:
        return entries[SETTLE]
    return max(0, -charged.amount - max(0, actual))


MAX_BALANCE = to_milli(MAX_BALANCE_CREDITS)


async def top_up(conn: AsyncConnection, account_id: str, amount: int, reference: str, kind: str = TOPUP) -> Entry:
    """Credit `amount` once per reference, unless the balance would pass `MAX_BALANCE` (a 400)."""
    existing = await find(conn, account_id, reference, kind)
    if existing is not None:
        return existing
    await _lock_account(conn, account_id)
    current = await balance(conn, account_id)
    if current + amount > MAX_BALANCE:
        raise ValidationFailed(
            f"This top-up would take the balance past the maximum of {MAX_BALANCE_CREDITS} credits",
            balance=to_credits(current),
            maximum=MAX_BALANCE_CREDITS,
        )
    return await _append_new(conn, account_id, kind, amount, reference, None, NO_SOURCE)


async def page(conn: AsyncConnection, account_id: str, limit: int, before: int | None) -> list[Entry]:
    query = select(ledger).where(ledger.c.account_id == account_id)
    if before is not None:
        query = query.where(ledger.c.id < before)
    rows = await conn.execute(query.order_by(ledger.c.id.desc()).limit(limit))
    return [Entry(**row._mapping) for row in rows]


async def total(conn: AsyncConnection, account_id: str) -> int:
    value = (
        await conn.execute(select(func.coalesce(func.sum(ledger.c.amount), 0)).where(ledger.c.account_id == account_id))
    ).scalar()
    return int(value or 0)


# ---------------------------------------------------------------- standalone, fewest round trips


async def charge_now(
    db: Database, account_id: str, amount: int, reference: str, note: str | None = None, source: Source = NO_SOURCE
) -> Entry:
    """`charge`, committed before this returns: on SQLite in the next shared commit
    (`Database.write_soon`), so that the charges of concurrent calls share one; on PostgreSQL
    one statement."""
    if amount < 0:
        raise ValueError("charge amount must be >= 0")
    if db.is_sqlite:
        return await db.write_soon(
            partial(charge_sqlite, account_id=account_id, amount=amount, reference=reference, note=note, source=source)
        )
    now = time.time()
    params = {
        "b_account": account_id,
        "b_kind": CHARGE,
        "b_amount": -amount,
        "b_needed": amount,
        "b_reference": reference,
        "b_note": note,
        "b_now": now,
        "b_key": source.key_id,
        "b_model": source.model,
        "b_category": source.category,
    }
    async with db.autocommit() as conn:
        try:
            row = (await conn.execute(_CHARGE_ONE_STATEMENT, params)).first()
        except IntegrityError:
            row = None  # a retry: the first charge stands
        if row is not None:
            return Entry(
                id=int(row.id),
                account_id=account_id,
                kind=CHARGE,
                amount=-amount,
                balance_after=int(row.balance_after),
                reference=reference,
                note=note,
                created_at=now,
                **_source_values(source),
                new=True,
            )
        existing = await find(conn, account_id, reference, CHARGE)
        if existing is not None:
            return existing
        available = await balance(conn, account_id)
        raise InsufficientCredits(required=to_credits(amount), available=to_credits(available))


async def settle_now(db: Database, account_id: str, reference: str, actual: int) -> Entry | None:
    """`settle` in a transaction of its own."""
    if db.is_sqlite:
        return await db.write_now(
            lambda connection: _aftercharge_sqlite(connection, account_id, reference, SETTLE, actual, None)
        )
    async with db.write() as conn:
        return await settle(conn, account_id, reference, actual)


def settle_soon(db: Database, charged: Entry, actual: int) -> asyncio.Future[Entry | None]:
    """`settle` of the charge the caller made (`charged`), for a caller that does not wait, the
    amount worked out from `charged` rather than read back: on SQLite in the next shared
    commit (`Database.write_soon`), on PostgreSQL a transaction of its own in a task."""
    if db.is_sqlite:
        return db.write_soon(partial(settle_charge_sqlite, charged=charged, actual=actual))
    return asyncio.ensure_future(_settle_charge_postgres(db, charged, actual))


async def _settle_charge_postgres(db: Database, charged: Entry, actual: int) -> Entry | None:
    """`settle` of `charged` in three round trips with the account's row locked (the lock,
    one statement, the commit) instead of one per read and write."""
    due = _settlement_due({CHARGE: charged}, actual)
    assert isinstance(due, int)
    now = time.time()
    params = {
        "b_account": charged.account_id,
        "b_kind": SETTLE,
        "b_amount": due,
        "b_reference": charged.reference,
        "b_note": None,
        "b_now": now,
        "b_key": charged.key_id,
        "b_model": charged.model,
        "b_category": charged.category,
    }
    async with db.write() as conn:
        await _lock_account(conn, charged.account_id)
        row = (await conn.execute(_SETTLE_ONE_STATEMENT, params)).first()
        if row is None:  # settled or refunded already: their outcome
            return await settle(conn, charged.account_id, charged.reference, actual)
    return Entry(
        id=int(row.id),
        account_id=charged.account_id,
        kind=SETTLE,
        amount=due,
        balance_after=int(row.balance_after),
        reference=charged.reference,
        note=None,
        created_at=now,
        **_source_values(charged.source),
        new=True,
    )


async def refund_now(db: Database, account_id: str, reference: str, note: str | None = None) -> Entry | None:
    """`refund` in a transaction of its own."""
    if db.is_sqlite:
        return await db.write_now(
            lambda connection: _aftercharge_sqlite(connection, account_id, reference, REFUND, 0, note)
        )
    async with db.write() as conn:
        return await refund(conn, account_id, reference, note)


# On SQLite these run inside BEGIN IMMEDIATE, which excludes every other writer of the file
# (other processes too): nothing can change between reading the entries and writing, so a
# retry finds the first row instead of racing it to the unique constraint.


def charge_sqlite(
    connection: sqlite3.Connection, account_id: str, amount: int, reference: str, note: str | None, source: Source
) -> Entry:
    """`charge` on the raw connection, inside the caller's transaction (`Database.write_now`)."""
    charged = _write_sqlite(
        connection, _SQLITE_DEBIT_ROW, account_id, CHARGE, -amount, reference, note, source, b_needed=amount
    )
    if charged is not None:
        return charged
    found = _SQLITE_FIND(connection, b_account=account_id, b_reference=reference, b_kind=CHARGE)
    if found:
        return Entry(*found[0])  # a retry: the first charge stands
    available = _SQLITE_BALANCE(connection, b_account=account_id)
    if not available:
        raise NotFound("Account not found")
    raise InsufficientCredits(required=to_credits(amount), available=to_credits(int(available[0][0])))


def settle_charge_sqlite(connection: sqlite3.Connection, charged: Entry, actual: int) -> Entry | None:
    """`settle` of `charged` on the raw connection: what it returns follows from the charge
    alone, unless a settlement or a refund came first (then their outcome, read back)."""
    due = _settlement_due({CHARGE: charged}, actual)
    assert isinstance(due, int)
    settled = _write_sqlite(
        connection, _SQLITE_RETURN_ROW, charged.account_id, SETTLE, due, charged.reference, None, charged.source
    )
    if settled is not None:
        return settled
    return _aftercharge_sqlite(connection, charged.account_id, charged.reference, SETTLE, actual, None)


def _aftercharge_sqlite(
    connection: sqlite3.Connection, account_id: str, reference: str, kind: str, actual: int, note: str | None
) -> Entry | None:
    rows = _SQLITE_BY_REFERENCE(connection, b_account=account_id, b_reference=reference)
    entries = {entry.kind: entry for entry in (Entry(*row) for row in rows)}
    outcome = _settlement_due(entries, actual) if kind == SETTLE else _refund_due(entries)
    if not isinstance(outcome, int):
        return outcome
    written = _write_sqlite(
        connection, _SQLITE_RETURN_ROW, account_id, kind, outcome, reference, note, entries[CHARGE].source
    )
    assert written is not None, "inside BEGIN IMMEDIATE nothing can come between the read and the write"
    return written


def _write_sqlite(
    connection: sqlite3.Connection,
    guarded_row: SqliteStatement,
    account_id: str,
    kind: str,
    amount: int,
    reference: str,
    note: str | None,
    source: Source,
    **guard: Any,
) -> Entry | None:
    """`_append` on the raw connection: the row, if its guard holds and it is not there yet,
    then the balance it moved. None when no row was written."""
    now = time.time()
    written = guarded_row(
        connection,
        b_account=account_id,
        b_kind=kind,
        b_amount=amount,
        b_reference=reference,
        b_note=note,
        b_now=now,
        b_key=source.key_id,
        b_model=source.model,
        b_category=source.category,
        **guard,
    )
    if not written:
        return None
    _SQLITE_MOVE(connection, b_account=account_id, b_amount=amount)
    entry_id, balance_after = written[0]
    return Entry(
        id=int(entry_id),
        account_id=account_id,
        kind=kind,
        amount=amount,
        balance_after=int(balance_after),
        reference=reference,
        note=note,
        created_at=now,
        **_source_values(source),
        new=True,
    )
