"""Helpers for the job-engine tests: a catalog of `scripted` models, an in-process stack with a
worker, ledger views, a webhook receiver, a small file server and `hypereal worker` processes.

The scripted models take their behaviour from the request (`outcome`, `seconds`, `polls`), so
every path of the engine can be driven from a test:

    test-video   video, 10 credits per call, optional `image` input
    test-image   image, 4 credits per call, optional `images` input (image edits)
    test-audio   audio, 3 credits per call
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web
from sqlalchemy import select, update

from hypereal.jobs.worker import Worker
from hypereal.services import Services
from hypereal.settings import Settings
from hypereal.store import jobs as job_store
from hypereal.store import ledger
from hypereal.store.jobs import Job
from hypereal.store.ledger import Entry
from hypereal.store.tables import jobs as jobs_table
from hypereal.units import MILLI
from tests.conftest import TestAccount, clean_environ, create_test_account

VIDEO_PRICE = 10
IMAGE_PRICE = 4
AUDIO_PRICE = 3
PNG_1PX = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)

SCRIPTED_CATALOG = f"""
providers:
  scripted: {{type: scripted}}
models:
  - id: test-video
    category: video
    name: Test video
    params:
      prompt: {{type: string, required: true, max_length: 500}}
      outcome: {{type: string, default: complete, enum: [complete, fail, reject, never]}}
      seconds: {{type: number, minimum: 0, maximum: 120}}
      cpu_seconds: {{type: number, minimum: 0, maximum: 120}}
      polls: {{type: integer, minimum: 0, maximum: 100}}
      image: {{type: image}}
    pricing: {{per_call: {VIDEO_PRICE}}}
    routes: [{{provider: scripted, model: test}}]
  - id: test-image
    category: image
    name: Test image
    params:
      prompt: {{type: string, required: true, max_length: 500}}
      outcome: {{type: string, default: complete, enum: [complete, fail, reject, never]}}
      seconds: {{type: number, minimum: 0, maximum: 120}}
      polls: {{type: integer, minimum: 0, maximum: 100}}
      images: {{type: images, max_items: 2}}
    pricing: {{per_call: {IMAGE_PRICE}}}
    routes: [{{provider: scripted, model: test}}]
  - id: test-audio
    category: audio
    name: Test audio
    params:
      text: {{type: string, required: true}}
      outcome: {{type: string, default: complete, enum: [complete, fail, reject, never]}}
      seconds: {{type: number, minimum: 0, maximum: 120}}
    pricing: {{per_call: {AUDIO_PRICE}}}
    routes: [{{provider: scripted, model: test}}]
"""


def write_catalog(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "scripted-catalog.yaml"
    path.write_text(SCRIPTED_CATALOG)
    return path


# ---------------------------------------------------------------- reading the database


async def ledger_rows(services: Services, account_id: str) -> list[Entry]:
    """Every ledger row of the account, oldest first."""
    async with services.db.read() as conn:
        return list(reversed(await ledger.page(conn, account_id, 100_000, None)))


async def balance(services: Services, account_id: str) -> int:
    async with services.db.read() as conn:
        return await ledger.balance(conn, account_id)


async def job_row(services: Services, job_id: str) -> Job:
    async with services.db.read() as conn:
        return await job_store.get(conn, job_id)


async def all_jobs(services: Services) -> list[Job]:
    async with services.db.read() as conn:
        return [Job(**row._mapping) for row in await conn.execute(select(jobs_table))]


async def set_job(services: Services, job_id: str, **values: Any) -> None:
    """Change a job row behind the engine's back (to move a deadline into the past)."""
    async with services.db.write() as conn:
        await conn.execute(update(jobs_table).where(jobs_table.c.id == job_id).values(**values))


def rows_for(entries: Sequence[Entry], reference: str, kind: str | None = None) -> list[Entry]:
    return [e for e in entries if e.reference == reference and (kind is None or e.kind == kind)]


def net_of(entries: Sequence[Entry], reference: str) -> int:
    """Millicredits the account paid in the end for `reference` (positive = paid)."""
    return -sum(e.amount for e in rows_for(entries, reference))


async def wait_for(
    condition: Callable[[], Awaitable[Any]], seconds: float = 30.0, interval: float = 0.05, what: str = "a condition"
) -> Any:
    """Poll `condition` until it returns something truthy; that value is returned."""
    deadline = time.monotonic() + seconds
    while True:
        value = await condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:g} s waiting for {what}")
        await asyncio.sleep(interval)


# ---------------------------------------------------------------- the in-process stack


