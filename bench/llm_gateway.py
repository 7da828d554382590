"""Throughput and added latency of the chat gateway, against the upstream alone and the LiteLLM proxy.

    .venv/bin/python bench/llm_gateway.py [--duration 10] [--connections 1,64] [--skip-litellm]
                                          [--profile DIR] [--json PATH]

Three targets in one run, all in front of the same static upstream (nginx answering fixed
OpenAI Chat Completions bytes, see llm_upstream.py):

    upstream   the upstream itself: the floor every gateway adds to
    hypereal   `hypereal serve` as `./scripts/serve` runs it: one process, the job worker in
               it, the embedded SQLite, with auth, the per-key rate limit (set high enough
               never to trip) and per-token billing all on; the model comes from an
               operator catalog routing to an `openai-compatible` provider
    litellm    the LiteLLM proxy, one worker, with a master key; installed on first use into
               its own virtualenv (bench/.venv-litellm), never into the project's

`--compare` adds two configurations as extra rows: `hypereal-no-worker` (`serve
--no-worker`, the API alone) and `hypereal-postgres` (the default on PostgreSQL, from
`--postgres-url`, a database the benchmark creates and drops).

For each target and each concurrency, `wrk` measures requests/s and latency p50/p99 of
non-streaming calls and of whole streaming calls; a small aiohttp client measures the time
to the first content token of streaming calls. "Added" figures are the target's minus the
upstream's. Each wrk run also reports the CPU time the target's processes spent per
request, read from /proc: unlike requests/s, it barely moves when other work shares the
machine. The figures are printed, not asserted: they depend on the machine. The TTFT
client is Python, so its figures for the upstream at 64 connections show the client's own
limit; the added time of a gateway is still read against the same client.

With two or more CPUs the target under test gets the last CPU to itself and everything
else (nginx, wrk, the TTFT client) shares the others, so that the load generator does not
steal the gateway's time. On a machine busy with other work, `--priority 10` (as root)
keeps that work from sitting between a gateway's thread hand-offs, which otherwise
dominates the figures. `--profile DIR` records py-spy samples of hypereal during each wrk
run (`pip install py-spy` into the project's virtualenv).
Needs nginx and wrk (Debian: apt-get install -y nginx-light wrk).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import orjson

import llm_upstream

BENCH_DIR = Path(__file__).resolve().parent
LUA_SCRIPT = BENCH_DIR / "wrk_post.lua"
LITELLM_VENV = BENCH_DIR / ".venv-litellm"
ADMIN_KEY = "bench-admin-key-0123456789abcdef"
LITELLM_MASTER_KEY = "sk-bench-master-key"
PLAIN_MODEL = "bench-static"
STREAM_MODEL = "bench-static-stream"
# Enough that a run never comes near them: billing and the rate limit are exercised, never refused.
ACCOUNT_CREDITS = 100_000_000
KEY_RATE_LIMIT_PER_HOUR = 1_000_000_000
WARM_UP_SECONDS = 2.0
FIRST_TOKEN = re.compile(rb'"content":\s*"' + re.escape(llm_upstream.CONTENT_PIECES[0].encode()))
MESSAGES = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Say hello and offer help in one short sentence."},
]


# ---------------------------------------------------------------- processes


class Processes:
    """Every process the benchmark starts, each in its own session so the whole group can be ended."""

    def __init__(self, directory: Path, target_cpus: set[int] | None) -> None:
        self.directory = directory
        self.target_cpus = target_cpus
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, command: list[str], env: dict[str, str], pinned: bool) -> subprocess.Popen[bytes]:
        cpus = self.target_cpus if pinned else None
        with open(self.directory / f"{name}.log", "wb") as log:
            process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
            )
        self.running.append(process)
        return process

    def log_tail(self, name: str, lines: int = 25) -> str:
        path = self.directory / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            _signal_group(process, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait(timeout=5)
        else:
            # The leader is gone; its children (a proxy's workers) may not be.
            _signal_group(process, signal.SIGKILL)
        if process in self.running:
            self.running.remove(process)

    def stop_all(self) -> None:
        for process in reversed(list(self.running)):
            self.stop(process)


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def _interrupt(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until_ready(url: str, process: subprocess.Popen[bytes], describe: Callable[[], str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url} exited with status {process.returncode}:\n{describe()}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.01)
    raise SystemExit(f"{url} did not answer within {timeout:.0f} s:\n{describe()}")


def resident_mb(pid: int | None) -> float | None:
    """Resident memory of the process `pid` (Linux), in MB."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (OSError, TypeError):
        return None
    line = next((line for line in status.splitlines() if line.startswith("VmRSS:")), None)
    return int(line.split()[1]) / 1024 if line else None


