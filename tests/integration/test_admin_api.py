"""The operator's API and the caller's account, under /api/v1 and /v1, on both databases."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from hypereal.services import Services
from tests.conftest import ADMIN_KEY, TestAccount

PREFIXES = ["/api/v1", "/v1"]


@pytest.fixture(params=PREFIXES)
def prefix(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_create_account_key_and_use_it(
    client: httpx.AsyncClient, admin_headers: dict[str, str], prefix: str
) -> None:
    created = await client.post(
        f"{prefix}/admin/accounts", json={"name": "Acme", "credits": 500}, headers=admin_headers
    )
    assert created.status_code == 201
    account = created.json()
    assert set(account) == {"id", "name", "balance"}
    assert account["name"] == "Acme" and account["balance"] == 500

    made = await client.post(
        f"{prefix}/admin/accounts/{account['id']}/keys",
        json={"name": "ci", "rate_limit_per_hour": 42},
        headers=admin_headers,
    )
    assert made.status_code == 201
    key = made.json()
    assert {"id", "key", "prefix", "rate_limit_per_hour"} <= set(key)
    assert key["key"].startswith("ck_") and key["key"].startswith(key["prefix"])
    assert key["prefix"] != key["key"]
    assert key["rate_limit_per_hour"] == 42

    mine = await client.get(f"{prefix}/account", headers={"Authorization": f"Bearer {key['key']}"})
    assert mine.status_code == 200
    assert mine.json() == {"id": account["id"], "name": "Acme", "balance": 500}
    assert mine.headers["x-ratelimit-limit"] == "42"


async def test_new_key_without_a_limit_reports_the_default(
    client: httpx.AsyncClient, admin_headers: dict[str, str], make_account: Any
) -> None:
    account: TestAccount = await make_account()
    made = await client.post(f"/api/v1/admin/accounts/{account.id}/keys", json={}, headers=admin_headers)
    assert made.status_code == 201
    assert made.json()["rate_limit_per_hour"] == 1000
    assert made.json()["name"] == "default"


async def test_listing_keys_never_shows_secrets(
    client: httpx.AsyncClient, admin_headers: dict[str, str], make_account: Any, prefix: str
) -> None:
    account: TestAccount = await make_account()
    extra = await client.post(f"{prefix}/admin/accounts/{account.id}/keys", json={"name": "b"}, headers=admin_headers)
    secrets_shown = [account.key, extra.json()["key"]]

    listed = await client.get(f"{prefix}/admin/accounts/{account.id}/keys", headers=admin_headers)
    assert listed.status_code == 200
    keys = listed.json()["data"]
    assert [key["name"] for key in keys] == ["test", "b"]
    assert {key["id"] for key in keys} == {account.key_id, extra.json()["id"]}
    for key in keys:
        assert "key" not in key and "key_hash" not in key
        assert key["prefix"].startswith("ck_") and len(key["prefix"]) < 20
        assert key["revokedAt"] is None
    for secret in secrets_shown:
        assert secret not in listed.text
        assert secret[len("ck_") + 8 :] not in listed.text


async def test_list_and_get_accounts(
    client: httpx.AsyncClient, admin_headers: dict[str, str], make_account: Any, prefix: str
) -> None:
    first: TestAccount = await make_account(credits=300, name="First")
    second: TestAccount = await make_account(credits=0, name="Second")

    listed = await client.get(f"{prefix}/admin/accounts", headers=admin_headers)
    assert listed.status_code == 200
    by_id = {account["id"]: account for account in listed.json()["data"]}
    assert by_id[first.id]["balance"] == 300 and by_id[first.id]["name"] == "First"
    assert by_id[second.id]["balance"] == 0

    page = await client.get(f"{prefix}/admin/accounts?limit=1&offset=1", headers=admin_headers)
    assert [account["id"] for account in page.json()["data"]] == [second.id]

    one = await client.get(f"{prefix}/admin/accounts/{first.id}", headers=admin_headers)
    assert one.status_code == 200
    assert one.json()["id"] == first.id and one.json()["balance"] == 300

    missing = await client.get(f"{prefix}/admin/accounts/acc_nope", headers=admin_headers)
    assert missing.status_code == 404
    assert missing.json() == {"error": "Account not found"}


async def test_top_up(
    client: httpx.AsyncClient, admin_headers: dict[str, str], make_account: Any, services: Services, prefix: str
) -> None:
    account: TestAccount = await make_account(credits=10)
    url = f"{prefix}/admin/accounts/{account.id}/credits"

    too_small = await client.post(url, json={"amount": 199}, headers=admin_headers)
    assert too_small.status_code == 400
    assert too_small.json()["error"] == "The minimum top-up is 200 credits"
    for bad in ({"amount": -500}, {"amount": 0}, {"amount": 250.5}, {"amount": "300"}):
        assert (await client.post(url, json=bad, headers=admin_headers)).status_code == 400

    added = await client.post(url, json={"amount": 200}, headers=admin_headers)
    assert added.status_code == 200
    assert added.json() == {"balance": 210}
    assert (await services.accounts.get(account.id)).public()["balance"] == 210

    unknown = await client.post(
        f"{prefix}/admin/accounts/acc_nope/credits", json={"amount": 500}, headers=admin_headers
    )
    assert unknown.status_code == 404


async def test_keys_for_an_unknown_account_are_404(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> None:
    assert (await client.post("/v1/admin/accounts/acc_nope/keys", json={}, headers=admin_headers)).status_code == 404
    assert (await client.get("/v1/admin/accounts/acc_nope/keys", headers=admin_headers)).status_code == 404


ADMIN_CALLS = [
    ("POST", "/admin/accounts", {"name": "x"}),
    ("GET", "/admin/accounts", None),
    ("GET", "/admin/accounts/acc_1", None),
    ("POST", "/admin/accounts/acc_1/keys", {}),
    ("GET", "/admin/accounts/acc_1/keys", None),
    ("POST", "/admin/accounts/acc_1/credits", {"amount": 500}),
    ("DELETE", "/admin/keys/key_1", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_CALLS)
async def test_admin_routes_refuse_user_keys_and_anonymous_callers(
    client: httpx.AsyncClient, make_account: Any, services: Services, method: str, path: str, body: Any
) -> None:
    user: TestAccount = await make_account(credits=0)
    accounts_before = len(await services.accounts.list_accounts())
    for prefix in PREFIXES:
        as_user = await client.request(method, prefix + path, json=body, headers=user.headers)
        assert as_user.status_code == 403
        assert as_user.json() == {"error": "This endpoint needs the admin key"}
        anonymous = await client.request(method, prefix + path, json=body)
        assert anonymous.status_code == 401
        assert anonymous.json()["error"].startswith("Unauthorized.")
        wrong = await client.request(method, prefix + path, json=body, headers={"Authorization": "Bearer " + "z" * 40})
        assert wrong.status_code == 401
        near_miss = ADMIN_KEY[:-1] + ("x" if ADMIN_KEY[-1] != "x" else "y")
        almost = await client.request(method, prefix + path, json=body, headers={"x-api-key": near_miss})
        assert almost.status_code == 401
    assert len(await services.accounts.list_accounts()) == accounts_before
    assert (await services.accounts.get(user.id)).balance == 0
    assert [key.revoked_at for key in await services.accounts.list_keys(user.id)] == [None]


async def test_admin_key_also_works_as_x_api_key(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/admin/accounts", headers={"x-api-key": ADMIN_KEY})
    assert response.status_code == 200


async def test_admin_api_is_closed_without_a_configured_admin_key(
    make_settings: Any, make_services: Any, make_client: Any
) -> None:
    services = await make_services(make_settings(admin_key=None))
    client = make_client(services)
    for headers in ({}, {"Authorization": "Bearer " + "a" * 32}, {"Authorization": "Bearer None"}):
        assert (await client.get("/api/v1/admin/accounts", headers=headers)).status_code == 401


async def test_openapi_document_and_docs_page(client: httpx.AsyncClient) -> None:
    spec = await client.get("/openapi.json")
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    assert "/api/v1/admin/accounts" in paths
    assert "/api/v1/account" in paths
    assert "/api/v1/models" in paths
    assert not any(path.startswith("/v1/") for path in paths)  # one copy of the API in the document
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert "text/html" in docs.headers["content-type"]
