"""Usage sums and ledger searches: attribution of every charge, the API's answers and refusals,
CSV export, and query plans that read an index, never the whole ledger, on both databases."""

from __future__ import annotations

import csv
import io
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable

import httpx
import pytest
from sqlalchemy import text

from hypereal.jobs.engine import Submission
from hypereal.keys import Principal
from hypereal.llm.gateway import gateway
from hypereal.services import Services
from hypereal.store import usage
from hypereal.store.db import Database
from hypereal.store.usage import LedgerFilter
from tests.conftest import TestAccount

USAGE = "/api/v1/account/usage"
LEDGER = "/api/v1/account/ledger"
DAY = 86_400


async def spend_on_chat(client: httpx.AsyncClient, account: TestAccount, text_: str = "hello there") -> None:
    """A chat call, its settlement committed (the answer does not wait for it)."""
    answer = await client.post(
        "/v1/chat/completions",
        json={"model": "local-echo", "messages": [{"role": "user", "content": text_}]},
        headers=account.headers,
    )
    assert answer.status_code == 200, answer.text
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    await gateway(transport.app.state.services).ledger.flush()  # type: ignore[attr-defined]


async def submit_image(services: Services, account: TestAccount, prompt: str = "a red fox") -> str:
    spec = services.catalog.resolve("local-image")
    principal = Principal(account.key_id, account.id, None)
    job = await services.jobs.submit(principal, Submission(spec, {"prompt": prompt}, "auto", None))
    return job.id


async def test_every_movement_of_a_charge_carries_its_key_model_and_category(
    client: httpx.AsyncClient, services: Services, make_account: Callable[..., Awaitable[TestAccount]]
) -> None:
    account = await make_account()
    await spend_on_chat(client, account)
    job_id = await submit_image(services, account)
    job = await services.jobs.get(job_id, account.id)
    await services.jobs.cancel_now(job, "test")
    await services.billing.refund(account.id, "missing")  # nothing to refund: no row

    entries = (await client.get(LEDGER, headers=account.headers)).json()["data"]
    by_kind = {(entry["kind"], entry["category"]): entry for entry in entries}
    assert {kind for kind, _ in by_kind} == {"charge", "settle", "refund", "adjustment"}
    for kind in ("charge", "settle"):
        entry = by_kind[(kind, "llm")]
        assert (entry["keyId"], entry["model"]) == (account.key_id, "local-echo")
    for kind in ("charge", "refund"):
        entry = by_kind[(kind, "image")]
        assert (entry["keyId"], entry["model"], entry["reference"]) == (account.key_id, "local-image", job_id)
    grant = by_kind[("adjustment", None)]
    assert grant["keyId"] is None and grant["model"] is None