def http_json(method: str, url: str, body: dict[str, Any] | None, token: str) -> Any:
    request = urllib.request.Request(
        url,
        data=orjson.dumps(body) if body is not None else None,
        method=method,
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return orjson.loads(answer.read())


def clean_environ(extra: dict[str, str]) -> dict[str, str]:
    """This environment without any HYPEREAL_* setting of the caller's shell, plus `extra`."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("HYPEREAL_")}
    # As an installed server runs: with its modules' bytecode cached, not compiled at every start.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(extra)
    return env


# ---------------------------------------------------------------- targets


@dataclass
class Target:
    name: str
    base_url: str
    plain_path: str
    stream_path: str
    authorization: str | None = None
    pid: int | None = None
    balance: Callable[[], float] | None = None
    ready_seconds: float | None = None
    """From the process's start to its first answer (hypereal: /healthz)."""
    resident_mb_at_start: float | None = None

    def url(self, stream: bool) -> str:
        return self.base_url + (self.stream_path if stream else self.plain_path)

    def body(self, stream: bool) -> bytes:
        body: dict[str, Any] = {
            "model": STREAM_MODEL if stream else PLAIN_MODEL,
            "messages": MESSAGES,
            "max_tokens": 64,
        }
        if stream:
            body.update(stream=True, stream_options={"include_usage": True})
        return orjson.dumps(body)


def start_upstream(processes: Processes, directory: Path) -> Target:
    port = free_port()
    process = processes.start("nginx", llm_upstream.nginx_command(directory, port), os.environ.copy(), pinned=False)
    base = f"http://127.0.0.1:{port}"
    wait_until_ready(base + "/", process, lambda: processes.log_tail("nginx"), 10)
    return Target("upstream", base, "/v1/chat/completions", "/stream/v1/chat/completions", pid=process.pid)


def hypereal_catalog(upstream: str) -> str:
    model = (
        "  - id: {id}\n    category: llm\n    name: {id}\n    description: Benchmark model on a static upstream.\n"
        "    context_window: 100000\n    max_output_tokens: 1000\n"
        "    pricing: {{input_per_mtok: 100, output_per_mtok: 400}}\n"
        "    routes:\n      - {{provider: {provider}, model: {upstream_model}}}\n"
    )
    return (
        "providers:\n"
        f"  bench-upstream: {{type: openai-compatible, base_url: '{upstream}/v1'}}\n"
        f"  bench-upstream-stream: {{type: openai-compatible, base_url: '{upstream}/stream/v1'}}\n"
        "models:\n"
        + model.format(id=PLAIN_MODEL, provider="bench-upstream", upstream_model=llm_upstream.MODEL)
        + model.format(id=STREAM_MODEL, provider="bench-upstream-stream", upstream_model=llm_upstream.MODEL)
    )


def start_hypereal(
    processes: Processes,
    directory: Path,
    upstream: Target | None,
    *,
    name: str = "hypereal",
    worker: bool = True,
    database_url: str | None = None,
    sources: Path | None = None,
    catalog_text: str | None = None,
    settings: dict[str, str] | None = None,
) -> Target:
    """`hypereal serve` (with `--no-worker` unless `worker`; on `database_url`, else the embedded
    SQLite), from `sources` (a `src` directory) when given, on the chat models of the static
    `upstream` unless given another catalog, with any other `settings` (HYPEREAL_* variables);
    with an account and a key for the calls."""
    home = directory / name
    home.mkdir()
    catalog = home / "catalog.yaml"
    if catalog_text is None:
        assert upstream is not None, "the chat catalog routes to the static upstream"
        catalog_text = hypereal_catalog(upstream.base_url)
    catalog.write_text(catalog_text)
    port = free_port()
    env = clean_environ(
        {
            "HYPEREAL_DATA_DIR": str(home / "data"),
            "HYPEREAL_CATALOG": str(catalog),
            "HYPEREAL_ADMIN_KEY": ADMIN_KEY,
            "HYPEREAL_LOG_LEVEL": "warning",
            "HYPEREAL_DEV_ACCOUNT_CREDITS": "0",
        }
    )
    if database_url is not None:
        env["HYPEREAL_DATABASE_URL"] = database_url
    env.update(settings or {})
    if sources is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(sources), *filter(None, [env.get("PYTHONPATH")])])
    command = [sys.executable, "-m", "hypereal.cli", "serve", "--port", str(port)]
    if not worker:
        command.append("--no-worker")
    began = time.monotonic()
    process = processes.start(name, command, env, pinned=True)
    base = f"http://127.0.0.1:{port}"
    wait_until_ready(base + "/healthz", process, lambda: processes.log_tail(name), 60)
    ready_seconds = time.monotonic() - began
    resident = resident_mb(process.pid)
    account = http_json("POST", base + "/v1/admin/accounts", {"name": "bench", "credits": ACCOUNT_CREDITS}, ADMIN_KEY)
    key = http_json(
        "POST",
        base + f"/v1/admin/accounts/{account['id']}/keys",
        {"name": "bench", "rate_limit_per_hour": KEY_RATE_LIMIT_PER_HOUR},
        ADMIN_KEY,
    )["key"]

    def balance() -> float:
        return float(http_json("GET", base + "/v1/account", None, key)["balance"])

    return Target(
        name,
        base,
        "/v1/chat/completions",
        "/v1/chat/completions",
        authorization=f"Bearer {key}",
        pid=process.pid,
        balance=balance,
        ready_seconds=ready_seconds,
        resident_mb_at_start=resident,
    )


