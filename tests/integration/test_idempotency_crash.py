"""`Idempotency-Key` when the API process answering is killed (SIGKILL) mid-request, on SQLite and
PostgreSQL: its claim lapses within seconds, and the client's retry on another process gets
the job the dead one made, or makes it, once and charged once, instead of 409 "still in
progress" for ten minutes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from sqlalchemy import select

from hypereal.api.idempotency import CLAIM_SECONDS
from hypereal.services import Services
from hypereal.settings import Settings
from hypereal.store.ledger import CHARGE
from hypereal.store.tables import idempotency_keys
from tests.conftest import Server, TestAccount, launch_server
from tests.integration.jobs_support import (
    IMAGE_PRICE,
    PNG_1PX,
    VIDEO_PRICE,
    Stack,
    all_jobs,
    credits,
    start_stack,
    wait_for,
    worker_environment,
)

pytestmark = pytest.mark.slow
TAKEOVER_SECONDS = CLAIM_SECONDS + 20
"""The claim's lapse and a loaded machine; far less than the ten minutes a claim used to hold."""


@pytest.fixture
async def stack(
    tmp_path: Path,
    make_settings: Callable[..., Settings],
    make_services: Callable[[Settings], Awaitable[Services]],
    make_client: Callable[[Services], httpx.AsyncClient],
) -> Stack:
    # In this process only to read the database; requests go to `hypereal serve` processes.
    return await start_stack(
        tmp_path, make_settings, make_services, make_client, worker=False, outbound_allow="127.0.0.1/32"
    )


@pytest.fixture
def servers(tmp_path: Path, stack: Stack) -> Iterator[Callable[..., Awaitable[Server]]]:
    """Starts `hypereal serve` processes on the stack's database; all stopped at the end."""
    started: list[Server] = []

    async def start(worker: bool = False) -> Server:
        env = worker_environment(stack.settings)
        server = await asyncio.to_thread(launch_server, tmp_path, env, stack.settings.data_dir, (), worker=worker)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


class SlowInput:
    """Serves a PNG, but the first request waits until `release` is set (an input fetch that hangs)."""

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.release = asyncio.Event()
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        if not self.requested.is_set():
            self.requested.set()
            await self.release.wait()
        return web.Response(body=PNG_1PX, headers={"Content-Type": "image/png"})

    async def start(self) -> SlowInput:
        app = web.Application()
        app.router.add_get("/slow.png", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/slow.png"
        return self

    async def close(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def slow_input() -> AsyncIterator[SlowInput]:
    server = await SlowInput().start()
    yield server
    await server.close()


def kill(server: Server) -> None:
    server.process.kill()
    server.process.wait(timeout=10)


async def claim_of(stack: Stack, account: TestAccount, key: str) -> Any:
    async with stack.services.db.read() as conn:
        query = select(idempotency_keys).where(
            idempotency_keys.c.account_id == account.id, idempotency_keys.c.key == key
        )
        return (await conn.execute(query)).first()


async def retry(http: httpx.AsyncClient, url: str, body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
    """Retry as a client does while told the request is still in progress."""

    async def answered() -> httpx.Response | None:
        answer = await http.post(url, json=body, headers=headers)
        in_progress = answer.status_code == 409 and "still in progress" in answer.text
        return None if in_progress else answer

    found: httpx.Response = await wait_for(answered, TAKEOVER_SECONDS, interval=0.5, what="the retry to be answered")
    return found


async def charges(stack: Stack, account: TestAccount) -> int:
    return len([entry for entry in await stack.ledger(account) if entry.kind == CHARGE])


async def test_a_retry_after_the_process_died_fetching_the_input_makes_the_job_once(
    stack: Stack, servers: Callable[..., Awaitable[Server]], slow_input: SlowInput
) -> None:
    account = await stack.account(credits=100)
    first, second = await servers(), await servers()
    body = {"model": "test-video", "input": {"prompt": "a key", "image": slow_input.url}}
    headers = {**account.headers, "Idempotency-Key": "killed-fetching"}

    async with httpx.AsyncClient(timeout=60) as http:
        pending = asyncio.ensure_future(http.post(first.url + "/api/v1/videos/generate", json=body, headers=headers))
        await asyncio.wait_for(slow_input.requested.wait(), 30)
        claimed = await claim_of(stack, account, "killed-fetching")
        assert claimed is not None and claimed.status_code is None and claimed.job_id
        kill(first)  # mid-request: the input is still being fetched, no job made, nothing charged
        with contextlib.suppress(httpx.TransportError):
            await pending
        assert await all_jobs(stack.services) == []
        slow_input.release.set()

        answer = await retry(http, second.url + "/api/v1/videos/generate", body, headers)

    assert answer.status_code == 202, answer.text
    assert answer.json()["jobId"] == claimed.job_id
    assert [job.id for job in await all_jobs(stack.services)] == [claimed.job_id]
    assert await charges(stack, account) == 1
    assert await stack.balance(account) == credits(100 - VIDEO_PRICE)
    replayed = await asyncio.to_thread(
        httpx.post, second.url + "/api/v1/videos/generate", json=body, headers=headers, timeout=30
    )
    assert replayed.headers.get("idempotent-replayed") == "true" and replayed.json() == answer.json()


async def test_a_retry_after_the_process_died_waiting_for_its_job_gets_that_job(
    stack: Stack, servers: Callable[..., Awaitable[Server]]
) -> None:
    account = await stack.account(credits=100)
    # The first answers synchronously and has no worker; the second's worker runs the job.
    first, second = await servers(), await servers(worker=True)
    body = {"model": "test-image", "prompt": "a key", "seconds": 3}
    headers = {**account.headers, "Idempotency-Key": "killed-waiting"}

    async with httpx.AsyncClient(timeout=60) as http:
        pending = asyncio.ensure_future(http.post(first.url + "/api/v1/images/generate", json=body, headers=headers))
        made = await wait_for(lambda: all_jobs(stack.services), 30, what="the first process to make the job")
        claimed = await claim_of(stack, account, "killed-waiting")
        assert claimed.status_code is None and [job.id for job in made] == [claimed.job_id]
        kill(first)  # mid-request: the job made and charged, the answer never stored
        with contextlib.suppress(httpx.TransportError):
            await pending

        answer = await retry(http, second.url + "/api/v1/images/generate", body, headers)

    assert answer.status_code == 200, answer.text
    assert answer.json()["jobId"] == claimed.job_id and answer.json()["data"]
    assert [job.id for job in await all_jobs(stack.services)] == [claimed.job_id]
    assert await charges(stack, account) == 1
    assert await stack.balance(account) == credits(100 - IMAGE_PRICE)
