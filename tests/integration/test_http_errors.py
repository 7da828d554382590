"""Bad requests over HTTP: the right status, a JSON `{"error": ...}` body, and no trace in the ledger."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy.exc import DBAPIError

from hypereal.bounds import MAX_BALANCE_CREDITS
from hypereal.services import Services
from hypereal.store import ledger
from hypereal.units import to_milli
from tests.conftest import TestAccount, serving

SMALL_LIMIT = 4096


def assert_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body, dict)
    assert isinstance(body.get("error"), str) and body["error"]
    assert "detail" not in body  # never FastAPI's default shape
    assert "Traceback" not in response.text
    return body


async def ledger_state(services: Services, account_id: str) -> tuple[int, list[int]]:
    async with services.db.read() as conn:
        rows = await ledger.page(conn, account_id, 1000, None)
        return await ledger.balance(conn, account_id), [row.id for row in rows]


@pytest.fixture
async def account(make_account: Any) -> TestAccount:
    result: TestAccount = await make_account(credits=300)
    return result


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "Request body is not valid JSON"),
        (b'{"amount": 300', "Request body is not valid JSON"),
        (b"", "Request body is required"),
        (b"[300]", "Request body must be a JSON object"),
        (b'"300"', "Request body must be a JSON object"),
        (b"{}", "Amount is required"),
        (b'{"amount": "300"}', "Invalid value for 'amount'"),
        (b'{"amount": 300.5}', "Invalid value for 'amount'"),
        (b'{"amount": null}', "Invalid value for 'amount'"),
        (b'{"amount": true}', "Invalid value for 'amount'"),
        (b'{"amount": 300, "bonus": 1}', "Invalid value for 'bonus'"),
        (b'{"amount": 150}', "The minimum top-up is 200 credits"),
    ],
)
async def test_bad_bodies_get_400_and_leave_the_ledger_alone(
    client: httpx.AsyncClient,
    services: Services,
    account: TestAccount,
    admin_headers: dict[str, str],
    body: bytes,
    message: str,
) -> None:
    before = await ledger_state(services, account.id)
    for content_type in ("application/json", "text/plain"):
        response = await client.post(
            f"/api/v1/admin/accounts/{account.id}/credits",
            content=body,
            headers={**admin_headers, "Content-Type": content_type},
        )
        assert assert_error(response, 400)["error"].startswith(message)
    assert await ledger_state(services, account.id) == before


async def test_bad_account_requests_create_nothing(
    client: httpx.AsyncClient, services: Services, admin_headers: dict[str, str]
) -> None:
    for body, message in [
        ({}, "Name is required"),
        ({"name": 7}, "Invalid value for 'name'"),
        ({"name": ""}, "Invalid value for 'name'"),
        ({"name": "x", "credits": -1}, "Invalid value for 'credits'"),
        ({"name": "x", "credits": "lots"}, "Invalid value for 'credits'"),
    ]:
        response = await client.post("/v1/admin/accounts", json=body, headers=admin_headers)
        assert assert_error(response, 400)["error"].startswith(message)
    assert await services.accounts.list_accounts() == []


async def test_bad_query_parameters_name_the_parameter(client: httpx.AsyncClient, account: TestAccount) -> None:
    for query, field in [
        ("limit=abc", "limit"),
        ("limit=0", "limit"),
        ("limit=100000", "limit"),
        ("before=x", "before"),
    ]:
        body = assert_error(await client.get(f"/api/v1/account/ledger?{query}", headers=account.headers), 400)
        assert body["field"] == field
    body = assert_error(await client.get("/api/v1/models?category=hologram"), 400)
    assert body["field"] == "category"


async def test_unknown_model_is_404_and_says_where_to_look(client: httpx.AsyncClient, account: TestAccount) -> None:
    for prefix in ("/api/v1", "/v1"):
        body = assert_error(await client.get(f"{prefix}/models/nope", headers=account.headers), 404)
        assert body["model"] == "nope"
        assert "GET /api/v1/models" in body["error"]


async def test_an_assistant_message_whose_tool_calls_are_no_list_is_a_400(
    client: httpx.AsyncClient, services: Services, account: TestAccount
) -> None:
    # Found by the schemathesis run: iterating a number as the list of calls answered 500.
    messages = [{"role": "assistant", "content": "x", "tool_calls": 5.0}, {"role": "user", "content": "hi"}]
    before = await ledger_state(services, account.id)
    native = await client.post("/v1/chat", json={"messages": messages}, headers=account.headers)
    assert "tool_calls" in assert_error(native, 400)["error"]
    openai = await client.post(
        "/v1/chat/completions", json={"model": "local-echo", "messages": messages}, headers=account.headers
    )
    assert openai.status_code == 400 and "tool_calls" in openai.json()["error"]["message"]
    assert await ledger_state(services, account.id) == before


async def test_unknown_routes_and_methods(client: httpx.AsyncClient, account: TestAccount) -> None:
    for path in ("/nope", "/api/v1/nope", "/v1/admin/nope", "/api/v2/account", "/v1/account/ledger/extra"):
        assert assert_error(await client.get(path, headers=account.headers), 404) == {"error": "Not found"}
    assert_error(await client.delete("/api/v1/account", headers=account.headers), 405)
    assert_error(await client.put("/healthz"), 405)


async def test_declared_content_length_over_the_limit_is_413(
    make_settings: Any, make_services: Any, make_client: Any, make_account: Any, admin_headers: dict[str, str]
) -> None:
    services = await make_services(make_settings(max_body_bytes=SMALL_LIMIT))
    client = make_client(services)
    account: TestAccount = await make_account(credits=300, services=services)
    before = await ledger_state(services, account.id)
    padding = " " * SMALL_LIMIT
    response = await client.post(
        f"/api/v1/admin/accounts/{account.id}/credits", content=f'{{"amount": 500}}{padding}', headers=admin_headers
    )
    body = assert_error(response, 413)
    assert body["limit"] == SMALL_LIMIT
    # A user route is cut off the same way, before anything else happens.
    assert_error(await client.post("/v1/account", content=b"x" * (SMALL_LIMIT + 1), headers=account.headers), 413)
    assert await ledger_state(services, account.id) == before
    # Just under the limit is fine.
    fits = f'{{"amount": 500}}{" " * (SMALL_LIMIT - 20)}'
    ok = await client.post(f"/api/v1/admin/accounts/{account.id}/credits", content=fits, headers=admin_headers)
    assert ok.status_code == 200


async def test_streamed_body_without_content_length_over_the_limit_is_413(
    make_settings: Any, make_services: Any, make_client: Any, make_account: Any, admin_headers: dict[str, str]
) -> None:
    services = await make_services(make_settings(max_body_bytes=SMALL_LIMIT))
    client = make_client(services)
    account: TestAccount = await make_account(credits=300, services=services)
    before = await ledger_state(services, account.id)
    chunks_sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal chunks_sent
        yield b'{"amount": 500, "pad": "'
        for _ in range(64):
            chunks_sent += 1
            yield b"x" * 1024
        yield b'"}'

    request = client.build_request(
        "POST", f"/api/v1/admin/accounts/{account.id}/credits", content=chunks(), headers=admin_headers
    )
    assert "content-length" not in request.headers
    body = assert_error(await client.send(request), 413)
    assert body["limit"] == SMALL_LIMIT
    assert chunks_sent < 64  # reading stopped at the limit, not at the end of the body
    assert await ledger_state(services, account.id) == before


def failing_app(services: Services, monkeypatch: pytest.MonkeyPatch, failure: Exception) -> Any:
    """The app, with reading an account (GET /v1/account) and charging (every chat call) raising `failure`."""
    from hypereal.app import create_app

    async def fail(*args: Any) -> Any:
        raise failure

    monkeypatch.setattr(services.accounts, "get", fail)
    monkeypatch.setattr(services.billing, "charge", fail)
    return create_app(services.settings, services=services, run_worker=False)


async def test_unexpected_failures_are_a_json_500_without_details(
    services: Services, account: TestAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = failing_app(services, monkeypatch, RuntimeError("internal detail that must not leak"))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/v1/account", headers=account.headers)
    assert assert_error(response, 500) == {"error": "Internal server error"}
    assert "internal detail" not in response.text


# ---------------------------------------------------------------- numbers and their ranges

PAST_INT64 = 2**63  # the first integer neither database can store


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("GET", f"/api/v1/account/ledger?before={PAST_INT64}", None, "before"),
        ("GET", f"/api/v1/admin/accounts?offset={PAST_INT64}", None, "offset"),
        ("GET", "/api/v1/admin/accounts?offset=1000000001", None, "offset"),
        ("GET", "/api/v1/jobs?before=inf", None, "before"),
        ("POST", "/api/v1/admin/accounts/{account}/credits", {"amount": 2**63 - 1}, "amount"),
        ("POST", "/api/v1/admin/accounts/{account}/credits", {"amount": 9_300_000_000_000_000}, "amount"),
        ("POST", "/api/v1/admin/accounts/{account}/credits", {"amount": 10**10 + 1}, "amount"),
        ("POST", "/api/v1/admin/accounts", {"name": "x", "credits": 10**16}, "credits"),
        ("POST", "/api/v1/admin/accounts", {"name": "x", "credits": 1e16}, "credits"),
        ("POST", "/api/v1/admin/accounts/{account}/keys", {"rate_limit_per_hour": PAST_INT64}, "rate_limit_per_hour"),
        ("POST", "/api/v1/admin/accounts/{account}/keys", {"rate_limit_per_hour": 10**9 + 1}, "rate_limit_per_hour"),
        ("POST", "/v1/images/generate", {"model": "local-image", "prompt": "x", "seed": 2**53}, "seed"),
        ("POST", "/v1/images/generate", {"model": "local-image", "prompt": "x", "seed": 1e23}, "seed"),
        ("POST", "/v1/chat/completions", {"max_tokens": 2**31}, "max_tokens"),
        ("POST", "/v1/chat/completions", {"temperature": 1e308}, "temperature"),
        ("POST", "/v1/chat/completions", {"top_p": -0.5}, "top_p"),
        ("POST", "/v1/messages", {"max_tokens": PAST_INT64}, "max_tokens"),
        ("POST", "/v1/responses", {"max_output_tokens": 2**40}, "max_output_tokens"),
    ],
)
async def test_numbers_past_their_documented_range_are_400_and_cost_nothing(
    client: httpx.AsyncClient,
    services: Services,
    account: TestAccount,
    admin_headers: dict[str, str],
    method: str,
    path: str,
    body: dict[str, Any] | None,
    field: str,
) -> None:
    headers = admin_headers if "/admin/" in path else account.headers
    if path in ("/v1/chat/completions", "/v1/messages"):
        body = {"model": "local-echo", "messages": [{"role": "user", "content": "hi"}], **(body or {})}
    elif path == "/v1/responses":
        body = {"model": "local-echo", "input": "hi", **(body or {})}
    before = await ledger_state(services, account.id)
    accounts_before = len(await services.accounts.list_accounts())
    response = await client.request(method, path.format(account=account.id), json=body, headers=headers)
    assert response.status_code == 400, response.text
    assert field in response.text
    assert await ledger_state(services, account.id) == before
    assert len(await services.accounts.list_accounts()) == accounts_before


async def test_a_top_up_past_the_maximum_balance_is_400_and_writes_nothing(
    client: httpx.AsyncClient, services: Services, account: TestAccount, admin_headers: dict[str, str]
) -> None:
    # A legal top-up onto a balance near the limit: the balance would pass what the ledger holds.
    async with services.db.write() as conn:
        await ledger.top_up(conn, account.id, ledger.MAX_BALANCE - to_milli(300 + 100), "near-the-limit")
    before = await ledger_state(services, account.id)

    response = await client.post(
        f"/api/v1/admin/accounts/{account.id}/credits", json={"amount": 200}, headers=admin_headers
    )
    body = assert_error(response, 400)
    assert body["maximum"] == MAX_BALANCE_CREDITS
    assert body["balance"] == MAX_BALANCE_CREDITS - 100
    assert await ledger_state(services, account.id) == before

    # Up to the maximum exactly is fine.
    async with services.db.write() as conn:
        await ledger.top_up(conn, account.id, to_milli(100), "to-the-maximum")
        assert await ledger.balance(conn, account.id) == ledger.MAX_BALANCE


async def test_a_balance_at_the_maximum_still_takes_back_its_refunds(services: Services, account: TestAccount) -> None:
    charged = await services.billing.charge(account.id, to_milli(300), "job_charged")
    async with services.db.write() as conn:
        await ledger.top_up(conn, account.id, ledger.MAX_BALANCE - charged.balance_after, "to-the-maximum")
    refunded = await services.billing.refund(account.id, "job_charged")
    assert refunded is not None and refunded.balance_after == ledger.MAX_BALANCE + to_milli(300)


@pytest.mark.parametrize(
    "failure",
    [
        OverflowError("Python int too large to convert to SQLite INTEGER"),
        DBAPIError("SELECT ...", {}, type("OutOfRange", (Exception,), {"sqlstate": "22003"})()),
    ],
    ids=["sqlite3-overflow", "sqlstate-22003"],
)
async def test_a_number_the_database_cannot_hold_is_a_400_on_every_route(
    services: Services, account: TestAccount, monkeypatch: pytest.MonkeyPatch, failure: Exception
) -> None:
    """The last line of defence behind the ranges: for a check that is missing, not a 500."""
    app = failing_app(services, monkeypatch, failure)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        routed = await client.get("/v1/account", headers=account.headers)
        fast = await client.post(
            "/v1/chat/completions",
            json={"model": "local-echo", "messages": [{"role": "user", "content": "hi"}]},
            headers=account.headers,
        )
    assert assert_error(routed, 400) == {"error": "A value in the request is out of range"}
    assert fast.status_code == 400, fast.text  # in the OpenAI error shape of that surface
    assert fast.json()["error"]["message"] == "A value in the request is out of range"


# ---------------------------------------------------------------- 405


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/chat/completions", "GET, POST"),
        ("/responses", "GET, POST"),
        ("/admin/accounts", "GET, POST"),
        ("/admin/accounts/acc_x/keys", "GET, POST"),
        ("/account", "GET"),
        ("/chat", "POST"),
    ],
)
@pytest.mark.parametrize("prefix", ["/v1", "/api/v1"])
async def test_405_names_every_method_the_path_takes(
    client: httpx.AsyncClient, admin_headers: dict[str, str], prefix: str, path: str, allowed: str
) -> None:
    for method in ("DELETE", "PUT", "PATCH"):
        response = await client.request(method, prefix + path, headers=admin_headers)
        assert_error(response, 405)
        assert response.headers["allow"] == allowed


async def test_a_500_keeps_the_connection_open_for_the_next_request(
    services: Services, account: TestAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = failing_app(services, monkeypatch, RuntimeError("internal detail that must not leak"))
    async with serving(app) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for path in ("/v1/account", "/healthz", "/v1/account", "/healthz"):
                writer.write(
                    f"GET {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {account.key}\r\n\r\n".encode()
                )
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(
                    next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))[15:]
                )
                body = await reader.readexactly(length)
                assert b"connection: close" not in head.lower()
                if path == "/healthz":
                    assert head.startswith(b"HTTP/1.1 200 ")
                else:
                    assert head.startswith(b"HTTP/1.1 500 ") and body == b'{"error":"Internal server error"}'
        finally:
            writer.close()