def litellm_config(upstream: str) -> str:
    entry = (
        "  - model_name: {name}\n    litellm_params:\n      model: openai/{model}\n"
        "      api_base: {base}\n      api_key: sk-upstream-unused\n"
    )
    return (
        "model_list:\n"
        + entry.format(name=PLAIN_MODEL, model=llm_upstream.MODEL, base=f"{upstream}/v1")
        + entry.format(name=STREAM_MODEL, model=llm_upstream.MODEL, base=f"{upstream}/stream/v1")
        + f"general_settings:\n  master_key: {LITELLM_MASTER_KEY}\n"
        + "litellm_settings:\n  telemetry: false\n"
    )


def ensure_litellm(venv: Path) -> Path:
    """The proxy's executable, installing it into its own virtualenv the first time."""
    executable = venv / "bin" / "litellm"
    if executable.exists():
        return executable
    print(f"Installing litellm[proxy] into {venv} (first run only)…", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "litellm[proxy]"], check=True)
    return executable


def start_litellm(processes: Processes, directory: Path, upstream: Target, venv: Path) -> Target:
    executable = ensure_litellm(venv)
    config = directory / "litellm.yaml"
    config.write_text(litellm_config(upstream.base_url))
    port = free_port()
    env = clean_environ(
        {
            # Offline: use the price map shipped in the package rather than fetching one at start.
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_LOG": "ERROR",
            "LITELLM_TELEMETRY": "False",
            "NO_DOCS": "True",
        }
    )
    command = [str(executable), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    command += ["--num_workers", "1"]
    process = processes.start("litellm", command, env, pinned=True)
    base = f"http://127.0.0.1:{port}"
    wait_until_ready(base + "/health/liveliness", process, lambda: processes.log_tail("litellm"), 180)
    return Target(
        "litellm",
        base,
        "/v1/chat/completions",
        "/v1/chat/completions",
        authorization=f"Bearer {LITELLM_MASTER_KEY}",
        pid=process.pid,
    )


@contextmanager
def fresh_postgres(server_url: str) -> Iterator[str]:
    """A new, empty database on the server at `server_url` while the block runs, then dropped."""
    import asyncpg

    admin = server_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    name = f"hypereal_bench_{os.getpid()}_{secrets.token_hex(3)}"

    async def run(statement: str) -> None:
        connection = await asyncpg.connect(admin, timeout=5)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        yield urlunsplit(urlsplit(admin)._replace(path="/" + name))
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# ---------------------------------------------------------------- measurements


@dataclass
class Figures:
    target: str
    mode: str
    """json (non-streaming), sse (whole streaming call) or ttft (time to the first token)."""
    connections: int
    requests: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    failures: int
    cpu_us_per_request: float | None = None
    """CPU time the target's processes spent per request: steadier than req/s on a busy machine."""


def run_wrk(target: Target, stream: bool, connections: int, seconds: float, directory: Path) -> Figures:
    cpu_before = session_cpu_seconds(target.pid)
    wrk = start_wrk(target, stream, connections, seconds, directory)
    stdout, stderr = wrk.communicate()
    cpu_after = session_cpu_seconds(target.pid)
    drain(target, stream)
    return wrk_figures(target, stream, connections, wrk.returncode, stdout, stderr, cpu_before, cpu_after)


def start_wrk(target: Target, stream: bool, connections: int, seconds: float, directory: Path) -> subprocess.Popen[str]:
    """wrk on the target for `seconds` (SIGINT stops it early, and it still reports)."""
    body = directory / f"{target.name}-{'stream' if stream else 'plain'}.json"
    body.write_bytes(target.body(stream))
    env = {**os.environ, "BENCH_BODY_FILE": str(body), "BENCH_AUTHORIZATION": target.authorization or ""}
    command = [
        "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "30s",
        "-s", str(LUA_SCRIPT), target.url(stream),
    ]  # fmt: skip
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wrk_figures(
    target: Target,
    stream: bool,
    connections: int,
    returncode: int,
    stdout: str,
    stderr: str,
    cpu_before: float | None,
    cpu_after: float | None,
) -> Figures:
    """The figures of a finished wrk run, with the target's CPU seconds before and after it."""
    line = next((line for line in stdout.splitlines() if line.startswith("BENCH ")), None)
    if line is None:
        raise SystemExit(f"wrk failed ({returncode}):\n{stdout}\n{stderr}")
    figures = json.loads(line[len("BENCH ") :])
    duration = figures["duration_us"] / 1e6
    return Figures(
        target.name,
        "sse" if stream else "json",
        connections,
        figures["requests"],
        figures["requests"] / duration if duration else 0.0,
        figures["p50_us"] / 1000,
        figures["p99_us"] / 1000,
        figures["non_2xx"] + figures["socket_errors"],
        (cpu_after - cpu_before) / figures["requests"] * 1e6
        if cpu_before is not None and cpu_after is not None and figures["requests"]
        else None,
    )


def session_cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of every live process in the session `pid` leads (Linux)."""
    if pid is None or not Path("/proc/self/stat").exists():
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[3]) == pid:  # the session id, after the state, ppid and pgrp
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


async def _time_to_first_token(target: Target, connections: int, seconds: float) -> Figures:
    url, body = target.url(True), target.body(True)
    headers = {"content-type": "application/json"}
    if target.authorization:
        headers["authorization"] = target.authorization
    samples: list[float] = []
    failures = 0
    loop = asyncio.get_running_loop()

    async def one(session: aiohttp.ClientSession) -> float | None:
        started = time.perf_counter()
        first: float | None = None
        seen = b""
        async with session.post(url, data=body, headers=headers) as response:
            async for chunk in response.content.iter_any():
                if first is None:
                    seen += chunk
                    if FIRST_TOKEN.search(seen):
                        first = time.perf_counter() - started
                else:
                    seen = seen[-32:] + chunk
            complete = response.status == 200 and b"data: [DONE]" in seen[-64:]
        return first if complete else None

    async def client(session: aiohttp.ClientSession, deadline: float, record: bool) -> None:
        nonlocal failures
        while loop.time() < deadline:
            try:
                ttft = await one(session)
            except aiohttp.ClientError:
                ttft = None
            if not record:
                continue
            if ttft is None:
                failures += 1
            else:
                samples.append(ttft)

    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        warm_until = loop.time() + WARM_UP_SECONDS
        await asyncio.gather(*(client(session, warm_until, False) for _ in range(connections)))
        started = loop.time()
        await asyncio.gather(*(client(session, started + seconds, True) for _ in range(connections)))
        elapsed = loop.time() - started
    return Figures(
        target.name,
        "ttft",
        connections,
        len(samples),
        len(samples) / elapsed,
        percentile(samples, 50) * 1000,
        percentile(samples, 99) * 1000,
        failures,
    )


def drain(target: Target, stream: bool) -> None:
    """Wait out the requests wrk abandoned when it stopped, which a slow target is still serving.

    Without this, the next measurement would start behind a queue of calls nobody waits for.
    One call made now is served after them (or alongside them, on a fast target).
    """
    headers = {"content-type": "application/json"}
    if target.authorization:
        headers["authorization"] = target.authorization
    request = urllib.request.Request(target.url(stream), data=target.body(stream), method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            answer.read()
    except OSError as exc:
        print(f"  {target.name}: a call after the run failed: {exc}", flush=True)


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(pct) - 1]


@contextmanager
def profiling(target: Target, directory: Path | None, label: str, seconds: float) -> Iterator[None]:
    """py-spy samples of the target's CPU while the block runs (hypereal only; skipped without py-spy)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if directory is None or not target.name.startswith("hypereal") or target.pid is None or not Path(spy).exists():
        yield
        return
    directory.mkdir(parents=True, exist_ok=True)
    output = directory / f"{target.name}-{label}.txt"
    command = [spy, "record", "--pid", str(target.pid), "--duration", str(max(1, round(seconds))), "--rate", "250"]
    # Only the thread holding the GIL: where the process spends CPU, not where it waits.
    command += ["--format", "raw", "--output", str(output), "--nonblocking", "--gil"]
    recorder = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        try:
            recorder.wait(timeout=30)
        except subprocess.TimeoutExpired:
            recorder.kill()
            recorder.wait()


PARTS = [
    ("the ledger's writes", ("hypereal/store/", "hypereal/billing.py", "hypereal/llm/settlements.py")),
    ("the upstream HTTP client", ("hypereal/providers/http1.py", "hypereal/providers/chat.py", "providers/openai.py")),
    ("authentication and rate limit", ("hypereal/keys.py", "hypereal/ratelimit.py", "hypereal/api/deps.py")),
    ("the gateway and routing", ("hypereal/llm/", "hypereal/routing/", "hypereal/catalog/", "hypereal/api/openai.py")),
    (
        "the edge, the fast lane, metrics",
        ("api/edge.py", "api/fastlane.py", "hypereal/app.py", "metrics", "prometheus"),
    ),
    ("the HTTP server", ("uvicorn/", "hypereal/http_server.py", "starlette/", "httptools")),
]
"""What a sample is put down to: the innermost frame of its stack that one of these names."""


def summarise_profile(path: Path, top: int = 12) -> str:
    """Samples by part of the server (PARTS), the frames where most samples were (self), and
    hypereal's own frames that most samples passed through."""
    own: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    parts: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames, samples = stack.split(";"), int(count)
        total += samples
        own[frames[-1]] += samples
        part = next(
            (name for frame in reversed(frames) for name, marks in PARTS if any(mark in frame for mark in marks)),
            "the event loop itself (uvloop, in C)",
        )
        parts[part] += samples
        for frame in set(frames):
            if "hypereal/" in frame and "hypereal/cli.py" not in frame:
                ours[frame] += samples
    if not total:
        return f"{path.name}: no samples"
    lines = [f"{path.name}: {total} samples (Python, holding the interpreter); by part:"]
    lines += [f"  {100 * n / total:5.1f}%  {part}" for part, n in parts.most_common()]
    lines.append("  most time in (self):")
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    lines.append("  hypereal frames on the stack (inclusive):")
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in ours.most_common(top)]
    return "\n".join(lines)


