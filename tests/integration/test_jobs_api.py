"""The job endpoints over HTTP on SQLite and PostgreSQL: bad input costs nothing, 402 leaves
nothing, tenancy, listing and filters, canceling, and the built-in local models end to end."""

from __future__ import annotations

import asyncio
import importlib.util
import io
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import event

from hypereal.errors import InsufficientCredits
from hypereal.jobs.engine import Submission
from hypereal.keys import Principal
from hypereal.store.jobs import Job
from hypereal.store.ledger import CHARGE, REFUND
from tests.conftest import ADMIN_HEADERS, Server, TestAccount, free_port
from tests.integration.jobs_support import (
    IMAGE_PRICE,
    PNG_1PX,
    VIDEO_PRICE,
    FileServer,
    Stack,
    StackFactory,
    all_jobs,
    credits,
    job_row,
    net_of,
    rows_for,
    wait_for,
    write_catalog,
)


@pytest.fixture
async def stack(make_stack: StackFactory) -> Stack:
    return await make_stack()


@pytest.fixture
async def files() -> AsyncIterator[FileServer]:
    server = await FileServer(
        {
            "/cat.png": (PNG_1PX, "image/png"),
            "/text.png": (b"this is not an image at all\n", "image/png"),
            "/page.html": (b"<html><body>hello</body></html>", "text/html"),
        }
    ).start()
    yield server
    await server.close()


def assert_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str), body
    assert "detail" not in body and "Traceback" not in response.text
    message: str = body["error"]
    return message


async def ledger_state(stack: Stack, account: TestAccount) -> tuple[int, list[int]]:
    return await stack.balance(account), [entry.id for entry in await stack.ledger(account)]


# ---------------------------------------------------------------- bad input


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}/gone.png"


BAD_VIDEO_BODIES: list[tuple[str, dict[str, Any] | bytes, str]] = [
    ("missing model", {"input": {"prompt": "x"}}, "Model is required"),
    ("model not a string", {"model": 7, "input": {"prompt": "x"}}, "Model must be a string"),
    (
        "image model on the video endpoint",
        {"model": "test-image", "input": {"prompt": "x"}},
        "Model 'test-image' is a image model; use POST /api/v1/images/generate",
    ),
    ("missing prompt", {"model": "test-video", "input": {}}, "input.prompt is required"),
    ("blank prompt", {"model": "test-video", "input": {"prompt": "  "}}, "input.prompt is required"),
    ("input not an object", {"model": "test-video", "input": "a cat"}, "Input must be an object"),
    (
        "value outside the enum",
        {"model": "test-video", "input": {"prompt": "x", "outcome": "maybe"}},
        "input.outcome must be one of: complete, fail, reject, never",
    ),
    (
        "number above the maximum",
        {"model": "test-video", "input": {"prompt": "x", "seconds": 121}},
        "input.seconds must be at most 120",
    ),
    (
        "number below the minimum",
        {"model": "test-video", "input": {"prompt": "x", "seconds": -1}},
        "input.seconds must be at least 0",
    ),
    (
        "text for a number",
        {"model": "test-video", "input": {"prompt": "x", "polls": "many"}},
        "input.polls must be a number",
    ),
    (
        "fraction for an integer",
        {"model": "test-video", "input": {"prompt": "x", "polls": 1.5}},
        "input.polls must be an integer",
    ),
    ("number for a string", {"model": "test-video", "input": {"prompt": 5}}, "input.prompt must be a string"),
    (
        "too long a string",
        {"model": "test-video", "input": {"prompt": "x" * 501}},
        "input.prompt is longer than 500 characters",
    ),
    (
        "unknown mode",
        {"model": "test-video", "mode": "slow", "input": {"prompt": "x"}},
        "Mode must be 'auto' or 'fast'",
    ),
    (
        "webhook that is not http",
        {"model": "test-video", "webhook_url": "ftp://example.com/hook", "input": {"prompt": "x"}},
        "webhook_url must be an http(s) URL",
    ),
    (
        "image that is not a URL",
        {"model": "test-video", "input": {"prompt": "x", "image": "cat.png"}},
        "input.image must be an http(s) URL or a data: URI",
    ),
    (
        "image at a private address",
        {"model": "test-video", "input": {"prompt": "x", "image": "http://10.0.0.1/x.png"}},
        "Could not fetch http://10.0.0.1/x.png: address 10.0.0.1 is not public",
    ),
    (
        "image at a link-local address",
        {"model": "test-video", "input": {"prompt": "x", "image": "http://169.254.169.254/latest"}},
        "address 169.254.169.254 is not public",
    ),
    (
        "data URI that is not an image",
        {"model": "test-video", "input": {"prompt": "x", "image": "data:image/png;base64,aGVsbG8gd29ybGQ="}},
        "Could not fetch",
    ),
    (
        "webhook at a private address",
        {"model": "test-video", "webhook_url": "http://192.168.1.10/hook", "input": {"prompt": "x"}},
        "address 192.168.1.10 is not public",
    ),
    ("malformed JSON", b'{"model": "test-video", "input": {', "Request body is not valid JSON"),
    ("a JSON list", b'["test-video"]', "Request body must be a JSON object"),
]


