"""Output files: served by unguessable URL, or only to their account with HYPEREAL_PRIVATE_FILES."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from hypereal.services import Services
from hypereal.settings import Settings


async def _stored(services: Services, account_id: str) -> str:
    saved = await services.jobs.storage.put(account_id, b"\x89PNG fake", "image/png", "png")
    return saved.url.removeprefix(services.settings.effective_public_url)


async def test_files_are_public_by_url_by_default(
    services: Services, client: httpx.AsyncClient, make_account: Callable[..., Awaitable[Any]]
) -> None:
    owner = await make_account()
    path = await _stored(services, owner.id)
    answer = await client.get(path)
    assert answer.status_code == 200
    assert answer.content == b"\x89PNG fake"
    assert answer.headers["content-type"] == "image/png"
    missing = await client.get(path[:-8] + "xxxx.png")
    assert missing.status_code == 404
    assert missing.json() == {"error": "File not found"}


async def test_private_files_are_served_only_to_their_account(
    make_settings: Callable[..., Settings],
    make_services: Callable[..., Awaitable[Services]],
    make_client: Callable[[Services], httpx.AsyncClient],
    make_account: Callable[..., Awaitable[Any]],
) -> None:
    services = await make_services(make_settings(private_files=True))
    client = make_client(services)
    owner = await make_account(services=services)
    stranger = await make_account(services=services)
    path = await _stored(services, owner.id)

    assert (await client.get(path, headers=owner.headers)).status_code == 200
    refused = await client.get(path, headers=stranger.headers)
    assert refused.status_code == 404
    assert refused.json() == {"error": "File not found"}
    assert (await client.get(path)).status_code == 401
