"""The credit ledger on both databases: never negative, every change a row, each operation once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from hypereal.errors import InsufficientCredits, NotFound, ValidationFailed
from hypereal.services import Services
from hypereal.settings import Settings
from hypereal.store import ledger
from hypereal.store.ledger import Entry
from hypereal.units import MILLI, to_milli
from tests.conftest import TestAccount

PRICE = 7  # credits per charge


async def balance_and_total(services: Services, account_id: str) -> tuple[int, int]:
    async with services.db.read() as conn:
        return await ledger.balance(conn, account_id), await ledger.total(conn, account_id)


async def entries(services: Services, account_id: str) -> list[Entry]:
    async with services.db.read() as conn:
        return await ledger.page(conn, account_id, 10_000, None)


async def attempt_charge(services: Services, account_id: str, reference: str) -> Entry | InsufficientCredits:
    try:
        return await services.billing.charge(account_id, to_milli(PRICE), reference)
    except InsufficientCredits as exc:
        return exc


async def test_concurrent_charges_stop_exactly_at_zero(
    make_settings: Callable[..., Settings],
    make_services: Callable[[Settings], Awaitable[Services]],
    make_account: Callable[..., Awaitable[TestAccount]],
) -> None:
    # Two service instances (two engines, two pools, two in-process write locks) stand in for
    # two processes: only the database can keep the balance from going negative. Small pools
    # keep the PostgreSQL run within a shared server's connection limit.
    settings = make_settings(database_pool_size=4)
    first = await make_services(settings)
    second = await make_services(settings)
    account = await make_account(credits=50 * PRICE, services=first)

    outcomes = await asyncio.gather(
        *(attempt_charge(first if n % 2 else second, account.id, f"req_{n}") for n in range(200))
    )

    succeeded = [o for o in outcomes if isinstance(o, Entry)]
    refused = [o for o in outcomes if isinstance(o, InsufficientCredits)]
    assert len(succeeded) == 50
    assert len(refused) == 150
    assert all(o.status == 402 and o.body()["required"] == PRICE for o in refused)
    assert all(0 <= o.body()["available"] < PRICE for o in refused)
    balance, total = await balance_and_total(first, account.id)
    assert balance == 0
    assert total == balance
    rows = await entries(first, account.id)
    assert sorted(row.kind for row in rows) == ["adjustment"] + ["charge"] * 50
    assert sorted(row.balance_after for row in rows if row.kind == "charge") == [to_milli(PRICE) * n for n in range(50)]


async def test_refund_retried_concurrently_pays_once(services: Services, make_account: Any) -> None:
    account = await make_account(credits=1000)
    await services.billing.charge(account.id, to_milli(300), "job_1")

    refunds = await asyncio.gather(*(services.billing.refund(account.id, "job_1") for _ in range(20)))

    assert {entry.id for entry in refunds if entry is not None} == {refunds[0].id if refunds[0] else None}
    assert all(entry is not None and entry.amount == to_milli(300) for entry in refunds)
    balance, total = await balance_and_total(services, account.id)
    assert balance == to_milli(1000) == total
    assert [row.kind for row in await entries(services, account.id)] == ["refund", "charge", "adjustment"]


async def test_settlement_retried_concurrently_returns_the_unused_part_once(
    services: Services, make_account: Any
) -> None:
    account = await make_account(credits=1000)
    await services.billing.charge(account.id, to_milli(100), "job_2")

    settled = await asyncio.gather(*(services.billing.settle(account.id, "job_2", to_milli(60)) for _ in range(20)))

    assert len({entry.id for entry in settled if entry is not None}) == 1
    balance, total = await balance_and_total(services, account.id)
    assert balance == to_milli(1000 - 60) == total


async def test_settlement_and_refund_racing_never_return_more_than_the_charge(
    services: Services, make_account: Any
) -> None:
    account = await make_account(credits=1000)
    for n in range(10):
        await services.billing.charge(account.id, to_milli(100), f"job_{n}")

    await asyncio.gather(
        *(services.billing.settle(account.id, f"job_{n}", to_milli(40)) for n in range(10)),
        *(services.billing.refund(account.id, f"job_{n}") for n in range(10)),
    )

    balance, total = await balance_and_total(services, account.id)
    assert balance == total
    # Each job ends either settled (60 back) or refunded (100 back), or refunded after settling
    # (60 + 40): never more than the 100 it was charged.
    assert balance <= to_milli(1000)
    for n in range(10):
        returned = sum(
            row.amount for row in await entries(services, account.id) if row.reference == f"job_{n}" and row.amount > 0
        )
        assert returned in {to_milli(60), to_milli(100)}


async def test_a_retried_charge_is_charged_once(services: Services, make_account: Any) -> None:
    account = await make_account(credits=100)
    results = await asyncio.gather(*(services.billing.charge(account.id, to_milli(30), "req_same") for _ in range(10)))
    assert len({entry.id for entry in results}) == 1
    assert (await balance_and_total(services, account.id))[0] == to_milli(70)


async def test_refund_after_settlement_returns_only_what_is_still_held(services: Services, make_account: Any) -> None:
    account = await make_account(credits=500)
    await services.billing.charge(account.id, to_milli(100), "job_3")
    settle = await services.billing.settle(account.id, "job_3", to_milli(70))
    assert settle is not None and settle.amount == to_milli(30)
    refund = await services.billing.refund(account.id, "job_3")
    assert refund is not None and refund.amount == to_milli(70)
    # Once refunded, a late settlement changes nothing.
    assert await services.billing.settle(account.id, "job_3", 0) is None
    balance, total = await balance_and_total(services, account.id)
    assert balance == to_milli(500) == total


async def test_settlement_above_the_charge_is_capped(services: Services, make_account: Any) -> None:
    account = await make_account(credits=100)
    await services.billing.charge(account.id, to_milli(40), "job_4")
    entry = await services.billing.settle(account.id, "job_4", to_milli(90))
    assert entry is not None and entry.amount == 0
    assert (await balance_and_total(services, account.id))[0] == to_milli(60)


async def test_fractional_credits_are_kept_exactly(services: Services, make_account: Any) -> None:
    account = await make_account(credits=1)
    await services.billing.charge(account.id, 1, "llm_1")  # one millicredit
    await services.billing.charge(account.id, 333, "llm_2")
    found = await services.accounts.get(account.id)
    assert found.balance == MILLI - 334
    assert found.public()["balance"] == 0.666


async def test_refund_or_settle_of_an_unknown_reference_does_nothing(services: Services, make_account: Any) -> None:
    account = await make_account(credits=100)
    assert await services.billing.refund(account.id, "never_charged") is None
    assert await services.billing.settle(account.id, "never_charged", 0) is None
    assert len(await entries(services, account.id)) == 1


async def test_a_refused_charge_leaves_no_trace(services: Services, make_account: Any) -> None:
    account = await make_account(credits=10)
    with pytest.raises(InsufficientCredits) as caught:
        await services.billing.charge(account.id, to_milli(11), "too_much")
    assert caught.value.body() == {"error": "Insufficient credits", "required": 11, "available": 10}
    assert [row.kind for row in await entries(services, account.id)] == ["adjustment"]
    # The refused reference stays usable for a later, affordable attempt.
    await services.billing.charge(account.id, to_milli(10), "too_much")
    assert (await balance_and_total(services, account.id))[0] == 0


async def test_top_up(services: Services, make_account: Any) -> None:
    account = await make_account(credits=0)
    with pytest.raises(ValidationFailed) as caught:
        await services.billing.top_up(account.id, 199)
    assert caught.value.body()["minimum"] == 200
    entry = await services.billing.top_up(account.id, 200, reference="invoice_1")
    again = await services.billing.top_up(account.id, 200, reference="invoice_1")
    assert entry.id == again.id
    assert (await balance_and_total(services, account.id)) == (to_milli(200), to_milli(200))
    with pytest.raises(NotFound):
        await services.billing.top_up("acc_missing", 500)


async def test_metrics_count_credits_charged_and_refunded(services: Services, make_account: Any) -> None:
    account = await make_account(credits=1000)
    for _ in range(3):  # retries of one charge and of its refund count once
        await services.billing.charge(account.id, to_milli(25), "job_m")
        await services.billing.refund(account.id, "job_m")
    await services.billing.charge(account.id, to_milli(10), "job_n")
    assert services.metrics.credits_charged._value.get() == 35
    assert services.metrics.credits_refunded._value.get() == 25


async def test_account_ledger_pages_newest_first(
    services: Services, client: httpx.AsyncClient, make_account: Any
) -> None:
    account = await make_account(credits=1000)
    for n in range(5):
        await services.billing.charge(account.id, to_milli(n + 1), f"req_{n}")

    first = await client.get("/api/v1/account/ledger?limit=4", headers=account.headers)
    assert first.status_code == 200
    page = first.json()
    assert [row["reference"] for row in page["data"]] == ["req_4", "req_3", "req_2", "req_1"]
    assert page["data"][0]["amount"] == -5
    assert page["data"][0]["balanceAfter"] == 1000 - 15
    assert page["has_more"] is True

    second = await client.get(f"/v1/account/ledger?limit=4&before={page['next_cursor']}", headers=account.headers)
    rest = second.json()
    assert [row["kind"] for row in rest["data"]] == ["charge", "adjustment"]
    assert rest["has_more"] is False and rest["next_cursor"] is None

    other = await make_account(credits=5)
    theirs = (await client.get("/api/v1/account/ledger", headers=other.headers)).json()
    assert [row["amount"] for row in theirs["data"]] == [5]


async def test_a_process_keeps_its_connections_within_twice_the_pool(
    make_settings: Callable[..., Settings], make_services: Callable[[Settings], Awaitable[Services]]
) -> None:
    services = await make_services(make_settings(database_pool_size=3))
    assert services.db.engine.pool.size() == 3
    open_at_once = 0
    peak = 0

    async def hold() -> None:
        nonlocal open_at_once, peak
        async with services.db.read():
            open_at_once += 1
            peak = max(peak, open_at_once)
            await asyncio.sleep(0.05)
            open_at_once -= 1

    await asyncio.gather(*(hold() for _ in range(20)))
    assert peak == 6
