"""The one credit service every endpoint uses: charge up front, settle, refund.

Each operation is idempotent by reference (a job or request id) and runs in its own
transaction, or in the caller's when the charge must commit together with other rows
(a job is inserted in the same transaction as its charge).
"""

from __future__ import annotations

import asyncio
import sqlite3

from sqlalchemy.ext.asyncio import AsyncConnection

from hypereal.bounds import MAX_TOP_UP_CREDITS
from hypereal.errors import ValidationFailed
from hypereal.ids import sortable_id
from hypereal.metrics import Metrics
from hypereal.store import ledger, ledger_fast
from hypereal.store.db import Database
from hypereal.store.ledger import NO_SOURCE, Entry, Source
from hypereal.units import MILLI, to_milli

MINIMUM_TOP_UP = 200


class Billing:
    def __init__(self, db: Database, metrics: Metrics) -> None:
        self.db = db
        self.metrics = metrics

    async def charge(
        self, account_id: str, amount: int, reference: str, note: str | None = None, source: Source = NO_SOURCE
    ) -> Entry:
        """Debit `amount` millicredits, or raise InsufficientCredits leaving nothing behind.

        A transaction of its own, in the fewest round trips (the chat hot path). `source` says
        what the charge pays for; its settlement and refund inherit it.
        """
        return self._charged(await ledger_fast.charge_now(self.db, account_id, amount, reference, note, source))

    async def charge_in(
        self,
        conn: AsyncConnection,
        account_id: str,
        amount: int,
        reference: str,
        note: str | None = None,
        source: Source = NO_SOURCE,
    ) -> Entry:
        """`charge` inside the caller's transaction, to commit with its other writes."""
        return self._charged(await ledger.charge(conn, account_id, amount, reference, note, source))

    def charge_sqlite(
        self,
        connection: sqlite3.Connection,
        account_id: str,
        amount: int,
        reference: str,
        note: str | None = None,
        source: Source = NO_SOURCE,
    ) -> Entry:
        """`charge` inside a transaction of `Database.write_now`, with the caller's other writes."""
        return self._charged(ledger_fast.charge_sqlite(connection, account_id, amount, reference, note, source))

    async def settle(self, account_id: str, reference: str, actual: int) -> Entry | None:
        return self._returned(await ledger_fast.settle_now(self.db, account_id, reference, actual))

    def settle_soon(self, charged: Entry, actual: int) -> asyncio.Future[Entry | None]:
        """`settle` of the charge `charged` without waiting for it: the future is done once it is committed."""
        settled = ledger_fast.settle_soon(self.db, charged, actual)
        settled.add_done_callback(self._count_settled)
        return settled

    def _count_settled(self, settled: asyncio.Future[Entry | None]) -> None:
        if not settled.cancelled() and settled.exception() is None:
            self._returned(settled.result())

    async def settle_in(self, conn: AsyncConnection, account_id: str, reference: str, actual: int) -> Entry | None:
        return self._returned(await ledger.settle(conn, account_id, reference, actual))

    async def refund(self, account_id: str, reference: str, note: str | None = None) -> Entry | None:
        return self._returned(await ledger_fast.refund_now(self.db, account_id, reference, note))

    async def refund_in(
        self, conn: AsyncConnection, account_id: str, reference: str, note: str | None = None
    ) -> Entry | None:
        return self._returned(await ledger.refund(conn, account_id, reference, note))

    def _charged(self, entry: Entry) -> Entry:
        if entry.new:
            self.metrics.credits_charged.inc(-entry.amount / MILLI)
        return entry

    def _returned(self, entry: Entry | None) -> Entry | None:
        if entry is not None and entry.new and entry.amount > 0:
            self.metrics.credits_refunded.inc(entry.amount / MILLI)
        return entry

    async def top_up(self, account_id: str, credits: int, reference: str | None = None) -> Entry:
        amount = top_up_amount(credits)
        async with self.db.write() as conn:
            return await ledger.top_up(conn, account_id, amount, reference or new_reference("topup"))

    async def grant_in(self, conn: AsyncConnection, account_id: str, credits: int) -> Entry | None:
        """An account's starting credits (any amount from 0), in the caller's transaction."""
        amount = top_up_amount(credits, minimum=0, name="Credits")
        if not amount:
            return None
        return await ledger.top_up(conn, account_id, amount, new_reference("grant"), ledger.ADJUSTMENT)


def top_up_amount(credits: int, *, minimum: int = MINIMUM_TOP_UP, name: str = "Amount") -> int:
    """Credits to add, checked against the documented range, in millicredits."""
    if credits < minimum:
        if minimum == MINIMUM_TOP_UP:
            raise ValidationFailed(f"The minimum top-up is {MINIMUM_TOP_UP} credits", minimum=MINIMUM_TOP_UP)
        raise ValidationFailed(f"{name} cannot be negative", field=name.lower())
    if credits > MAX_TOP_UP_CREDITS:
        raise ValidationFailed(
            f"{name} must be at most {MAX_TOP_UP_CREDITS} credits", field=name.lower(), maximum=MAX_TOP_UP_CREDITS
        )
    return to_milli(credits)


def new_reference(kind: str) -> str:
    return sortable_id(f"{kind}_")
