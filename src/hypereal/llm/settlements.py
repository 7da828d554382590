"""Chat reservations and settlements.

Every chat call writes the ledger twice: a reservation before the upstream call and a
settlement after it.

- a reservation is awaited: a 402 comes before any upstream call, and the reservation is
  durable before the upstream sees the request;
- a settlement does not make its caller wait: the answer goes out while it commits. On
  SQLite the settlements of concurrent calls share one commit (`Database.write_soon`),
  with the next reservation's when one comes first; a commit is most of the cost of such
  a small write. A process that dies before the commit leaves the reservation in place:
  the caller paid at most what it agreed to.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial

import anyio

from hypereal.billing import Billing
from hypereal.store.ledger import NO_SOURCE, Entry, Source

log = logging.getLogger(__name__)


class Settlements:
    def __init__(self, billing: Billing) -> None:
        self.billing = billing
        self._pending: dict[str, asyncio.Future[Entry | None]] = {}

    async def charge(
        self, account_id: str, amount: int, reference: str, note: str | None = None, source: Source = NO_SOURCE
    ) -> Entry:
        """Reserve `amount` millicredits; returns once committed, raises InsufficientCredits."""
        return await self.billing.charge(account_id, amount, reference, note, source)

    def settle_later(self, charged: Entry, actual: int) -> None:
        """Settle the reservation `charged` to `actual` with the next batch of ledger writes."""
        settled = self.billing.settle_soon(charged, actual)
        self._pending[charged.reference] = settled
        settled.add_done_callback(partial(self._forget, charged.reference))

    async def refund(self, account_id: str, reference: str, note: str | None = None) -> None:
        pending = self._pending.get(reference)
        if pending is not None:  # a settlement of this reference must not follow its refund
            await self._wait(pending)
        await self.billing.refund(account_id, reference, note)

    async def flush(self) -> None:
        """Wait until every settlement started so far is committed."""
        while self._pending:
            await self._wait(next(iter(self._pending.values())))

    async def close(self) -> None:
        await self.flush()

    def _forget(self, reference: str, settled: asyncio.Future[Entry | None]) -> None:
        if self._pending.get(reference) is settled:
            del self._pending[reference]
        if not settled.cancelled() and settled.exception() is not None:
            log.error("settling chat call %s failed", reference, exc_info=settled.exception())

    @staticmethod
    async def _wait(settled: asyncio.Future[Entry | None]) -> None:
        with anyio.CancelScope(shield=True):
            await asyncio.wait([settled])