def measure(
    target: Target, connections: list[int], seconds: float, directory: Path, profile: Path | None
) -> list[Figures]:
    results: list[Figures] = []
    for stream in (False, True):
        for count in connections:
            run_wrk(target, stream, count, WARM_UP_SECONDS, directory)
            label = f"{'sse' if stream else 'json'}-c{count}"
            with profiling(target, profile, label, seconds):
                figures = run_wrk(target, stream, count, seconds, directory)
            results.append(figures)
            _progress(figures)
    for count in connections:
        figures = asyncio.run(_time_to_first_token(target, count, seconds))
        results.append(figures)
        _progress(figures)
    return results


def _progress(figures: Figures) -> None:
    print(
        f"  {figures.target:<19} {figures.mode:<4} c={figures.connections:<3} {figures.requests_per_second:>9.1f} req/s"
        f"  p50 {figures.p50_ms:7.2f} ms  p99 {figures.p99_ms:7.2f} ms"
        + (f"  cpu {figures.cpu_us_per_request:.0f} us/req" if figures.cpu_us_per_request is not None else "")
        + (f"  {figures.failures} failed" if figures.failures else ""),
        flush=True,
    )


# ---------------------------------------------------------------- report


def report(results: list[Figures], notes: list[str]) -> None:
    upstream = {(f.mode, f.connections): f for f in results if f.target == "upstream"}
    print()
    print("mode: json = non-streaming call, sse = whole streaming call (both by wrk),")
    print("      ttft = time to the first content token of a streaming call (aiohttp client)")
    print("added = target minus upstream at the same mode and concurrency")
    print()
    header = f"{'target':<19} {'mode':<4} {'conc':>4} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}"
    header += f" {'+p50 ms':>8} {'+p99 ms':>8} {'failed':>6} {'cpu us/req':>10}"
    print(header)
    print("-" * len(header))
    for mode in ("json", "sse", "ttft"):
        for figures in sorted((f for f in results if f.mode == mode), key=lambda f: (f.connections, _order(f))):
            base = upstream.get((mode, figures.connections))
            added = (
                f"{figures.p50_ms - base.p50_ms:>8.2f} {figures.p99_ms - base.p99_ms:>8.2f}"
                if base is not None and figures.target != "upstream"
                else f"{'':>8} {'':>8}"
            )
            cpu = f"{figures.cpu_us_per_request:>10.0f}" if figures.cpu_us_per_request is not None else ""
            print(
                f"{figures.target:<19} {mode:<4} {figures.connections:>4} {figures.requests_per_second:>9.1f}"
                f" {figures.p50_ms:>8.2f} {figures.p99_ms:>8.2f} {added} {figures.failures:>6} {cpu}"
            )
        print()
    verdict(results)
    for note in notes:
        print(note)


