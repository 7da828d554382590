"""Media jobs fail over: an upstream that refuses the submission or fails the job before it
produced anything hands it to the next route of its plan, once per route, charged once and
settled at the price of the route that served it.

`scripted-down` is a scripted provider that fails every job (`options: {outcome: fail}`):
at submission, or at its last poll when the request asks for polls.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from hypereal.jobs.worker import Worker
from hypereal.services import Services
from hypereal.settings import Settings
from tests.integration.jobs_support import Stack, net_of, rows_for
from tests.integration.jobs_support import credits as millicredits

PARAMS = """
    params:
      prompt: {type: string, required: true}
      polls: {type: integer, minimum: 0, maximum: 10}
    pricing: {per_call: 10, fast_surcharge_percent: 50}
"""
CATALOG = f"""
providers:
  scripted: {{type: scripted}}
  scripted-down: {{type: scripted, options: {{outcome: fail}}}}
  scripted-down-too: {{type: scripted, options: {{outcome: fail}}}}
models:
  - id: fo-video
    category: video
    name: Fails over
{PARAMS}
    routes: [{{provider: scripted-down, model: one}}, {{provider: scripted, model: two}}]
  - id: fo-fast
    category: video
    name: Fast route down
{PARAMS}
    routes: [{{provider: scripted-down, model: one, modes: [fast]}}, {{provider: scripted, model: two, modes: [auto]}}]
  - id: fo-image
    category: image
    name: Image, first route down
{PARAMS}
    routes: [{{provider: scripted-down, model: one}}, {{provider: scripted, model: two}}]
  - id: fo-dead
    category: video
    name: Every route down
{PARAMS}
    routes: [{{provider: scripted-down, model: one}}, {{provider: scripted-down-too, model: two}}]
"""


@pytest.fixture
async def stack(
    tmp_path: Path,
    make_settings: Callable[..., Settings],
    make_services: Callable[[Settings], Awaitable[Services]],
    make_client: Callable[[Services], httpx.AsyncClient],
) -> Stack:
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(CATALOG)
    settings = make_settings(catalog=catalog)
    services = await make_services(settings)
    worker = Worker(services.jobs, 2)
    worker.start()
    services.extensions["test-worker"] = _Stop(worker)
    return Stack(settings, services, make_client(services), worker)


class _Stop:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    async def close(self) -> None:
        await self.worker.stop()


async def submit(stack: Stack, headers: dict[str, str], model: str, polls: int, **extra: Any) -> str:
    body = {"model": model, "input": {"prompt": "a test", "polls": polls}, **extra}
    answer = await stack.client.post("/api/v1/videos/generate", json=body, headers=headers)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["jobId"])


@pytest.mark.parametrize("polls", [0, 1], ids=["refused-on-submit", "failed-while-running"])
async def test_a_job_fails_over_once_and_is_charged_once(stack: Stack, polls: int) -> None:
    account = await stack.account(credits=100)
    job_id = await submit(stack, account.headers, "fo-video", polls)

    job = await stack.wait_done(account, job_id)
    assert job["status"] == "completed", job
    assert job["provider"] == "scripted"
    assert job["tried"] == [{"provider": "scripted-down", "model": "one", "error": "Scripted failure"}]
    entries = await stack.ledger(account)
    assert [entry.kind for entry in rows_for(entries, job_id)] == ["charge", "settle"]
    assert net_of(entries, job_id) == millicredits(10)
    routes = {route.key: route for route in stack.services.router.health}
    assert routes["scripted-down/one"].errors == 1 and routes["scripted/two"].errors == 0


async def test_a_fast_job_served_on_an_auto_route_pays_the_auto_price(stack: Stack) -> None:
    account = await stack.account(credits=100)
    job_id = await submit(stack, account.headers, "fo-fast", 1, mode="fast")
    charged = rows_for(await stack.ledger(account), job_id, "charge")
    assert [entry.amount for entry in charged] == [-millicredits(15)], "the fast route's price, surcharged"

    job = await stack.wait_done(account, job_id)
    assert job["status"] == "completed" and job["provider"] == "scripted" and job["creditsUsed"] == 10
    assert net_of(await stack.ledger(account), job_id) == millicredits(10)


async def test_a_job_goes_to_each_route_once_then_fails_refunded(stack: Stack) -> None:
    account = await stack.account(credits=100)
    job_id = await submit(stack, account.headers, "fo-dead", 1)

    job = await stack.wait_done(account, job_id)
    assert job["status"] == "failed" and job["error"] == "Scripted failure"
    assert job["provider"] == "scripted-down-too"
    assert [entry["provider"] for entry in job["tried"]] == ["scripted-down"]
    assert net_of(await stack.ledger(account), job_id) == 0
    assert await stack.balance(account) == millicredits(100)


async def test_preferences_steer_a_job_and_are_kept_with_it(stack: Stack) -> None:
    account = await stack.account(credits=100)
    job_id = await submit(stack, account.headers, "fo-video", 0, provider={"ignore": ["scripted-down"]})
    job = await stack.wait_done(account, job_id)
    assert job["status"] == "completed" and job["provider"] == "scripted" and "tried" not in job

    refused = await stack.client.post(
        "/api/v1/videos/generate",
        json={"model": "fo-video", "input": {"prompt": "p"}, "provider": {"only": ["nobody"]}},
        headers=account.headers,
    )
    assert refused.status_code == 400 and refused.json()["field"] == "provider.only"
    assert await stack.balance(account) == millicredits(90), "nothing charged for the refusal"


async def test_a_synchronous_answer_says_what_was_tried(stack: Stack) -> None:
    account = await stack.account(credits=100)
    answer = await stack.client.post(
        "/api/v1/images/generate", json={"model": "fo-image", "prompt": "a cat"}, headers=account.headers
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["provider"] == "scripted" and body["creditsUsed"] == 10
    assert body["tried"] == [{"provider": "scripted-down", "model": "one", "error": "Scripted failure"}]