async def test_bad_video_requests_are_400_and_cost_nothing(stack: Stack) -> None:
    # One stack for every case: the cases share nothing but the account, whose ledger must not move.
    account = await stack.account(credits=100)
    before = await ledger_state(stack, account)

    for case, body, message in BAD_VIDEO_BODIES:
        if isinstance(body, bytes):
            headers = {**account.headers, "Content-Type": "application/json"}
            response = await stack.client.post("/api/v1/videos/generate", content=body, headers=headers)
        else:
            response = await stack.client.post("/api/v1/videos/generate", json=body, headers=account.headers)
        assert message in assert_error(response, 400), case

    assert await ledger_state(stack, account) == before
    assert await all_jobs(stack.services) == []


async def test_an_unknown_model_is_404_names_the_closest_and_costs_nothing(stack: Stack) -> None:
    account = await stack.account(credits=100)
    before = await ledger_state(stack, account)
    body = {"model": "test-vidoe", "input": {"prompt": "x"}}
    response = await stack.client.post("/api/v1/videos/generate", json=body, headers=account.headers)
    message = assert_error(response, 404)
    assert message.startswith("Unknown model 'test-vidoe' for video. Did you mean 'test-video'")
    assert await ledger_state(stack, account) == before


BAD_IMAGE_BODIES: list[tuple[str, dict[str, Any], str]] = [
    (
        "video model on the image endpoint",
        {"model": "test-video", "prompt": "x"},
        "Model 'test-video' is a video model; use POST /api/v1/videos/generate",
    ),
    ("chat model on the image endpoint", {"model": "gpt-4o-mini", "prompt": "x"}, "use POST /api/v1/chat/completions"),
    ("missing prompt", {"model": "test-image"}, "Prompt is required"),
    ("too many images", {"model": "test-image", "prompt": "x", "images": ["data:,a"] * 3}, "at most 2 items"),
    (
        "loopback image without an allow list",
        {"model": "test-image", "prompt": "x", "images": ["http://127.0.0.1/x.png"]},
        "address 127.0.0.1 is not public (allow with HYPEREAL_OUTBOUND_ALLOW)",
    ),
    (
        "localhost image without an allow list",
        {"model": "test-image", "prompt": "x", "images": ["http://localhost:9/x.png"]},
        "localhost is a loopback name",
    ),
]


async def test_bad_image_requests_are_400_and_cost_nothing(stack: Stack) -> None:
    account = await stack.account(credits=100)
    before = await ledger_state(stack, account)

    for case, body, message in BAD_IMAGE_BODIES:
        response = await stack.client.post("/api/v1/images/generate", json=body, headers=account.headers)
        assert message in assert_error(response, 400), case

    assert await ledger_state(stack, account) == before
    assert await all_jobs(stack.services) == []


async def test_inputs_from_an_allowed_local_server_are_fetched_and_checked(
    make_stack: StackFactory, files: FileServer
) -> None:
    stack = await make_stack(outbound_allow="127.0.0.1/32")
    account = await stack.account(credits=100)
    before = await ledger_state(stack, account)

    async def post_image(url: str) -> httpx.Response:
        body = {"model": "test-image", "prompt": "x", "images": [url]}
        return await stack.client.post("/api/v1/images/generate", json=body, headers=account.headers)

    refused = {
        files.base + "/text.png": "the bytes are not a supported image format",
        files.base + "/page.html": "Could not fetch",
        files.base + "/missing.png": "Could not fetch",
        closed_port_url(): "Could not fetch",
        "http://10.0.0.1/x.png": "address 10.0.0.1 is not public",
    }
    for url, message in refused.items():
        assert message in assert_error(await post_image(url), 400), url
    assert await ledger_state(stack, account) == before
    assert await all_jobs(stack.services) == []

    # The same server with a real image is accepted, charged and served.
    accepted = await post_image(files.base + "/cat.png")
    assert accepted.status_code == 200, accepted.text
    assert await stack.balance(account) == credits(100 - IMAGE_PRICE)


