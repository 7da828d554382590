"""Self-service keys: a key lists, creates and revokes its own account's keys, on both databases."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx

from tests.conftest import TestAccount

KEYS = "/api/v1/account/keys"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_a_key_creates_another_that_works_and_is_listed_without_its_secret(
    client: httpx.AsyncClient, make_account: Callable[..., Awaitable[TestAccount]]
) -> None:
    account = await make_account(rate_limit_per_hour=500)
    made = await client.post(KEYS, json={"name": "ci <deploy>"}, headers=account.headers)
    assert made.status_code == 201, made.text
    key = made.json()
    assert key["key"].startswith(key["prefix"]) and key["name"] == "ci <deploy>"
    assert key["rate_limit_per_hour"] == 500  # the caller's own limit, not the server's default
    assert key["current"] is False and key["revoked_at"] is None

    used = await client.get("/api/v1/account", headers=bearer(key["key"]))
    assert used.status_code == 200 and used.json()["id"] == account.id

    listed = (await client.get("/v1/account/keys", headers=account.headers)).json()["data"]
    assert [entry["id"] for entry in listed] == [account.key_id, key["id"]]
    assert all("key" not in entry for entry in listed)
    mine = listed[0]
    assert mine["current"] is True
    assert mine["requests_this_hour"] >= 1  # this very listing counts
    assert listed[1]["requests_this_hour"] == 1 and listed[1]["last_used_at"] is not None


async def test_a_new_key_cannot_exceed_the_callers_limit(
    client: httpx.AsyncClient, make_account: Callable[..., Awaitable[TestAccount]]
) -> None:
    account = await make_account(rate_limit_per_hour=100)
    refused = await client.post(KEYS, json={"rate_limit_per_hour": 101}, headers=account.headers)
    assert refused.status_code == 400
    assert refused.json()["field"] == "rate_limit_per_hour" and refused.json()["maximum"] == 100
    lower = await client.post(KEYS, json={"rate_limit_per_hour": 10}, headers=account.headers)
    assert lower.status_code == 201 and lower.json()["rate_limit_per_hour"] == 10


async def test_bad_bodies_are_refused_with_nothing_created(
    client: httpx.AsyncClient, make_account: Callable[..., Awaitable[TestAccount]]
) -> None:
    account = await make_account()
    for body in ({"name": 5}, {"rate_limit_per_hour": 0}, {"rate_limit_per_hour": "9"}, {"secret": "x"}):
        answer = await client.post(KEYS, json=body, headers=account.headers)
        assert answer.status_code == 400, body
        assert "error" in answer.json()
    assert len((await client.get(KEYS, headers=account.headers)).json()["data"]) == 1
    assert (await client.post(KEYS, json={})).status_code == 401


async def test_revoking_another_key_needs_no_confirmation(
    client: httpx.AsyncClient, make_account: Callable[..., Awaitable[TestAccount]]
) -> None:
    account = await make_account()
    other = (await client.post(KEYS, json={"name": "other"}, headers=account.headers)).json()
    assert (await client.delete(f"{KEYS}/{other['id']}", headers=account.headers)).status_code == 204
    assert (await client.get("/api/v1/account", headers=bearer(other["key"]))).status_code == 401
    # Revoking it again changes nothing; it is listed only when asked for.
    assert (await client.delete(f"{KEYS}/{other['id']}", headers=account.headers)).status_code == 204
    assert len((await client.get(KEYS, headers=account.headers)).json()["data"]) == 1
    everything = (await client.get(KEYS, params={"include_revoked": "true"}, headers=account.headers)).json()["data"]
    assert [entry["revoked_at"] is not None for entry in everything] == [False, True]


async def test_the_last_key_and_the_calling_key_need_confirmation(
    client: httpx.AsyncClient, make_account: Callable[..., Awaitable[TestAccount]]
) -> None:
    account = await make_account()
    last = await client.delete(f"{KEYS}/{account.key_id}", headers=account.headers)
    assert last.status_code == 409
    assert last.json()["confirm_required"] is True and "last active key" in last.json()["error"]

    second = (await client.post(KEYS, json={"name": "second"}, headers=account.headers)).json()
    itself = await client.delete(f"{KEYS}/{second['id']}", headers=bearer(second["key"]))
    assert itself.status_code == 409 and "making the request" in itself.json()["error"]
    assert (await client.get(KEYS, headers=bearer(second["key"]))).status_code == 200  # still works

    confirmed = await client.delete(f"{KEYS}/{second['id']}", params={"confirm": "true"}, headers=bearer(second["key"]))
    assert confirmed.status_code == 204
    assert (await client.get(KEYS, headers=bearer(second["key"]))).status_code == 401

    final = await client.delete(f"{KEYS}/{account.key_id}", params={"confirm": "true"}, headers=account.headers)
    assert final.status_code == 204
    assert (await client.get(KEYS, headers=account.headers)).status_code == 401


async def test_another_accounts_key_is_not_found(
    client: httpx.AsyncClient, make_account: Callable[..., Awaitable[TestAccount]]
) -> None:
    mine = await make_account()
    theirs = await make_account()
    answer = await client.delete(f"{KEYS}/{theirs.key_id}", params={"confirm": "true"}, headers=mine.headers)
    assert answer.status_code == 404
    assert (await client.get("/api/v1/account", headers=theirs.headers)).status_code == 200
    assert (await client.delete(f"{KEYS}/key_nope", headers=mine.headers)).status_code == 404


async def test_the_routes_are_documented_with_their_models(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    paths = document["paths"]
    assert {"get", "post"} <= set(paths["/api/v1/account/keys"])
    revoke = paths["/api/v1/account/keys/{key_id}"]["delete"]
    assert {"204", "404", "409"} <= set(revoke["responses"])
    assert any(parameter["name"] == "confirm" for parameter in revoke["parameters"])
    created = paths["/api/v1/account/keys"]["post"]["responses"]["201"]["content"]["application/json"]["schema"]
    assert created["$ref"].endswith("/CreatedOwnKey")
    assert "key" in document["components"]["schemas"]["CreatedOwnKey"]["properties"]
    assert "/api/v1/account/usage" in paths and "/api/v1/account/ledger/export" in paths
