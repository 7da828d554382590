"""Requests per second of an authenticated, rate-limited endpoint against a bare one, same server.

    python bench/account_rps.py [--seconds 8] [--rounds 3] [--connections 32] [--keys 200]
                                [--database-url postgresql://...] [--redis-url redis://...]
                                [--load auto|wrk|aiohttp] [--json results.json]

Starts one `hypereal serve` process (no worker) on a fresh data directory, creates accounts
and keys through the admin API, then loads it from another process in alternating rounds:

- bare:          GET /healthz        (routing, the edge middleware, JSON; no auth, no database)
- authenticated: GET /api/v1/account (key lookup from the cache, a moving-window rate-limit
                 hit, one database read of the account, rate-limit headers)

Requests rotate over `--keys` keys, each within the default limit of 1000 per hour, as many
clients would, so the limiter does real work and never refuses. The load generator is wrk
when installed (a C program, far from being the bottleneck); otherwise an aiohttp client in
a separate process. The figures printed are the median over the rounds, and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ADMIN_KEY = "bench-admin-key-" + "0123456789abcdef" * 2
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
DEFAULT_LIMIT_PER_HOUR = 1000


@dataclass
class Run:
    rps: float
    requests: int
    failures: int
    p50_ms: float | None = None
    p99_ms: float | None = None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(data_dir: Path, env_extra: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYPEREAL_")}
    env.update({"HYPEREAL_ADMIN_KEY": ADMIN_KEY, "HYPEREAL_LOG_LEVEL": "warning", **env_extra})
    command = [sys.executable, "-m", "hypereal.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--data-dir", str(data_dir), "--no-worker"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            stderr = process.stderr.read().decode() if process.stderr else ""
            raise SystemExit(f"hypereal serve exited: {stderr}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("hypereal serve did not answer /healthz within 60 s")


def make_keys(url: str, count: int) -> list[str]:
    with httpx.Client(base_url=url, headers=ADMIN, timeout=30) as client:
        keys = []
        for n in range(count):
            account = client.post("/api/v1/admin/accounts", json={"name": f"bench {n}", "credits": 1000}).json()
            made = client.post(f"/api/v1/admin/accounts/{account['id']}/keys", json={}).json()
            keys.append(made["key"])
    return keys


# ---------------------------------------------------------------- wrk

WRK_SCRIPT = """
local keys = {%s}
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "%s", {["Authorization"] = "Bearer " .. keys[(counter %% #keys) + 1]})
end
"""


def wrk_run(url: str, path: str, keys: list[str] | None, seconds: float, connections: int, script_dir: Path) -> Run:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    if keys:
        script = script_dir / "keys.lua"
        script.write_text(WRK_SCRIPT % (", ".join(f'"{key}"' for key in keys), path))
        command += ["-s", str(script)]
    output = subprocess.run([*command, url + path], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(r"Socket errors:.*?connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    failures = int(non_2xx.group(1)) if non_2xx else 0
    if errors:
        failures += sum(int(value) for value in errors.groups())
    return Run(rps, total, failures, _wrk_percentile(output, "50"), _wrk_percentile(output, "99"))


def _wrk_percentile(output: str, percent: str) -> float | None:
    match = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    if not match:
        return None
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]
    return float(match.group(1)) * scale


# ---------------------------------------------------------------- aiohttp, in another process


def _aiohttp_load(url: str, path: str, keys: list[str] | None, seconds: float, connections: int) -> dict[str, Any]:
    import aiohttp

    async def main() -> dict[str, Any]:
        latencies: list[float] = []
        failures = 0
        stop_at = time.perf_counter() + seconds
        connector = aiohttp.TCPConnector(limit=connections)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def worker(offset: int) -> None:
                nonlocal failures
                n = offset
                while time.perf_counter() < stop_at:
                    headers = {"Authorization": f"Bearer {keys[n % len(keys)]}"} if keys else {}
                    n += connections
                    began = time.perf_counter()
                    async with session.get(url + path, headers=headers) as response:
                        await response.read()
                        if response.status >= 300:
                            failures += 1
                    latencies.append(time.perf_counter() - began)

            began = time.perf_counter()
            await asyncio.gather(*(worker(i) for i in range(connections)))
            elapsed = time.perf_counter() - began
        latencies.sort()
        return {
            "rps": len(latencies) / elapsed,
            "requests": len(latencies),
            "failures": failures,
            "p50_ms": latencies[len(latencies) // 2] * 1000 if latencies else None,
            "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000 if latencies else None,
        }

    return asyncio.run(main())


def aiohttp_run(url: str, path: str, keys: list[str] | None, seconds: float, connections: int, _: Path) -> Run:
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        result = pool.apply(_aiohttp_load, (url, path, keys, seconds, connections))
    return Run(**result)


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--keys", type=int, default=200)
    parser.add_argument("--database-url", help="PostgreSQL instead of the embedded SQLite")
    parser.add_argument("--redis-url", help="count rate limits in Redis")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--load", choices=["auto", "wrk", "aiohttp"], default="auto", help="load generator")
    args = parser.parse_args()

    use_wrk = args.load == "wrk" or (args.load == "auto" and shutil.which("wrk") is not None)
    runner = wrk_run if use_wrk else aiohttp_run
    total_per_key = args.rounds * args.seconds * 20_000 / args.keys  # generous bound on requests per key
    if total_per_key > DEFAULT_LIMIT_PER_HOUR:
        print(f"note: at high rates some of {args.keys} keys may reach their hourly limit; 429s are reported")

    env: dict[str, str] = {}
    if args.database_url:
        env["HYPEREAL_DATABASE_URL"] = args.database_url
    if args.redis_url:
        env["HYPEREAL_REDIS_URL"] = args.redis_url

    with tempfile.TemporaryDirectory(prefix="hypereal-bench-") as scratch:
        process, url = start_server(Path(scratch) / "data", env)
        try:
            keys = make_keys(url, args.keys)
            print(f"server:     one `hypereal serve` process at {url} (no worker), Python {platform.python_version()}")
            print(
                f"database:   {'PostgreSQL' if args.database_url else 'SQLite (embedded)'};"
                f" rate limits {'in Redis' if args.redis_url else 'in memory'}"
            )
            print(
                f"load:       {'wrk (' + _wrk_version() + ')' if use_wrk else 'aiohttp client in another process'},"
                f" {args.connections} connections, {args.rounds} rounds x {args.seconds:g} s each,"
                f" {args.keys} keys in rotation"
            )
            print(f"machine:    {os.cpu_count()} CPUs, {platform.machine()}")
            # Warm both paths (key cache, connection pools) before measuring.
            runner(url, "/healthz", None, 1, args.connections, Path(scratch))
            runner(url, "/api/v1/account", keys, 1, args.connections, Path(scratch))
            bare: list[Run] = []
            authenticated: list[Run] = []
            for _ in range(args.rounds):
                bare.append(runner(url, "/healthz", None, args.seconds, args.connections, Path(scratch)))
                authenticated.append(
                    runner(url, "/api/v1/account", keys, args.seconds, args.connections, Path(scratch))
                )
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()

    figures = {"bare": _summary(bare), "authenticated": _summary(authenticated)}
    figures["ratio"] = figures["authenticated"]["rps"] / figures["bare"]["rps"]
    print()
    print(f"{'endpoint':<28} {'req/s (median)':>15} {'rounds':>24} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}")
    for label, name in (("GET /healthz (bare)", "bare"), ("GET /api/v1/account (auth)", "authenticated")):
        row = figures[name]
        rounds = ", ".join(f"{rps:.0f}" for rps in row["rounds"])
        print(
            f"{label:<28} {row['rps']:>15.0f} {rounds:>24} {_ms(row['p50_ms']):>8} {_ms(row['p99_ms']):>8}"
            f" {row['failures']:>8}"
        )
    print(f"\nauthenticated / bare = {figures['ratio']:.2f}")
    if figures["authenticated"]["failures"] or figures["bare"]["failures"]:
        print("warning: some requests failed or were refused; the figures are not comparable")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


def _summary(runs: list[Run]) -> dict[str, Any]:
    return {
        "rps": statistics.median(run.rps for run in runs),
        "rounds": [run.rps for run in runs],
        "requests": sum(run.requests for run in runs),
        "failures": sum(run.failures for run in runs),
        "p50_ms": statistics.median(run.p50_ms for run in runs if run.p50_ms is not None) if runs[0].p50_ms else None,
        "p99_ms": statistics.median(run.p99_ms for run in runs if run.p99_ms is not None) if runs[0].p99_ms else None,
    }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _wrk_version() -> str:
    result = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    first = (result.stdout or result.stderr).strip().splitlines()
    return first[0].split(" [")[0] if first else "wrk"


if __name__ == "__main__":
    main()
