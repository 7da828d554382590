"""Submit latency and completed jobs per second of the durable job engine, instant provider.

    python bench/jobs_engine.py [--jobs 2000] [--clients 32] [--accounts 8] [--worker-concurrency 16]
                                [--database-url postgresql://...] [--redis-url redis://...]
                                [--json results.json]

For each backend (the embedded SQLite, and PostgreSQL when --database-url or
TEST_DATABASE_URL names a server: a fresh database is created there and dropped after) it
starts one `hypereal serve --no-worker` process and two `hypereal worker` processes on a
catalog with one `scripted` model whose provider answers at once, so what is measured is the
engine: authentication, validation, the charge and the job insert in one transaction, the
wake-up of a worker in another process, the claim with a lease, storing the output file, the
settlement and the compare-and-set that ends the job.

Figures printed per backend:
- submit latency, one client at a time (p50/p99): POST /videos/generate until the 202;
- submit latency and rate with `--clients` concurrent clients spread over `--accounts`
  accounts (p50/p99, submits/s); the charges of one account are serialised by its balance
  row, so one account alone shows that row's limit rather than the engine's;
- completed jobs per second: jobs / (last job completed - first job submitted), while
  submitting as fast as the clients can;
- queue-to-done latency per job (completedAt - createdAt, p50/p99).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from llm_gateway import fresh_postgres

ADMIN_KEY = "bench-admin-key-" + "0123456789abcdef" * 2
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
CATALOG = """
providers:
  scripted: {type: scripted}
models:
  - id: bench-video
    category: video
    name: Instant video
    params:
      prompt: {type: string, required: true}
    pricing: {per_call: 1}
    routes: [{provider: scripted, model: instant}]
"""
BODY = {"model": "bench-video", "input": {"prompt": "bench"}}
SERIAL_SUBMITS = 300


@dataclass
class Figures:
    backend: str
    serial_p50_ms: float
    serial_p99_ms: float
    concurrent_p50_ms: float
    concurrent_p99_ms: float
    submits_per_second: float
    completed_per_second: float
    job_p50_ms: float
    job_p99_ms: float
    jobs: int
    failures: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))] if ordered else float("nan")


def environment(data_dir: Path, catalog: Path, database_url: str | None, redis_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYPEREAL_")}
    env.update(
        HYPEREAL_DATA_DIR=str(data_dir),
        HYPEREAL_CATALOG=str(catalog),
        HYPEREAL_ADMIN_KEY=ADMIN_KEY,
        HYPEREAL_LOG_LEVEL="warning",
        HYPEREAL_DEV_ACCOUNT_CREDITS="0",
    )
    if database_url:
        env["HYPEREAL_DATABASE_URL"] = database_url
    if redis_url:
        env["HYPEREAL_REDIS_URL"] = redis_url
    return env


@contextlib.contextmanager
def processes(env: dict[str, str], worker_concurrency: int, log_dir: Path) -> Iterator[str]:
    """One API process and two worker processes; yields the API's base URL."""
    port = free_port()
    python = [sys.executable, "-m", "hypereal.cli"]
    commands = [
        [*python, "serve", "--no-worker", "--host", "127.0.0.1", "--port", str(port)],
        *([*python, "worker", "--concurrency", str(worker_concurrency)] for _ in range(2)),
    ]
    started: list[subprocess.Popen[bytes]] = []
    try:
        # The API process migrates the database first; the workers start on a ready schema.
        for index, command in enumerate(commands):
            log = (log_dir / f"process-{index}.log").open("wb")
            started.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT))
            if index == 0:
                wait_healthy(f"http://127.0.0.1:{port}", started[0], log_dir / "process-0.log")
        yield f"http://127.0.0.1:{port}"
    finally:
        for process in started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in started:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"hypereal serve exited:\n{log.read_text(errors='replace')}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise SystemExit("hypereal serve did not become healthy")


def make_key(url: str, credits: int) -> str:
    with httpx.Client(base_url=url, headers=ADMIN, timeout=30) as client:
        account = client.post("/api/v1/admin/accounts", json={"name": "bench", "credits": credits})
        account.raise_for_status()
        made = client.post(
            f"/api/v1/admin/accounts/{account.json()['id']}/keys", json={"rate_limit_per_hour": 10_000_000}
        )
        made.raise_for_status()
        key: str = made.json()["key"]
        return key


async def submit_all(
    session: aiohttp.ClientSession, url: str, count: int, clients: int, keys: list[str]
) -> tuple[list[float], list[str], int, float]:
    """(latencies in s, job ids, failures, wall time) of `count` submissions by `clients` clients."""
    latencies: list[float] = []
    job_ids: list[str] = []
    failures = 0
    queue = iter(range(count))

    async def client(index: int) -> None:
        nonlocal failures
        headers = {"Authorization": f"Bearer {keys[index % len(keys)]}"}
        for _ in queue:
            began = time.perf_counter()
            async with session.post(url + "/api/v1/videos/generate", json=BODY, headers=headers) as response:
                body = await response.json()
            latencies.append(time.perf_counter() - began)
            if response.status == 202:
                job_ids.append(body["jobId"])
            else:
                failures += 1

    began = time.perf_counter()
    await asyncio.gather(*(client(index) for index in range(clients)))
    return latencies, job_ids, failures, time.perf_counter() - began