async def test_402_when_the_balance_is_too_low_leaves_no_job(stack: Stack) -> None:
    account = await stack.account(credits=VIDEO_PRICE - 1)
    before = await ledger_state(stack, account)

    response = await stack.submit_video(account)

    assert response.status_code == 402, response.text
    body = response.json()
    assert body["required"] == VIDEO_PRICE and body["available"] == VIDEO_PRICE - 1
    assert await ledger_state(stack, account) == before
    assert await all_jobs(stack.services) == []
    listed = await stack.client.get("/api/v1/jobs", headers=account.headers)
    assert listed.json()["data"] == []


async def test_submissions_arriving_together_share_a_commit_and_stop_at_the_balance(stack: Stack) -> None:
    """On SQLite the submissions that arrive in one turn of the loop commit together, each in a
    savepoint of its own: those the balance covers are made, the others refused and undone."""
    account = await stack.account(credits=3 * VIDEO_PRICE)
    principal = Principal(key_id=account.key_id, account_id=account.id, rate_limit_per_hour=None)
    submission = Submission(stack.services.catalog.models["test-video"], {"prompt": "together"}, "auto", None)
    statements: list[str] = []
    if stack.services.db.is_sqlite:
        stack.services.db._inline_connection().set_trace_callback(statements.append)

    outcomes = await asyncio.gather(
        *(stack.services.jobs.submit(principal, submission) for _ in range(5)), return_exceptions=True
    )

    made = {outcome.id for outcome in outcomes if isinstance(outcome, Job)}
    assert len(made) == 3
    assert sum(isinstance(outcome, InsufficientCredits) for outcome in outcomes) == 2
    assert {job.id for job in await all_jobs(stack.services)} == made
    if stack.services.db.is_sqlite:
        assert statements.count("BEGIN IMMEDIATE") == statements.count("COMMIT") == 1
    assert await stack.balance(account) == 0


# ---------------------------------------------------------------- tenancy and listing


async def test_another_account_cannot_see_or_touch_a_job(stack: Stack) -> None:
    owner = await stack.account(credits=100, name="A")
    other = await stack.account(credits=100, name="B")
    job_id = (await stack.submit_video(owner, outcome="never", polls=1)).json()["jobId"]
    own_job = (await stack.submit_video(other)).json()["jobId"]

    for method, path in [
        ("GET", f"/api/v1/jobs/{job_id}"),
        ("GET", f"/v1/jobs/{job_id}?model=test-video&type=video"),
        ("POST", f"/api/v1/jobs/{job_id}/cancel"),
        ("GET", f"/api/v1/jobs/{job_id}/deliveries"),
        ("POST", f"/api/v1/jobs/{job_id}/deliveries/retry"),
    ]:
        response = await stack.client.request(method, path, headers=other.headers)
        assert assert_error(response, 404) == "Job not found", (method, path)

    listed = await stack.client.get("/api/v1/jobs", headers=other.headers)
    assert [job["jobId"] for job in listed.json()["data"]] == [own_job]
    # Nothing B did reached A's job or A's money.
    assert (await stack.job(owner, job_id))["status"] == "processing"
    assert not (await job_row(stack.services, job_id)).cancel_requested
    assert await stack.balance(owner) == credits(100 - VIDEO_PRICE)
    assert (
        await stack.client.get(f"/api/v1/jobs/{job_id}", headers={"Authorization": "Bearer nope"})
    ).status_code == 401


async def test_private_files_are_served_only_to_their_account(make_stack: StackFactory) -> None:
    stack = await make_stack(private_files=True)
    owner = await stack.account(credits=100, name="A")
    other = await stack.account(credits=100, name="B")
    job_id = (await stack.submit_video(owner)).json()["jobId"]
    path = urlsplit((await stack.wait_done(owner, job_id))["outputUrl"]).path

    mine = await stack.client.get(path, headers=owner.headers)
    assert mine.status_code == 200 and mine.content == f"output of {job_id}\n".encode()
    assert assert_error(await stack.client.get(path, headers=other.headers), 404) == "File not found"
    assert (await stack.client.get(path)).status_code == 401
    assert assert_error(await stack.client.get(path + "x", headers=owner.headers), 404) == "File not found"


