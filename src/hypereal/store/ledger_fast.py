"""The ledger's standalone writes, in as few round trips as each database allows.

The chat hot path (a reservation before the upstream call, a settlement after it) and job
submissions write the ledger on every call. The operations in `store/ledger.py` compose with
other writes in the caller's transaction; these are the same operations as transactions of
their own, or as functions run inside `Database.write_now` and `write_soon` on SQLite:

- on SQLite each is one function run on a raw connection, two statements a write: the row,
  selected from the account under the operation's guard (the balance covers a debit; no
  refund came first) and inserted unless (account, reference, kind) is taken, then the
  balance moved. Inside BEGIN IMMEDIATE, which excludes every other writer of the file
  (other processes too), nothing can come between the guard and the write.
- on PostgreSQL a charge is one statement, and a settlement one statement under the
  account's row lock.

A settlement of a charge in hand (`settle_soon`) works its amount out from that charge
instead of reading it back; one that finds a settlement or refund already made answers
with their outcome, read back, as `settle` does.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from functools import partial
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Exists, Select, String, bindparam, or_, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.expression import ClauseElement

from hypereal.errors import InsufficientCredits, NotFound
from hypereal.store.compiled import SqliteStatement
from hypereal.store.db import Database
from hypereal.store.ledger import (
    BALANCE,
    BY_REFERENCE,
    CHARGE,
    DEBIT,
    FIND,
    NO_SOURCE,
    REFUND,
    ROW,
    SETTLE,
    Entry,
    Source,
    balance,
    find,
    lock_account,
    refund,
    refund_due,
    settle,
    settlement_due,
)
from hypereal.store.tables import accounts, ledger
from hypereal.units import to_credits


def _new_row(balance_after: ColumnElement[Any]) -> Select[Any]:
    """The values of a new row, in `ROW`'s order, from the statement's parameters; the
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


def _row_params(
    account_id: str, kind: str, amount: int, reference: str, note: str | None, source: Source
) -> dict[str, Any]:
    """The parameters of a `_new_row` statement, made now."""
    return {
        "b_account": account_id,
        "b_kind": kind,
        "b_amount": amount,
        "b_reference": reference,
        "b_note": note,
        "b_now": time.time(),
        "b_key": source.key_id,
        "b_model": source.model,
        "b_category": source.category,
    }


def _written(params: dict[str, Any], entry_id: Any, balance_after: Any) -> Entry:
    """The entry a `_new_row` statement of `params` just wrote."""
    return Entry(
        id=int(entry_id),
        account_id=params["b_account"],
        kind=params["b_kind"],
        amount=params["b_amount"],
        balance_after=int(balance_after),
        reference=params["b_reference"],
        note=params["b_note"],
        created_at=params["b_now"],
        key_id=params["b_key"],
        model=params["b_model"],
        category=params["b_category"],
        new=True,
    )


def _made_already(*kinds: str) -> Exists:
    """Whether the statement's reference already has a row of one of `kinds`."""
    return (
        select(ledger.c.id)
        .where(
            ledger.c.account_id == bindparam("b_account"),
            ledger.c.reference == bindparam("b_reference"),
            # Equalities rather than IN: SqliteStatement sends the SQL as compiled, with no list to expand.
            or_(*(ledger.c.kind == kind for kind in kinds)),
        )
        .exists()
    )


# PostgreSQL: the guarded debit and its ledger row as one statement, so a charge is one round
# trip. The statement is atomic: no row when the balance cannot cover it, and a unique
# violation (a retried charge) undoes the debit with it.
_MOVED = DEBIT.cte("moved")
_CHARGE_ONE_STATEMENT = (
    ledger.insert().from_select(list(ROW), _new_row(_MOVED.c.balance)).returning(ledger.c.id, ledger.c.balance_after)
)
# PostgreSQL: a settlement's credit and its row as one statement, run once the account's row
# is locked (`lock_account`): under the lock, with a snapshot taken after it, a settlement
# or refund already made is seen and nothing is returned twice.
_SETTLED = (
    update(accounts)
    .where(accounts.c.id == bindparam("b_account"), ~_made_already(SETTLE, REFUND))
    .values(balance=accounts.c.balance + bindparam("b_amount", type_=BigInteger))
    .returning(accounts.c.balance)
    .cte("settled")
)
_SETTLE_ONE_STATEMENT = (
    ledger.insert().from_select(list(ROW), _new_row(_SETTLED.c.balance)).returning(ledger.c.id, ledger.c.balance_after)
)


def _row_from_account(*guards: ColumnElement[bool]) -> ClauseElement:
    """SQLite: the ledger row and the balance it leaves, selected from the account under
    `guards`, and inserted unless (account, reference, kind) is taken. Two statements a
    write, this and `_SQLITE_MOVE`, instead of a read, an UPDATE and an INSERT."""
    return (
        sqlite_insert(ledger)
        .from_select(
            list(ROW),
            _new_row(accounts.c.balance + bindparam("b_amount", type_=BigInteger)).where(
                accounts.c.id == bindparam("b_account"), *guards
            ),
        )
        .on_conflict_do_nothing()
        .returning(ledger.c.id, ledger.c.balance_after)
    )


_SQLITE_FIND = SqliteStatement(FIND)
_SQLITE_BY_REFERENCE = SqliteStatement(BY_REFERENCE)
_SQLITE_BALANCE = SqliteStatement(BALANCE)
_SQLITE_DEBIT_ROW = SqliteStatement(_row_from_account(accounts.c.balance >= bindparam("b_needed", type_=BigInteger)))
"""A charge's row, when the balance covers it."""
_SQLITE_RETURN_ROW = SqliteStatement(_row_from_account(~_made_already(REFUND)))
"""A settlement's or a refund's row, unless the charge was refunded already: a settlement
after a refund would return the same credits twice."""
_SQLITE_MOVE = SqliteStatement(
    update(accounts)
    .where(accounts.c.id == bindparam("b_account"))
    .values(balance=accounts.c.balance + bindparam("b_amount", type_=BigInteger))
)


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
    params = {**_row_params(account_id, CHARGE, -amount, reference, note, source), "b_needed": amount}
    async with db.autocommit() as conn:
        try:
            row = (await conn.execute(_CHARGE_ONE_STATEMENT, params)).first()
        except IntegrityError:
            row = None  # a retry: the first charge stands
        if row is not None:
            return _written(params, row.id, row.balance_after)
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
    due = settlement_due({CHARGE: charged}, actual)
    assert isinstance(due, int)
    params = _row_params(charged.account_id, SETTLE, due, charged.reference, None, charged.source)
    async with db.write() as conn:
        await lock_account(conn, charged.account_id)
        row = (await conn.execute(_SETTLE_ONE_STATEMENT, params)).first()
        if row is None:  # settled or refunded already: their outcome
            return await settle(conn, charged.account_id, charged.reference, actual)
    return _written(params, row.id, row.balance_after)


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
    due = settlement_due({CHARGE: charged}, actual)
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
    outcome = settlement_due(entries, actual) if kind == SETTLE else refund_due(entries)
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
    params = _row_params(account_id, kind, amount, reference, note, source)
    written = guarded_row(connection, **params, **guard)
    if not written:
        return None
    _SQLITE_MOVE(connection, b_account=account_id, b_amount=amount)
    return _written(params, *written[0])