async def wait_all_done(session: aiohttp.ClientSession, url: str, keys: list[str], limit: float = 600) -> None:
    deadline = time.monotonic() + limit
    pending = list(keys)
    while pending and time.monotonic() < deadline:
        headers = {"Authorization": f"Bearer {pending[0]}"}
        async with session.get(url + "/api/v1/jobs?status=processing&limit=1", headers=headers) as response:
            if not (await response.json())["data"]:
                pending.pop(0)
                continue
        await asyncio.sleep(0.02)
    if pending:
        raise SystemExit("jobs did not finish in time")


async def job_views(session: aiohttp.ClientSession, url: str, keys: list[str]) -> list[dict[str, Any]]:
    views: list[dict[str, Any]] = []
    for key in keys:
        headers = {"Authorization": f"Bearer {key}"}
        cursor: float | None = None
        while True:
            query = "?limit=200" + (f"&before={cursor}" if cursor is not None else "")
            async with session.get(url + "/api/v1/jobs" + query, headers=headers) as response:
                page = await response.json()
            views.extend(page["data"])
            if not page["has_more"]:
                break
            cursor = page["next_cursor"]
    return views


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def measure(backend: str, url: str, jobs: int, clients: int, accounts: int) -> Figures:
    keys = [make_key(url, credits=jobs + SERIAL_SUBMITS + 100) for _ in range(accounts)]
    connector = aiohttp.TCPConnector(limit=clients + 4)
    async with aiohttp.ClientSession(connector=connector) as session:
        # Warm up: imports, pools, the key cache of every key.
        await submit_all(session, url, 4 * len(keys), len(keys), keys)
        await wait_all_done(session, url, keys)
        serial, _, serial_failures, _ = await submit_all(session, url, SERIAL_SUBMITS, 1, keys)
        await wait_all_done(session, url, keys)

        first_submit = time.time()
        latencies, job_ids, failures, wall = await submit_all(session, url, jobs, clients, keys)
        await wait_all_done(session, url, keys)
        measured = set(job_ids)
        views = [view for view in await job_views(session, url, keys) if view["jobId"] in measured]
    completed = [view for view in views if view["status"] == "completed"]
    last_done = max(_seconds(view["completedAt"]) for view in completed)
    per_job = [(_seconds(v["completedAt"]) - _seconds(v["createdAt"])) * 1000 for v in completed]
    return Figures(
        backend=backend,
        serial_p50_ms=percentile(serial, 0.50) * 1000,
        serial_p99_ms=percentile(serial, 0.99) * 1000,
        concurrent_p50_ms=percentile(latencies, 0.50) * 1000,
        concurrent_p99_ms=percentile(latencies, 0.99) * 1000,
        submits_per_second=len(latencies) / wall,
        completed_per_second=len(completed) / max(last_done - first_submit, 1e-9),
        job_p50_ms=percentile(per_job, 0.50),
        job_p99_ms=percentile(per_job, 0.99),
        jobs=len(completed),
        failures=failures + serial_failures + (len(job_ids) - len(completed)),
    )


def run_backend(backend: str, database_url: str | None, redis_url: str | None, args: argparse.Namespace) -> Figures:
    with tempfile.TemporaryDirectory(prefix="hypereal-bench-") as temp:
        directory = Path(temp)
        catalog = directory / "catalog.yaml"
        catalog.write_text(CATALOG)
        env = environment(directory / "data", catalog, database_url, redis_url)
        with processes(env, args.worker_concurrency, directory) as url:
            return asyncio.run(measure(backend, url, args.jobs, args.clients, args.accounts))


def report(figures: Figures, clients: int) -> None:
    print(f"\n{figures.backend}: {figures.jobs} jobs, {figures.failures} failures")
    print(f"  submit, 1 client:        p50 {figures.serial_p50_ms:7.1f} ms   p99 {figures.serial_p99_ms:7.1f} ms")
    print(
        f"  submit, {clients:3d} clients:    p50 {figures.concurrent_p50_ms:7.1f} ms   "
        f"p99 {figures.concurrent_p99_ms:7.1f} ms   {figures.submits_per_second:7.1f} submits/s"
    )
    print(f"  completed:               {figures.completed_per_second:7.1f} jobs/s (two worker processes)")
    print(f"  queued to done per job:  p50 {figures.job_p50_ms:7.1f} ms   p99 {figures.job_p99_ms:7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--accounts", type=int, default=8, help="accounts the clients are spread over")
    parser.add_argument("--worker-concurrency", type=int, default=16)
    parser.add_argument("--database-url", default=os.environ.get("TEST_DATABASE_URL"))
    parser.add_argument("--redis-url", default=os.environ.get("TEST_REDIS_URL"))
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()

    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs")
    print(
        f"{args.jobs} jobs, {args.clients} clients over {args.accounts} accounts, "
        f"two workers of concurrency {args.worker_concurrency}"
    )
    results = [run_backend("sqlite", None, None, args)]
    report(results[-1], args.clients)
    if args.database_url:
        with fresh_postgres(args.database_url) as url:
            label = "postgresql" + (" + redis" if args.redis_url else "")
            results.append(run_backend(label, url, args.redis_url, args))
        report(results[-1], args.clients)
    else:
        print("\npostgresql: skipped (set --database-url or TEST_DATABASE_URL)")
    if args.json:
        args.json.write_text(json.dumps([asdict(figures) for figures in results], indent=2))


if __name__ == "__main__":
    main()