async def test_jobs_are_listed_newest_first_and_filtered(stack: Stack) -> None:
    account = await stack.account(credits=200)
    completed_video = (await stack.submit_video(account)).json()["jobId"]
    await stack.wait_done(account, completed_video)
    failed_video = (await stack.submit_video(account, outcome="fail")).json()["jobId"]
    await stack.wait_done(account, failed_video)
    image = await stack.client.post(
        "/api/v1/images/generate", json={"model": "test-image", "prompt": "x"}, headers=account.headers
    )
    image_job = image.json()["resultId"]
    running = (await stack.submit_video(account, outcome="never")).json()["jobId"]

    async def listed(query: str = "") -> list[str]:
        response = await stack.client.get(f"/api/v1/jobs{query}", headers=account.headers)
        assert response.status_code == 200, response.text
        return [job["jobId"] for job in response.json()["data"]]

    assert await listed() == [running, image_job, failed_video, completed_video]
    assert await listed("?status=failed") == [failed_video]
    assert await listed("?status=completed") == [image_job, completed_video]
    assert await listed("?status=processing") == [running]
    assert await listed("?type=image") == [image_job]
    assert await listed("?model=test-video") == [running, failed_video, completed_video]
    assert await listed("?status=completed&type=video") == [completed_video]
    assert await listed("?model=test-audio") == []

    first = (await stack.client.get("/api/v1/jobs?limit=3", headers=account.headers)).json()
    assert [job["jobId"] for job in first["data"]] == [running, image_job, failed_video]
    assert first["has_more"] is True
    rest = await listed(f"?limit=3&before={first['next_cursor']}")
    assert rest == [completed_video]

    view = (await stack.client.get("/api/v1/jobs?status=failed", headers=account.headers)).json()["data"][0]
    assert view["status"] == "failed" and view["error"] == "Scripted failure" and view["type"] == "video"
    assert_error(await stack.client.get("/api/v1/jobs?status=lost", headers=account.headers), 400)


async def test_polling_a_job_writes_nothing(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)  # no worker: every statement seen is the API's
    account = await stack.account(credits=100)
    job_id = (await stack.submit_video(account)).json()["jobId"]
    await stack.job(account, job_id)  # warm the key cache
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement.lstrip().split(None, 1)[0].upper())

    engine = stack.services.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        for _ in range(20):
            assert (await stack.job(account, job_id))["status"] == "processing"
    finally:
        event.remove(engine, "before_cursor_execute", record)

    assert statements.count("SELECT") >= 20
    assert not {"INSERT", "UPDATE", "DELETE"} & set(statements), statements


# ---------------------------------------------------------------- canceling


async def test_a_queued_job_is_canceled_and_refunded(make_stack: StackFactory) -> None:
    stack = await make_stack(worker=False)
    account = await stack.account(credits=100)
    job_id = (await stack.submit_video(account)).json()["jobId"]
    assert (await stack.job(account, job_id))["stage"] == "queued"

    response = await stack.client.post(f"/api/v1/jobs/{job_id}/cancel", headers=account.headers)

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "canceled"
    assert (await stack.job(account, job_id))["status"] == "canceled"
    entries = await stack.ledger(account)
    assert len(rows_for(entries, job_id, REFUND)) == 1
    assert net_of(entries, job_id) == 0
    again = await stack.client.post(f"/api/v1/jobs/{job_id}/cancel", headers=account.headers)
    assert "already canceled" in assert_error(again, 409)
    assert len(rows_for(await stack.ledger(account), job_id, REFUND)) == 1
    assert await stack.balance(account) == credits(100)


async def test_a_running_job_with_a_handle_is_canceled_upstream_and_refunded_once(stack: Stack) -> None:
    account = await stack.account(credits=100)
    job_id = (await stack.submit_video(account, outcome="never", polls=1)).json()["jobId"]

    async def handed_over() -> bool:
        return (await job_row(stack.services, job_id)).handle is not None

    await wait_for(handed_over, what="the upstream handle")

    response = await stack.client.post(f"/api/v1/jobs/{job_id}/cancel", headers=account.headers)

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "canceled"
    assert job_id in stack.services.jobs.providers.media("scripted").canceled
    assert stack.worker is not None
    await stack.worker.sweep()
    entries = await stack.ledger(account)
    assert len(rows_for(entries, job_id, CHARGE)) == 1
    assert len(rows_for(entries, job_id, REFUND)) == 1
    assert net_of(entries, job_id) == 0
    assert (await stack.job(account, job_id))["status"] == "canceled"