TARGET_ORDER = ["upstream", "hypereal", "hypereal-no-worker", "hypereal-postgres", "litellm"]


def _order(figures: Figures) -> int:
    return TARGET_ORDER.index(figures.target)


def verdict(results: list[Figures]) -> None:
    """The ratios to LiteLLM of every hypereal configuration, then the targets, judged on the default."""
    by_key = {(f.target, f.mode, f.connections): f for f in results}
    most = max(f.connections for f in results)
    ratios: dict[tuple[str, str, int], float] = {}
    for (name, mode, connections), ours in by_key.items():
        theirs = by_key.get(("litellm", mode, connections))
        if name.startswith("hypereal") and theirs and theirs.requests_per_second:
            ratios[name, mode, connections] = ours.requests_per_second / theirs.requests_per_second
    if ratios:
        print("Requests/s against LiteLLM's in this run:")
        for (name, mode, connections), ratio in sorted(ratios.items(), key=lambda item: (item[0][1], item[0][2])):
            print(f"  {name:<19} {mode:<4} c={connections:<3} {ratio:6.1f}x")
    print("Targets, on the default `serve` (hypereal):")
    ours, single, base = (
        by_key.get(("hypereal", "json", most)),
        by_key.get(("hypereal", "json", 1)),
        by_key.get(("upstream", "json", 1)),
    )
    checks: list[tuple[str, float | None, str, bool]] = []
    for mode in ("json", "sse"):
        ratio = ratios.get(("hypereal", mode, most))
        checks.append((f">= 40x LiteLLM's requests/s, {mode} c={most}", ratio, "x", ratio is not None and ratio >= 40))
    cpu = ours.cpu_us_per_request if ours else None
    checks.append((f"<= 250 us of CPU per call, json c={most}", cpu, " us", cpu is not None and cpu <= 250))
    p99 = ours.p99_ms if ours else None
    checks.append((f"<= 50 ms p99, json c={most}", p99, " ms", p99 is not None and p99 <= 50))
    added = single.p50_ms - base.p50_ms if single and base else None
    checks.append(("<= 0.5 ms added p50, json c=1", added, " ms", added is not None and added <= 0.5))
    for label, value, unit, met in checks:
        shown = "not measured" if value is None else f"{value:.2f}{unit} -> {'met' if met else 'NOT met'}"
        print(f"  {label}: {shown}")
    print()


