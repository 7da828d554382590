"""The account service shared by the admin API and the CLI, and the first-run development account."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from hypereal.errors import NotFound, ValidationFailed
from hypereal.services import Services
from hypereal.settings import Settings


async def test_development_account_is_created_once_by_processes_starting_together(
    settings: Settings, make_services: Callable[[Settings], Awaitable[Services]]
) -> None:
    # Three service sets on one database stand in for three servers started at once.
    starting = [await make_services(settings) for _ in range(3)]
    keys = await asyncio.gather(*(services.accounts.ensure_development_account(700) for services in starting))

    created = [key for key in keys if key is not None]
    assert len(created) == 1
    (account,) = await starting[0].accounts.list_accounts()
    assert account.name == "Development" and account.public()["balance"] == 700
    principal = await starting[1].keys.authenticate(created[0])
    assert principal.account_id == account.id
    assert await starting[2].accounts.ensure_development_account(700) is None


async def test_no_development_account_when_accounts_exist(services: Services) -> None:
    await services.accounts.create_account("Operator's first customer", 0)
    assert await services.accounts.ensure_development_account(10_000) is None
    assert len(await services.accounts.list_accounts()) == 1


async def test_account_and_key_validation(services: Services) -> None:
    with pytest.raises(ValidationFailed, match="Name is required"):
        await services.accounts.create_account("   ")
    with pytest.raises(ValidationFailed):
        await services.accounts.create_account("x", -1)
    account = await services.accounts.create_account("  Padded  ", 0)
    assert account.name == "Padded"
    with pytest.raises(ValidationFailed):
        await services.accounts.create_key(account.id, "k", 0)
    record, _ = await services.accounts.create_key(account.id, "  ")
    assert record.name == "default"
    with pytest.raises(NotFound):
        await services.accounts.create_key("acc_missing")
    with pytest.raises(NotFound):
        await services.accounts.revoke_key("key_missing")
