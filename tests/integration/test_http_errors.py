"""Bad requests over HTTP: the right status, a JSON `{"error": ...}` body, and no trace in the ledger."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from hypereal.services import Services
from hypereal.store import ledger
from tests.conftest import TestAccount

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


async def test_unknown_model_is_400_and_says_where_to_look(client: httpx.AsyncClient, account: TestAccount) -> None:
    for prefix in ("/api/v1", "/v1"):
        body = assert_error(await client.get(f"{prefix}/models/nope", headers=account.headers), 400)
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


async def test_unexpected_failures_are_a_json_500_without_details(
    services: Services, account: TestAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hypereal.app import create_app

    async def broken(account_id: str) -> Any:
        raise RuntimeError("internal detail that must not leak")

    monkeypatch.setattr(services.accounts, "get", broken)
    app = create_app(services.settings, services=services, run_worker=False)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/v1/account", headers=account.headers)
    assert assert_error(response, 500) == {"error": "Internal server error"}
    assert "internal detail" not in response.text
