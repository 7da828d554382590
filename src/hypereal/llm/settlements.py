"""Group commit of chat reservations and settlements.

Every chat call writes the ledger twice: a reservation before the upstream call and a
settlement after it. One transaction each costs a commit each, which on SQLite is most of
a small call's time. Here the writes of concurrent calls share transactions:

- a reservation waits for the commit of the batch it joined (so a 402 still comes before
  any upstream call, and a reservation is durable before the upstream sees the request);
- a settlement does not make its caller wait: the answer goes out and the settlement is
  committed with the next batch, a few milliseconds later. A process that dies in that
  window leaves the reservation in place: the caller paid at most what it agreed to.

Each write keeps its own savepoint inside the shared transaction (the ledger functions take
one), so one refused reservation does not undo the others.
"""

from __future__ import annotations

import asyncio
import logging

import anyio

from hypereal.billing import Billing
from hypereal.errors import HyperealError

log = logging.getLogger(__name__)


class Settlements:
    def __init__(self, billing: Billing) -> None:
        self.billing = billing
        self._charges: list[tuple[str, int, str, str | None, asyncio.Future[None]]] = []
        self._settles: list[tuple[str, str, int]] = []
        self._task: asyncio.Task[None] | None = None

    async def charge(self, account_id: str, amount: int, reference: str, note: str | None = None) -> None:
        """Reserve `amount` millicredits; returns once committed, raises InsufficientCredits."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._charges.append((account_id, amount, reference, note, future))
        self._kick()
        await future

    def settle_later(self, account_id: str, reference: str, actual: int) -> None:
        self._settles.append((account_id, reference, actual))
        self._kick()

    async def refund(self, account_id: str, reference: str, note: str | None = None) -> None:
        await self.flush()  # a queued settlement of this reference must not follow its refund
        await self.billing.refund(account_id, reference, note)

    def _kick(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="chat-settlements")

    async def flush(self) -> None:
        """Wait until everything queued so far is committed."""
        while self._task is not None and not self._task.done():
            with anyio.CancelScope(shield=True):
                await asyncio.shield(self._task)

    async def close(self) -> None:
        await self.flush()

    async def _run(self) -> None:
        while self._charges or self._settles:
            charges, self._charges = self._charges, []
            settles, self._settles = self._settles, []
            outcomes: list[tuple[asyncio.Future[None], HyperealError | None]] = []
            try:
                async with self.billing.db.write() as conn:
                    for account_id, amount, reference, note, future in charges:
                        try:
                            await self.billing.charge_in(conn, account_id, amount, reference, note)
                            outcomes.append((future, None))
                        except HyperealError as exc:
                            outcomes.append((future, exc))
                    for account_id, reference, actual in settles:
                        await self.billing.settle_in(conn, account_id, reference, actual)
            except Exception as exc:
                log.exception(
                    "a batch of %d chat ledger writes failed; retrying one by one", len(charges) + len(settles)
                )
                await self._one_by_one(charges, settles, exc)
                continue
            for future, outcome in outcomes:
                if future.done():
                    continue
                if outcome is None:
                    future.set_result(None)
                else:
                    future.set_exception(outcome)

    async def _one_by_one(
        self,
        charges: list[tuple[str, int, str, str | None, asyncio.Future[None]]],
        settles: list[tuple[str, str, int]],
        cause: Exception,
    ) -> None:
        for account_id, amount, reference, note, future in charges:
            try:
                await self.billing.charge(account_id, amount, reference, note)
            except Exception as exc:
                if not future.done():
                    future.set_exception(exc)
            else:
                if not future.done():
                    future.set_result(None)
        for account_id, reference, actual in settles:
            try:
                await self.billing.settle(account_id, reference, actual)
            except Exception:
                log.exception("settling chat call %s failed after %s", reference, type(cause).__name__)