# ---------------------------------------------------------------- main


def cpu_split() -> tuple[set[int], set[int] | None]:
    """(CPUs for the upstream and load generators, CPUs for the target), or no pinning on one CPU."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return set(cpus), None
    return set(cpus[:-1]), {cpus[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement (default 10)")
    parser.add_argument("--connections", default="1,64", help="comma-separated concurrencies (default 1,64)")
    parser.add_argument("--skip-litellm", action="store_true", help="measure the upstream and hypereal only")
    parser.add_argument("--skip-hypereal", action="store_true", help="measure the upstream and LiteLLM only")
    parser.add_argument(
        "--compare",
        action="store_true",
        help="also measure `serve --no-worker` and the default `serve` on PostgreSQL, as extra rows",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="a PostgreSQL server where the benchmark may create and drop a database (with --compare)",
    )
    parser.add_argument("--litellm-venv", type=Path, default=LITELLM_VENV, help="virtualenv of the LiteLLM proxy")
    parser.add_argument("--profile", type=Path, help="write py-spy samples of hypereal's runs to this directory")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--no-pin", action="store_true", help="do not give the target a CPU of its own")
    parser.add_argument(
        "--priority",
        type=int,
        default=0,
        help="raise the priority of the benchmark and everything it starts by this much (root; e.g. 10 on a busy"
        " machine)",
    )
    args = parser.parse_args()
    connections = sorted({int(part) for part in args.connections.split(",") if part.strip()})
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install -y wrk)")

    if args.priority:
        os.nice(-args.priority)
    load_cpus, target_cpus = cpu_split()
    if args.no_pin:
        target_cpus = None
    elif target_cpus is not None:
        os.sched_setaffinity(0, load_cpus)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)

    notes: list[str] = []
    results: list[Figures] = []
    with tempfile.TemporaryDirectory(prefix="llm-bench-") as temporary, ExitStack() as stack:
        directory = Path(temporary)
        processes = Processes(directory, target_cpus)
        try:
            print(f"CPUs: target {sorted(target_cpus) if target_cpus else 'shared'}, load {sorted(load_cpus)}")
            upstream = start_upstream(processes, directory)
            results += measure(upstream, connections, args.duration, directory, None)
            starters: list[tuple[str, Callable[[], Target]]] = []
            if not args.skip_hypereal:
                starters.append(("hypereal", lambda: start_hypereal(processes, directory, upstream)))
            if not args.skip_hypereal and args.compare:
                starters.append(
                    (
                        "hypereal-no-worker",
                        lambda: start_hypereal(processes, directory, upstream, name="hypereal-no-worker", worker=False),
                    )
                )
                database = stack.enter_context(fresh_postgres(args.postgres_url))
                starters.append(
                    (
                        "hypereal-postgres",
                        lambda: start_hypereal(
                            processes, directory, upstream, name="hypereal-postgres", database_url=database
                        ),
                    )
                )
            if not args.skip_litellm:
                starters.append(("litellm", lambda: start_litellm(processes, directory, upstream, args.litellm_venv)))
            for name, start in starters:
                target = start()
                before = target.balance() if target.balance else None
                results += measure(target, connections, args.duration, directory, args.profile)
                if target.ready_seconds is not None:
                    notes.append(
                        f"{name}: answered {target.ready_seconds:.2f} s after its start, on a new data directory;"
                        f" resident memory {target.resident_mb_at_start or 0:.0f} MB then,"
                        f" {resident_mb(target.pid) or 0:.0f} MB after its runs"
                    )
                if target.balance is not None and before is not None:
                    billed = before - target.balance()
                    calls = sum(f.requests for f in results if f.target == name)
                    notes.append(f"{name} billed {billed:.0f} credits for the {calls} measured calls and their"
                                 " warm-ups (2 credits minimum per message)")  # fmt: skip
                process = next((p for p in processes.running if p.pid == target.pid), None)
                if process is not None:
                    processes.stop(process)
        except KeyboardInterrupt:
            print("\nInterrupted; stopping.", file=sys.stderr)
        finally:
            processes.stop_all()
    if results:
        report(results, notes)
        if args.profile is not None:
            for path in sorted(args.profile.glob("hypereal-*.txt")):
                print(summarise_profile(path), end="\n\n")
        if args.json:
            args.json.write_text(json.dumps([asdict(f) for f in results], indent=2))


if __name__ == "__main__":
    main()
