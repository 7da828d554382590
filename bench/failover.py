"""Failover as clients see it: a chat model on two routes while one of them breaks.

    .venv/bin/python bench/failover.py [--phase-seconds 15] [--connections 8] [--json PATH]

One `hypereal serve` (the default configuration: SQLite, auth, rate limit and billing on,
the job worker in the process) serves a model whose catalog entry lists two routes, each
an upstream of its own (a small Chat Completions server in a process of its own, started
here, which answers in about a millisecond and fails on command). Clients keep calling
the model, non-streaming, through four phases:

    healthy     both upstreams answer                           the reference
    flaky       the first route fails 30% of its calls (503)    each failure moves on to the second
    down        the first route resets every connection         its circuit opens; probes now and then
    back        the first route answers again                   a probe closes the circuit

Routes are left out for `--cooldown` seconds (2) after three failures in a row, twice as
long each time again up to `--max-cooldown` (8), so that `back` shows the route return
within a phase; the server's defaults are 5 and 300.

It prints, per phase, the requests, the success rate the clients saw, p50 and p99 latency
and what those add to the healthy phase's, and which route served (from
`x-hypereal-served-by`); then the overall success rate of the phases with a failing route
against the target (99.9% while one route stays healthy). The figures are printed, not
asserted: they depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from llm_gateway import free_port, wait_until_ready

ADMIN_KEY = "bench-admin-key-0123456789abcdef"
MODEL = "bench-failover"
TARGET_SUCCESS = 0.999
ANSWER = orjson.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 0,
        "model": "upstream",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
    }
)
PHASES = (("healthy", {}), ("flaky", {"share": 0.3}), ("down", {"down": True}), ("back", {}))


# ---------------------------------------------------------------- the upstreams


def serve_upstream(port: int) -> None:
    """A Chat Completions upstream that fails on command (`POST /fault {"share", "down"}`)."""
    fault: dict[str, Any] = {}
    chance = random.Random(7)

    async def fault_handler(request: web.Request) -> web.Response:
        fault.clear()
        fault.update(await request.json())
        return web.json_response(fault)

    async def chat(request: web.Request) -> web.StreamResponse:
        await request.read()
        if fault.get("down"):
            assert request.transport is not None
            request.transport.abort()
            raise ConnectionResetError
        if chance.random() < fault.get("share", 0.0):
            return web.json_response({"error": {"message": "overloaded", "type": "server_error"}}, status=503)
        return web.Response(body=ANSWER, content_type="application/json")

    app = web.Application()
    app.router.add_post("/fault", fault_handler)
    app.router.add_post("/v1/chat/completions", chat)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# ---------------------------------------------------------------- processes


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    wait_until_ready(url, process, lambda: log.read_text(errors="replace")[-3000:], 60)


def call(method: str, url: str, body: Any, token: str | None = None) -> Any:
    headers = {"content-type": "application/json", **({"authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(url, data=orjson.dumps(body), method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as answer:
        return orjson.loads(answer.read())


@dataclass
class Stack:
    url: str
    key: str
    upstreams: list[str]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def fault(self, index: int, fault: dict[str, Any]) -> None:
        call("POST", self.upstreams[index] + "/fault", fault)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=20)


def start(directory: Path, cooldown: float, max_cooldown: float) -> Stack:
    stack = Stack("", "", [])
    for name in ("a", "b"):
        port = free_port()
        log = directory / f"upstream-{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, __file__, "--upstream", str(port)], stdout=out, stderr=out, start_new_session=True
            )
        stack.processes.append(process)
        stack.upstreams.append(f"http://127.0.0.1:{port}")
    catalog = directory / "catalog.yaml"
    catalog.write_text(
        "providers:\n"
        + "".join(
            f"  route-{name}: {{type: openai-compatible, base_url: '{url}/v1', timeout_seconds: 5}}\n"
            for name, url in zip("ab", stack.upstreams, strict=True)
        )
        + f"models:\n  - id: {MODEL}\n    category: llm\n    name: Failover benchmark\n"
        "    pricing: {input_per_mtok: 100, output_per_mtok: 400}\n"
        "    routes: [{provider: route-a, model: upstream}, {provider: route-b, model: upstream}]\n"
    )
    port = free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("HYPEREAL_")}
    env.update(
        HYPEREAL_DATA_DIR=str(directory / "data"),
        HYPEREAL_CATALOG=str(catalog),
        HYPEREAL_ADMIN_KEY=ADMIN_KEY,
        HYPEREAL_LOG_LEVEL="error",
        HYPEREAL_ROUTE_COOLDOWN_SECONDS=str(cooldown),
        HYPEREAL_ROUTE_COOLDOWN_MAX_SECONDS=str(max_cooldown),
    )
    log = directory / "hypereal.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "hypereal.cli", "serve", "--port", str(port)],
            stdout=out,
            stderr=out,
            env=env,
            start_new_session=True,
        )
    stack.processes.append(process)
    stack.url = f"http://127.0.0.1:{port}"
    wait_ready(stack.url + "/healthz", process, log)
    for name, url, upstream in zip("ab", stack.upstreams, stack.processes[:2], strict=True):
        wait_ready(url + "/fault", upstream, directory / f"upstream-{name}.log")
    account = call("POST", stack.url + "/v1/admin/accounts", {"name": "bench", "credits": 10_000_000}, ADMIN_KEY)
    keys = stack.url + f"/v1/admin/accounts/{account['id']}/keys"
    stack.key = call("POST", keys, {"rate_limit_per_hour": 1_000_000_000}, ADMIN_KEY)["key"]
    return stack


# ---------------------------------------------------------------- the clients


@dataclass
class Phase:
    name: str
    requests: int = 0
    succeeded: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    added_p50_ms: float = 0.0
    added_p99_ms: float = 0.0
    served_by: dict[str, int] = field(default_factory=dict)
    failed_over: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def success_rate(self) -> float:
        return self.succeeded / self.requests if self.requests else 0.0


async def run_phase(stack: Stack, name: str, seconds: float, connections: int) -> Phase:
    body = orjson.dumps({"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]})
    headers = {"authorization": f"Bearer {stack.key}", "content-type": "application/json"}
    latencies: list[float] = []
    served: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    phase = Phase(name)
    deadline = time.monotonic() + seconds

    async def client(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                async with session.post(stack.url + "/v1/chat/completions", data=body, headers=headers) as answer:
                    await answer.read()
                    status = answer.status
                    served[answer.headers.get("x-hypereal-served-by", "-")] += status == 200
                    phase.failed_over += "x-hypereal-tried" in answer.headers
            except aiohttp.ClientError as exc:
                status = 0
                errors[type(exc).__name__] += 1
            latencies.append(time.perf_counter() - started)
            phase.requests += 1
            if status == 200:
                phase.succeeded += 1
            elif status:
                errors[str(status)] += 1

    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(client(session) for _ in range(connections)))
    latencies.sort()
    phase.p50_ms = percentile(latencies, 50) * 1000
    phase.p99_ms = percentile(latencies, 99) * 1000
    phase.served_by = {route: count for route, count in served.items() if count}
    phase.errors = dict(errors)
    return phase


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    return values[min(len(values) - 1, round(pct / 100 * (len(values) - 1)))]


def report(phases: list[Phase], connections: int) -> float:
    print(f"\nchat model on two routes, {connections} connections, non-streaming (default `hypereal serve`)\n")
    print(f"{'phase':<8} {'requests':>8} {'success':>9} {'p50 ms':>8} {'p99 ms':>8} {'+p50':>7} {'+p99':>7}  served by")
    for phase in phases:
        served = ", ".join(f"{route} {count}" for route, count in sorted(phase.served_by.items()))
        moved = f"; {phase.failed_over} failed over" if phase.failed_over else ""
        errors = f"; errors {phase.errors}" if phase.errors else ""
        print(
            f"{phase.name:<8} {phase.requests:>8} {phase.success_rate:>8.3%} {phase.p50_ms:>8.2f} {phase.p99_ms:>8.2f}"
            f" {phase.added_p50_ms:>+7.2f} {phase.added_p99_ms:>+7.2f}  {served}{moved}{errors}"
        )
    failing = [phase for phase in phases if phase.name != "healthy"]
    total = sum(phase.requests for phase in failing)
    rate = sum(phase.succeeded for phase in failing) / total if total else 0.0
    verdict = "meets" if rate >= TARGET_SUCCESS else "MISSES"
    print(f"\nsuccess while route-a fails: {rate:.4%} of {total} ({verdict} the {TARGET_SUCCESS:.1%} target)")
    return rate


async def measure(stack: Stack, seconds: float, connections: int) -> list[Phase]:
    await run_phase(stack, "warm-up", 2.0, connections)
    phases = []
    for name, fault in PHASES:
        stack.fault(0, fault)
        phases.append(await run_phase(stack, name, seconds, connections))
        print(f"  {name}: {phases[-1].requests} requests, {phases[-1].success_rate:.3%} succeeded", flush=True)
    baseline = phases[0]
    for phase in phases:
        phase.added_p50_ms = phase.p50_ms - baseline.p50_ms
        phase.added_p99_ms = phase.p99_ms - baseline.p99_ms
    return phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phase-seconds", type=float, default=15.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--cooldown", type=float, default=2.0, help="HYPEREAL_ROUTE_COOLDOWN_SECONDS (default 2)")
    parser.add_argument("--max-cooldown", type=float, default=8.0, help="HYPEREAL_ROUTE_COOLDOWN_MAX_SECONDS")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--upstream", type=int, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.upstream:
        serve_upstream(arguments.upstream)
        return
    with tempfile.TemporaryDirectory(prefix="hypereal-failover-") as directory:
        stack = start(Path(directory), arguments.cooldown, arguments.max_cooldown)
        try:
            phases = asyncio.run(measure(stack, arguments.phase_seconds, arguments.connections))
        finally:
            stack.stop()
    rate = report(phases, arguments.connections)
    if arguments.json:
        figures = {"phases": [asdict(phase) for phase in phases], "success_while_failing": rate}
        arguments.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
