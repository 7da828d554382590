"""API keys: both header forms, refusals, revocation across processes, no secret stored or logged."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event, text

from hypereal.errors import Unauthorized
from hypereal.keys import generate_key, hash_key
from hypereal.services import Services
from hypereal.settings import Settings, load_settings
from hypereal.store.tables import metadata
from tests.conftest import TestAccount, create_test_account

KEY_SHAPE = re.compile(r"^ck_[A-Za-z0-9_-]{32,}$")


def assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401
    body = response.json()
    assert body["error"].startswith("Unauthorized.")
    assert "x-ratelimit-limit" not in response.headers


@contextmanager
def counted_statements(services: Services) -> Iterator[list[str]]:
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    engine = services.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_generated_keys_have_the_documented_shape() -> None:
    keys = {generate_key() for _ in range(100)}
    assert len(keys) == 100
    assert all(KEY_SHAPE.match(key) for key in keys)


async def test_bearer_and_x_api_key_both_authenticate(client: httpx.AsyncClient, make_account: Any) -> None:
    account: TestAccount = await make_account(credits=250, name="Acme")
    for headers in (
        {"Authorization": f"Bearer {account.key}"},
        {"Authorization": f"bearer {account.key}"},
        {"x-api-key": account.key},
    ):
        response = await client.get("/api/v1/account", headers=headers)
        assert response.status_code == 200, headers
        assert response.json() == {"id": account.id, "name": "Acme", "balance": 250}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer ck_" + "x" * 43},
        {"Authorization": "Bearer sk-not-ours"},
        {"x-api-key": ""},
    ],
    ids=["none", "empty-bearer", "basic", "unknown-key", "foreign-key", "empty-x-api-key"],
)
async def test_missing_or_unknown_keys_are_refused(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    for path in ("/api/v1/account", "/v1/account", "/v1/account/ledger"):
        assert_unauthorized(await client.get(path, headers=headers))


async def test_admin_key_is_not_a_user_key(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> None:
    assert_unauthorized(await client.get("/api/v1/account", headers=admin_headers))


async def test_revoked_key_is_refused_on_the_next_request(
    client: httpx.AsyncClient, make_account: Any, admin_headers: dict[str, str]
) -> None:
    account: TestAccount = await make_account()
    other = await make_account()
    assert (await client.get("/api/v1/account", headers=account.headers)).status_code == 200  # now cached

    revoked = await client.delete(f"/api/v1/admin/keys/{account.key_id}", headers=admin_headers)
    assert revoked.status_code == 204
    assert revoked.content == b""

    assert_unauthorized(await client.get("/api/v1/account", headers=account.headers))
    assert_unauthorized(await client.get("/v1/account", headers={"x-api-key": account.key}))
    assert (await client.get("/api/v1/account", headers=other.headers)).status_code == 200
    # Revoking twice is harmless; an unknown key is 404.
    assert (await client.delete(f"/v1/admin/keys/{account.key_id}", headers=admin_headers)).status_code == 204
    missing = await client.delete("/v1/admin/keys/key_missing", headers=admin_headers)
    assert missing.status_code == 404
    assert missing.json() == {"error": "Key not found"}


async def test_revocation_reaches_another_process_with_a_warm_cache(
    settings: Settings,
    make_services: Callable[[Settings], Awaitable[Services]],
    make_client: Callable[[Services], httpx.AsyncClient],
    make_account: Any,
) -> None:
    # Two service sets on one database (and one data dir or one Redis) behave as two processes.
    first = await make_services(settings)
    second = await make_services(settings)
    account: TestAccount = await make_account(services=first)
    first_client, second_client = make_client(first), make_client(second)
    for _ in range(2):
        assert (await second_client.get("/v1/account", headers=account.headers)).status_code == 200

    await first.accounts.revoke_key(account.key_id)
    await _settle_pubsub(second)

    assert_unauthorized(await second_client.get("/v1/account", headers=account.headers))
    assert_unauthorized(await first_client.get("/v1/account", headers=account.headers))


@pytest.mark.postgres
async def test_revocation_reaches_another_process_over_postgres_notify(
    new_postgres_url: Callable[[], str],
    tmp_path: Path,
    make_services: Callable[[Settings], Awaitable[Services]],
    make_client: Callable[[Services], httpx.AsyncClient],
) -> None:
    # PostgreSQL without Redis: revocations travel by LISTEN/NOTIFY.
    settings = load_settings(environ={}, data_dir=tmp_path / "data", database_url=new_postgres_url())
    first = await make_services(settings)
    second = await make_services(settings)
    account = await create_test_account(first)
    second_client = make_client(second)
    assert (await second_client.get("/v1/account", headers=account.headers)).status_code == 200

    await first.accounts.revoke_key(account.key_id)
    await _settle_pubsub(second)

    assert_unauthorized(await second_client.get("/v1/account", headers=account.headers))


async def _settle_pubsub(services: Services) -> None:
    """Across processes on PostgreSQL or Redis, revocation arrives by message: let the listener run."""
    if not services.settings.is_sqlite:
        import asyncio

        for _ in range(100):
            await asyncio.sleep(0.01)
            if not services.keys._cache:
                return


async def test_a_cached_key_costs_no_database_statement(services: Services, make_account: Any) -> None:
    account: TestAccount = await make_account()
    first = await services.keys.authenticate(account.key)
    with counted_statements(services) as statements:
        for _ in range(20):
            assert await services.keys.authenticate(account.key) == first
    assert statements == []


async def test_unknown_keys_are_refused_without_caching_them(services: Services, make_account: Any) -> None:
    stranger = generate_key()
    with pytest.raises(Unauthorized):
        await services.keys.authenticate(stranger)
    # A key created after a failed attempt works at once.
    account: TestAccount = await make_account()
    assert (await services.keys.authenticate(account.key)).account_id == account.id


async def test_last_used_at_is_recorded(services: Services, client: httpx.AsyncClient, make_account: Any) -> None:
    account: TestAccount = await make_account()
    (key,) = await services.accounts.list_keys(account.id)
    assert key.last_used_at is None
    assert (await client.get("/v1/account", headers=account.headers)).status_code == 200
    await services.keys.flush_last_used()
    (key,) = await services.accounts.list_keys(account.id)
    assert key.last_used_at is not None


async def _all_stored_text(services: Services) -> str:
    """Every value of every table, as text."""
    chunks: list[str] = []
    async with services.db.read() as conn:
        for table in metadata.sorted_tables:
            rows = await conn.execute(text(f'SELECT * FROM "{table.name}"'))
            chunks.extend(repr(tuple(row)) for row in rows)
    return "\n".join(chunks)


def _database_files(settings: Settings) -> list[Path]:
    if not settings.is_sqlite:
        return []
    database = Path(settings.effective_database_url.split(":///", 1)[1])
    return [path for path in database.parent.glob(database.name + "*") if path.is_file()]


async def test_keys_are_stored_only_as_hashes_and_never_logged(
    services: Services,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    created = await client.post(
        "/api/v1/admin/accounts", json={"name": "Secretive", "credits": 300}, headers=admin_headers
    )
    account_id = created.json()["id"]
    raw_keys: list[str] = []
    for name in ("one", "two"):
        made = await client.post(f"/v1/admin/accounts/{account_id}/keys", json={"name": name}, headers=admin_headers)
        raw_keys.append(made.json()["key"])
    for key in raw_keys:
        assert (await client.get("/v1/account", headers={"x-api-key": key})).status_code == 200
        assert (await client.get("/v1/nowhere", headers={"Authorization": f"Bearer {key}"})).status_code == 404
    first_key_id = (await services.accounts.list_keys(account_id))[0].id
    await client.delete(f"/v1/admin/keys/{first_key_id}", headers=admin_headers)
    assert_unauthorized(await client.get("/v1/account", headers={"x-api-key": raw_keys[0]}))
    await services.keys.flush_last_used()

    stored = await _all_stored_text(services)
    files = b"".join(path.read_bytes() for path in _database_files(services.settings))
    logged = caplog.text + "\n".join(str(record.__dict__) for record in caplog.records)
    for key in raw_keys:
        assert hash_key(key) in stored  # the rows are really there
        assert key not in stored
        assert key[len("ck_") :] not in stored
        assert key.encode() not in files
        assert key not in logged
    assert services.settings.admin_key is not None
    assert services.settings.admin_key.get_secret_value() not in logged