async def test_a_job_canceled_mid_submission_is_refunded_when_the_provider_returns(stack: Stack) -> None:
    account = await stack.account(credits=100)
    job_id = (await stack.submit_video(account, seconds=1.0)).json()["jobId"]

    async def submitting() -> bool:
        return (await job_row(stack.services, job_id)).stage == "submitting"

    await wait_for(submitting, what="the provider to start")

    response = await stack.client.post(f"/api/v1/jobs/{job_id}/cancel", headers=account.headers)

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "processing" and response.json()["cancelRequested"] is True
    done = await stack.wait_done(account, job_id)
    assert done["status"] == "canceled" and done["outputUrl"] is None
    entries = await stack.ledger(account)
    assert len(rows_for(entries, job_id, REFUND)) == 1
    assert await stack.balance(account) == credits(100)


# ---------------------------------------------------------------- a real server process


def test_hypereal_serve_runs_jobs_in_process_and_serves_outputs_at_its_own_address(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    server = start_server(env={"HYPEREAL_CATALOG": str(write_catalog(tmp_path))}, worker=True)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        account = http.post("/api/v1/admin/accounts", json={"name": "served", "credits": 100}, headers=ADMIN_HEADERS)
        made = http.post(f"/api/v1/admin/accounts/{account.json()['id']}/keys", json={}, headers=ADMIN_HEADERS)
        headers = {"Authorization": f"Bearer {made.json()['key']}"}

        image = http.post("/v1/images/generate", json={"model": "test-image", "prompt": "x"}, headers=headers)
        assert image.status_code == 200, image.text
        url = image.json()["data"][0]["url"]
        assert url.startswith(server.url + "/files/")
        assert http.get(url).content == f"output of {image.json()['resultId']}\n".encode()

        video = http.post(
            "/v1/videos/generate", json={"model": "test-video", "input": {"prompt": "x"}}, headers=headers
        )
        assert video.status_code == 202, video.text
        poll_url = video.json()["pollUrl"]
        assert poll_url.startswith(server.url + "/api/v1/jobs/")
        deadline = time.monotonic() + 30
        while (view := http.get(poll_url, headers=headers).json())["status"] == "processing":
            assert time.monotonic() < deadline, view
            time.sleep(0.05)
        assert view["status"] == "completed"
        balance = http.get("/v1/account", headers=headers).json()["balance"]
        assert balance == 100 - IMAGE_PRICE - VIDEO_PRICE


# ---------------------------------------------------------------- the local models


async def test_local_image_through_the_api_serves_a_png_of_the_requested_size(stack: Stack) -> None:
    from PIL import Image

    account = await stack.account(credits=100)
    body = {"model": "local-image", "prompt": "a red boat at sea", "aspect_ratio": "16:9", "resolution": "512"}

    response = await stack.client.post("/api/v1/images/generate", json=body, headers=account.headers)

    assert response.status_code == 200, response.text
    answer = response.json()
    url = answer["data"][0]["url"]
    assert answer["data"][0]["model"] == "local-image"
    path = urlsplit(url).path
    assert path.startswith("/files/") and path.endswith(".png")
    served = await stack.client.get(path)
    assert served.status_code == 200
    assert served.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(served.content)) as image:
        assert image.format == "PNG"
        assert image.size == (512, 288)
    assert await stack.balance(account) == credits(100 - answer["creditsUsed"])


@pytest.mark.skipif(
    importlib.util.find_spec("hypereal.providers.local.speech") is None, reason="this build has no local speech model"
)
async def test_local_tts_through_the_api_serves_audio(stack: Stack) -> None:
    account = await stack.account(credits=100)
    body = {"model": "local-tts", "input": {"text": "Hello there. (happy) What a day!", "format": "wav"}}

    response = await stack.client.post("/api/v1/audio/generate", json=body, headers=account.headers)

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["success"] is True
    served = await stack.client.get(urlsplit(answer["outputUrl"]).path)
    assert served.status_code == 200
    assert served.content[:4] == b"RIFF" and served.content[8:12] == b"WAVE"
    assert len(served.content) > 10_000
    assert await stack.balance(account) == credits(100 - answer["creditsUsed"])