@dataclass
class Stack:
    settings: Settings
    services: Services
    client: httpx.AsyncClient
    worker: Worker | None

    async def account(self, credits: int = 1000, name: str = "Jobs test") -> TestAccount:
        return await create_test_account(self.services, credits, name=name)

    async def submit_video(
        self, account: TestAccount, headers: dict[str, str] | None = None, webhook_url: str | None = None, **given: Any
    ) -> httpx.Response:
        body: dict[str, Any] = {"model": "test-video", "input": {"prompt": "a test", **given}}
        if webhook_url:
            body["webhook_url"] = webhook_url
        return await self.client.post(
            "/api/v1/videos/generate", json=body, headers={**account.headers, **(headers or {})}
        )

    async def job(self, account: TestAccount, job_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/api/v1/jobs/{job_id}", headers=account.headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def wait_done(self, account: TestAccount, job_id: str, seconds: float = 30.0) -> dict[str, Any]:
        """The job as GET /jobs/{id} shows it once it is no longer processing."""

        async def finished() -> dict[str, Any] | None:
            view = await self.job(account, job_id)
            return None if view["status"] == "processing" else view

        result: dict[str, Any] = await wait_for(finished, seconds, what=f"job {job_id} to finish")
        return result

    async def ledger(self, account: TestAccount) -> list[Entry]:
        return await ledger_rows(self.services, account.id)

    async def balance(self, account: TestAccount) -> int:
        return await balance(self.services, account.id)


StackFactory = Callable[..., Awaitable[Stack]]
"""`make_stack` (tests/integration/conftest.py): a stack with settings of the test's own."""


async def start_stack(
    tmp_path: Path,
    make_settings: Callable[..., Settings],
    make_services: Callable[[Settings], Awaitable[Services]],
    make_client: Callable[[Services], httpx.AsyncClient],
    *,
    worker: bool = True,
    concurrency: int = 4,
    **overrides: Any,
) -> Stack:
    """Services on the test's backend with the scripted catalog, an app client, and a worker.

    The worker runs in this event loop and is stopped before the services close.
    """
    settings = make_settings(catalog=write_catalog(tmp_path / "catalog"), **overrides)
    services = await make_services(settings)
    running: Worker | None = None
    if worker:
        running = Worker(services.jobs, concurrency)
        running.start()
        services.extensions["test-worker"] = _StopWorker(running)
    return Stack(settings, services, make_client(services), running)


class _StopWorker:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    async def close(self) -> None:
        await self.worker.stop()


def credits(amount: int) -> int:
    """Credits in the ledger's unit (millicredits)."""
    return amount * MILLI


# ---------------------------------------------------------------- local HTTP servers


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1 that answers from a script and records every request."""

    statuses: list[int] = field(default_factory=list)
    """Answers for the first requests in order; 200 once the list is used up."""
    headers: dict[int, dict[str, str]] = field(default_factory=dict)
    """Extra response headers by request index."""
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def _handle(self, request: web.Request) -> web.Response:
        index = len(self.received)
        self.received.append(({k.lower(): v for k, v in request.headers.items()}, await request.read()))
        self.arrived.set()
        status = self.statuses[index] if index < len(self.statuses) else 200
        return web.Response(status=status, text="ok", headers=self.headers.get(index, {}))

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/hook"
        return self

    async def wait_count(self, count: int, seconds: float = 20.0) -> None:
        async def enough() -> bool:
            return len(self.received) >= count

        await wait_for(enough, seconds, what=f"{count} webhook requests")

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@dataclass
class FileServer:
    """Serves fixed bytes under fixed paths on 127.0.0.1, with a declared content type."""

    files: dict[str, tuple[bytes, str]]
    base: str = ""
    _runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        found = self.files.get(request.path)
        if found is None:
            return web.Response(status=404, text="not found")
        data, content_type = found
        return web.Response(body=data, headers={"Content-Type": content_type})

    async def start(self) -> FileServer:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base = f"http://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


# ---------------------------------------------------------------- `hypereal worker` processes


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def owns(self, job: Job) -> bool:
        """Whether this process holds the job's lease (owners are host:pid:random)."""
        return job.lease_owner is not None and job.lease_owner.split(":")[1] == str(self.process.pid)

    async def running(self, seconds: float = 60.0) -> None:
        """Wait until the worker has started and looks for jobs."""

        async def started() -> bool:
            if not self.alive():
                raise AssertionError(f"the worker exited:\n{self.output()}")
            return "running with concurrency" in self.output()

        await wait_for(started, seconds, interval=0.1, what="the worker to start")

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, leases stay held until they expire."""
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def worker_environment(settings: Settings) -> dict[str, str]:
    """HYPEREAL_* variables that point a `hypereal worker` at the same stack as `settings`."""
    env = {
        "HYPEREAL_DATABASE_URL": settings.effective_database_url,
        "HYPEREAL_DATA_DIR": str(settings.data_dir),
        "HYPEREAL_JOB_LEASE_SECONDS": str(settings.job_lease_seconds),
        "HYPEREAL_JOB_HEARTBEAT_SECONDS": str(settings.job_heartbeat_interval),
        "HYPEREAL_JOB_MAX_ATTEMPTS": str(settings.job_max_attempts),
        "HYPEREAL_WEBHOOK_RETRY_SCHEDULE": settings.webhook_retry_schedule,
        "HYPEREAL_LOG_LEVEL": "info",
    }
    if settings.catalog is not None:
        env["HYPEREAL_CATALOG"] = str(settings.catalog)
    if settings.redis_url:
        env["HYPEREAL_REDIS_URL"] = settings.redis_url
    if settings.outbound_allow:
        env["HYPEREAL_OUTBOUND_ALLOW"] = settings.outbound_allow
    if settings.public_url:
        env["HYPEREAL_PUBLIC_URL"] = settings.public_url
    return env


class WorkerPool:
    """`hypereal worker` subprocesses started by one test, all stopped at its end."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[WorkerProcess] = []

    def start(self, settings: Settings, concurrency: int = 4, extra_env: dict[str, str] | None = None) -> WorkerProcess:
        index = len(self.started)
        log_path = self.directory / f"worker-{index}.log"
        env = clean_environ({**worker_environment(settings), **(extra_env or {})})
        command = [sys.executable, "-m", "hypereal.cli", "worker", "--concurrency", str(concurrency)]
        with log_path.open("wb") as log:
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        worker = WorkerProcess(process, log_path)
        self.started.append(worker)
        return worker

    def stop_all(self) -> None:
        for worker in self.started:
            with contextlib.suppress(Exception):
                worker.stop()