async def test_usage_sums_net_spending_by_each_dimension(
    client: httpx.AsyncClient, services: Services, make_account: Callable[..., Awaitable[TestAccount]]
) -> None:
    account = await make_account()
    await spend_on_chat(client, account)
    await spend_on_chat(client, account, "a longer message to echo back")
    await submit_image(services, account)
    refunded = await submit_image(services, account, "refunded")
    await services.jobs.cancel_now(await services.jobs.get(refunded, account.id), "test")
    other = await make_account()
    await submit_image(services, other)

    balance = (await client.get("/api/v1/account", headers=account.headers)).json()["balance"]
    spent = 1000 - balance
    by_category = (await client.get(USAGE, params={"group_by": "category"}, headers=account.headers)).json()
    rows = {row["category"]: row for row in by_category["data"]}
    assert rows["image"] == {"category": "image", "credits": 1, "requests": 2}
    assert rows["llm"]["requests"] == 2
    assert rows["llm"]["credits"] == pytest.approx(spent - 1)
    assert by_category["total"]["credits"] == pytest.approx(spent) and by_category["total"]["requests"] == 4

    by_model = (await client.get(USAGE, params={"group_by": "model"}, headers=account.headers)).json()
    assert [row["model"] for row in by_model["data"]] == ["local-echo", "local-image"]

    by_key = (await client.get(USAGE, params={"group_by": "key"}, headers=account.headers)).json()
    assert by_key["data"] == [
        {
            "key": account.key_id,
            "key_name": "test",
            "key_prefix": account.key[:11],
            "credits": pytest.approx(spent),
            "requests": 4,
        }
    ]

    today = time.strftime("%Y-%m-%d", time.gmtime())
    by_day = (await client.get(USAGE, params={"group_by": "day,category"}, headers=account.headers)).json()
    assert {(row["day"], row["category"]) for row in by_day["data"]} == {(today, "image"), (today, "llm")}
    assert by_day["group_by"] == ["day", "category"]

    tomorrow = time.strftime("%Y-%m-%d", time.gmtime(time.time() + DAY))
    empty = (await client.get(USAGE, params={"from": tomorrow, "to": tomorrow}, headers=account.headers)).json()
    assert empty["data"] == [] and empty["total"] == {"credits": 0, "requests": 0}
    ahead = await client.get(USAGE, params={"from": tomorrow}, headers=account.headers)  # `to` defaults to now
    assert ahead.status_code == 400 and ahead.json()["field"] == "from"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "yesterday"}, "from"),
        ({"to": "2025-13-01"}, "to"),
        ({"from": "2025-06-02", "to": "2025-06-01"}, "from"),
        ({"from": "2025-06-01T00:00:00Z", "to": "2025-06-01T00:00:00Z"}, "from"),
        ({"from": "2020-01-01", "to": "2025-01-01"}, "from"),
        ({"from": "-5"}, "from"),
        ({"to": "1e300"}, "to"),
        ({"from": "nan"}, "from"),
        ({"group_by": "week"}, "group_by"),
        ({"group_by": ""}, "group_by"),
        ({"group_by": "day,model,key"}, "group_by"),
        ({"group_by": "day,day"}, "group_by"),
    ],
)
async def test_bad_ranges_and_groupings_are_400s(
    client: httpx.AsyncClient, make_account: Callable[..., Awaitable[TestAccount]], params: dict[str, str], field: str
) -> None:
    account = await make_account()
    answer = await client.get(USAGE, params=params, headers=account.headers)
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == field and answer.json()["error"]


async def test_a_bare_date_as_to_includes_that_day(
    client: httpx.AsyncClient, make_account: Callable[..., Awaitable[TestAccount]]
) -> None:
    account = await make_account()
    await spend_on_chat(client, account)
    today = time.strftime("%Y-%m-%d", time.gmtime())
    answer = (await client.get(USAGE, params={"from": today, "to": today}, headers=account.headers)).json()
    assert answer["total"]["requests"] == 1
    assert answer["to"].startswith(time.strftime("%Y-%m-%d", time.gmtime(time.time() + DAY)))
    unix = await client.get(USAGE, params={"from": str(int(time.time()) - 60)}, headers=account.headers)
    assert unix.json()["total"]["requests"] == 1


async def test_the_ledger_is_filtered_and_exported_as_csv(
    client: httpx.AsyncClient, services: Services, make_account: Callable[..., Awaitable[TestAccount]]
) -> None:
    account = await make_account()
    await spend_on_chat(client, account, '=HYPERLINK("x")')
    job_id = await submit_image(services, account)

    charges = (await client.get(LEDGER, params={"kind": "charge"}, headers=account.headers)).json()["data"]
    assert [entry["category"] for entry in charges] == ["image", "llm"]
    images = (await client.get(LEDGER, params={"model": "local-image"}, headers=account.headers)).json()["data"]
    assert [entry["reference"] for entry in images] == [job_id]
    keyed = (await client.get(LEDGER, params={"key": account.key_id}, headers=account.headers)).json()["data"]
    assert len(keyed) == 3  # chat charge and settlement, image charge; not the grant
    future = time.strftime("%Y-%m-%d", time.gmtime(time.time() + DAY))
    assert (await client.get(LEDGER, params={"from": future}, headers=account.headers)).json()["data"] == []
    assert (await client.get(LEDGER, params={"kind": "gift"}, headers=account.headers)).status_code == 400
    assert (await client.get(LEDGER, params={"category": "poems"}, headers=account.headers)).status_code == 400

    exported = await client.get(f"{LEDGER}/export", params={"category": "llm"}, headers=account.headers)
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    assert "attachment" in exported.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [row["kind"] for row in rows] == ["settle", "charge"]
    assert rows[1]["model"] == "local-echo" and rows[1]["key_id"] == account.key_id
    assert float(rows[1]["amount"]) < 0 and re.fullmatch(r"\d{4}-\d\d-\d\dT.*Z", rows[1]["created_at"])
    everything = await client.get(f"{LEDGER}/export", headers=account.headers)
    assert len(list(csv.DictReader(io.StringIO(everything.text)))) == 4


