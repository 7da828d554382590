"""Job outputs in S3-compatible storage (HYPEREAL_STORAGE=s3), against a local moto server."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from hypereal.services import Services
from hypereal.settings import Settings
from hypereal.storage import S3Storage
from hypereal.store.tables import jobs
from tests.integration.jobs_support import start_stack

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

BUCKET = "job-outputs"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    boto3.client(
        "s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    ).create_bucket(Bucket=BUCKET)
    try:
        yield url
    finally:
        server.stop()


async def test_outputs_go_to_the_bucket_and_urls_are_made_when_read(
    endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    make_settings: Callable[..., Settings],
    make_services: Callable[[Settings], Awaitable[Services]],
    make_client: Callable[[Services], httpx.AsyncClient],
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    stack = await start_stack(
        tmp_path, make_settings, make_services, make_client, storage="s3", s3_bucket=BUCKET, s3_endpoint_url=endpoint
    )
    assert isinstance(stack.services.jobs.storage, S3Storage)
    account = await stack.account()

    submitted = await stack.submit_video(account)
    assert submitted.status_code == 202, submitted.text
    job = await stack.wait_done(account, submitted.json()["jobId"])
    assert job["status"] == "completed"
    url = job["outputUrl"]
    assert url.startswith(endpoint) and "Signature=" in url, url

    async with aiohttp.ClientSession() as session, session.get(url) as answer:
        assert answer.status == 200
        assert (await answer.read()).startswith(b"output of job_")

    # Presigned URLs expire, so each read makes one from the stored key rather than returning a stored URL.
    async with stack.services.db.write() as conn:
        await conn.execute(
            jobs.update()
            .where(jobs.c.id == job["jobId"])
            .values(
                outputs=[{**output, "url": "http://stale.invalid/x"} for output in (await _outputs(conn, job["jobId"]))]
            )
        )
    again = await stack.job(account, job["jobId"])
    assert again["outputUrl"].startswith(endpoint) and "Signature=" in again["outputUrl"]
    keys = [obj["Key"] for obj in boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    ).list_objects_v2(Bucket=BUCKET)["Contents"]]  # fmt: skip
    assert any(key.startswith(account.id + "/") for key in keys)


async def _outputs(conn: AsyncConnection, job_id: str) -> list[dict[str, Any]]:
    row = (await conn.execute(select(jobs.c.outputs).where(jobs.c.id == job_id))).one()
    return list(row.outputs)