async def test_the_export_pages_through_many_entries(
    client: httpx.AsyncClient, services: Services, make_account: Callable[..., Awaitable[TestAccount]]
) -> None:
    account = await make_account(credits=10_000)
    await fill_ledger(services.db, account.id, 2_500, start=time.time() - 10 * DAY, span=5 * DAY)
    exported = await client.get(f"{LEDGER}/export", headers=account.headers)
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert len(rows) == 2_501
    assert len({row["id"] for row in rows}) == 2_501


async def fill_ledger(db: Database, account_id: str, count: int, *, start: float, span: float) -> None:
    """`count` charges spread evenly over [start, start + span), made in the database itself."""
    step = span / count
    statement = text(
        """
        WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < :last)
        INSERT INTO ledger (account_id, kind, amount, balance_after, reference, note, created_at,
                            key_id, model, category)
        SELECT :account, 'charge', -1000, 0, 'bulk_' || CAST(i AS VARCHAR(12)), NULL,
               CAST(:start AS DOUBLE PRECISION) + i * CAST(:step AS DOUBLE PRECISION),
               'key_' || CAST(i % 5 AS VARCHAR(2)), 'model-' || CAST(i % 20 AS VARCHAR(3)),
               CASE i % 3 WHEN 0 THEN 'llm' WHEN 1 THEN 'image' ELSE 'video' END
        FROM n
        """
    )
    async with db.write() as conn:
        await conn.execute(statement, {"last": count - 1, "account": account_id, "start": start, "step": step})


def expected_bulk(count: int, start: float, span: float, since: float, until: float) -> Counter[str]:
    step = span / count
    return Counter(("llm", "image", "video")[i % 3] for i in range(count) if since <= start + i * step < until)


async def query_plan(db: Database, statement: object) -> str:
    async with db.read() as conn:
        sql = str(statement.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))  # type: ignore[attr-defined]
        if db.is_sqlite:
            rows = await conn.execute(text("EXPLAIN QUERY PLAN " + sql))
            return "\n".join(str(row[-1]) for row in rows)
        await conn.execute(text("ANALYZE ledger"))
        return "\n".join(str(row[0]) for row in await conn.execute(text("EXPLAIN " + sql)))


@pytest.mark.slow
async def test_usage_of_a_hundred_thousand_entries_reads_an_index_not_the_ledger(
    client: httpx.AsyncClient, services: Services, make_account: Callable[..., Awaitable[TestAccount]]
) -> None:
    account = await make_account()
    neighbours = [await make_account() for _ in range(2)]
    year = 365 * DAY
    start = time.time() - year
    await fill_ledger(services.db, account.id, 100_000, start=start, span=year)
    for neighbour in neighbours:
        await fill_ledger(services.db, neighbour.id, 50_000, start=start, span=year)

    since, until = time.time() - 30 * DAY, time.time()
    answer = await client.get(
        USAGE, params={"from": str(since), "to": str(until), "group_by": "category"}, headers=account.headers
    )
    assert answer.status_code == 200
    expected = expected_bulk(100_000, start, year, since, until)
    assert {row["category"]: row["requests"] for row in answer.json()["data"]} == dict(expected)
    assert {row["category"]: row["credits"] for row in answer.json()["data"]} == dict(expected)

    dialect = "sqlite" if services.db.is_sqlite else "postgresql"
    for group_by in (("day",), ("model",), ("key",), ("day", "category")):
        plan = await query_plan(services.db, usage.usage_query(dialect, account.id, since, until, group_by))
        assert "ix_ledger_usage" in plan, plan
        assert_no_full_scan(plan)

    filtered = LedgerFilter(start=since, end=until, model="model-3")
    search = usage._filtered(usage.select(usage.ledger), account.id, filtered).order_by(usage.ledger.c.id.desc())
    assert_no_full_scan(await query_plan(services.db, search.limit(50)))


def assert_no_full_scan(plan: str) -> None:
    assert not re.search(r"^SCAN ledger$|^SCAN ledger\b(?! USING)", plan, re.MULTILINE), plan
    assert "Seq Scan on ledger" not in plan, plan
