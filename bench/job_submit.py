"""Job submission as users run it: the default `hypereal serve`, the job worker in the process.

    .venv/bin/python bench/job_submit.py [--duration 10] [--connections 1,8] [--compare]
                                         [--postgres-url postgresql://...] [--json PATH]

Two calls, each measured by `wrk` for `--duration` seconds at each concurrency, with the CPU
time the server process spent per call read from /proc (steadier than requests/s on a busy
machine):

    video submit   POST /api/v1/videos/generate until its 202. The model's upstream (the
                   `scripted` provider with `outcome: never`) holds every job longer than the
                   run, so the worker in the process is running, with its slots taken, and
                   what is measured is the submission: authentication, the rate limit,
                   validation, pricing, the charge and the job insert in one transaction,
                   and the wake-up of the worker.
    image call     POST /api/v1/images/generate until the image's URL: a synchronous call
                   on an upstream that answers at once, so the figure is the whole engine's
                   (submission, the worker's claim, the output file stored, the settlement).
    image submit   the submission part of that synchronous call: the same request, for an
                   image model whose upstream holds every job, on a server that answers a
                   synchronous call at once (HYPEREAL_SYNC_WAIT_SECONDS=0, row
                   `hypereal-no-wait`), with 202 and the job's id once it is submitted.

The account holds enough credits, and its key a high enough rate limit, that nothing is refused.
The default `serve` on the embedded SQLite is the configuration users run and the one the
targets are judged on; `--compare` adds `serve --no-worker` (the API alone) and the default
on PostgreSQL, as extra rows. With two or more CPUs the server gets the last CPU to itself
and wrk the others, as in llm_gateway.py. Needs wrk (Debian: apt-get install -y wrk).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

import llm_gateway
from llm_gateway import Figures, Processes, Target

VIDEO_MODEL = "bench-video"
IMAGE_MODEL = "bench-image"
HELD_IMAGE_MODEL = "bench-image-held"
CATALOG = f"""
providers:
  held: {{type: scripted, options: {{outcome: never}}}}
  instant: {{type: scripted}}
models:
  - id: {VIDEO_MODEL}
    category: video
    name: Video held by its upstream
    params:
      prompt: {{type: string, required: true}}
    pricing: {{per_call: 1}}
    routes: [{{provider: held, model: held}}]
  - id: {IMAGE_MODEL}
    category: image
    name: Instant image
    params:
      prompt: {{type: string, required: true}}
    pricing: {{per_call: 1}}
    routes: [{{provider: instant, model: instant}}]
  - id: {HELD_IMAGE_MODEL}
    category: image
    name: Image held by its upstream
    params:
      prompt: {{type: string, required: true}}
    pricing: {{per_call: 1}}
    routes: [{{provider: held, model: held}}]
"""
NO_WAIT = "hypereal-no-wait"
TARGETS = {("hypereal", "video"): (1.0, 10.0), (NO_WAIT, "image-submit"): (1.0, 10.0)}
"""Per server and call: (ms of CPU, ms p99 at the highest concurrency) to stay under."""


@dataclass
class Call:
    """One call of the benchmark, shaped as llm_gateway's Target wants it."""

    name: str
    path: str
    body: dict[str, Any]


CALLS = [
    # The image first: the video jobs, held by their upstream, keep the worker's slots.
    Call("image", "/api/v1/images/generate", {"model": IMAGE_MODEL, "prompt": "a lighthouse at dusk"}),
    Call("video", "/api/v1/videos/generate", {"model": VIDEO_MODEL, "input": {"prompt": "a lighthouse at dusk"}}),
]
IMAGE_SUBMIT = Call("image-submit", "/api/v1/images/generate", {"model": HELD_IMAGE_MODEL, "prompt": "a lighthouse"})


class CallTarget(Target):
    """A hypereal server and the one call wrk sends it."""

    def __init__(self, server: Target, call: Call) -> None:
        super().__init__(server.name, server.base_url, call.path, call.path, server.authorization, server.pid)
        self.call = call

    def body(self, stream: bool) -> bytes:
        return orjson.dumps(self.call.body)


def measure(
    server: Target, calls: list[Call], connections: list[int], seconds: float, directory: Path, profile: Path | None
) -> list[Figures]:
    results = []
    for call in calls:
        target = CallTarget(server, call)
        for count in connections:
            llm_gateway.run_wrk(target, False, count, llm_gateway.WARM_UP_SECONDS, directory)
            with llm_gateway.profiling(target, profile, f"{call.name}-c{count}", seconds):
                figures = llm_gateway.run_wrk(target, False, count, seconds, directory)
            figures.mode = call.name
            results.append(figures)
            print(
                f"  {figures.target:<19} {call.name:<12} c={count:<3} {figures.requests_per_second:>8.1f} calls/s"
                f"  p50 {figures.p50_ms:6.2f} ms  p99 {figures.p99_ms:6.2f} ms"
                f"  cpu {figures.cpu_us_per_request or 0:6.0f} us/call"
                + (f"  {figures.failures} failed" if figures.failures else ""),
                flush=True,
            )
    return results


def report(results: list[Figures]) -> None:
    print()
    header = f"{'server':<19} {'call':<12} {'conc':>4} {'calls/s':>8} {'p50 ms':>7} {'p99 ms':>7}"
    header += f" {'cpu us':>7} {'failed':>6}"
    print(header)
    print("-" * len(header))
    for figures in results:
        print(
            f"{figures.target:<19} {figures.mode:<12} {figures.connections:>4} {figures.requests_per_second:>8.1f}"
            f" {figures.p50_ms:>7.2f} {figures.p99_ms:>7.2f} {figures.cpu_us_per_request or 0:>7.0f}"
            f" {figures.failures:>6}"
        )
    print()
    print("Targets, on the default `serve` (hypereal; the image's submission on hypereal-no-wait):")
    most = max(f.connections for f in results)
    for (server, name), (cpu_ms, p99_ms) in TARGETS.items():
        figures = next((f for f in results if (f.target, f.mode, f.connections) == (server, name, most)), None)
        if figures is None:
            continue
        cpu = (figures.cpu_us_per_request or 0) / 1000
        # A run with refused calls measured the refusal, not the call.
        answered = figures.failures == 0
        for label, value, limit in (("of CPU per call", cpu, cpu_ms), ("p99", figures.p99_ms, p99_ms)):
            met = answered and value <= limit
            print(f"  {name} c={most}: <= {limit:g} ms {label}: {value:.2f} ms -> {'met' if met else 'NOT met'}")
        if not answered:
            print(f"  ({figures.failures} calls failed: see the server's answer with curl)")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement (default 10)")
    parser.add_argument("--connections", default="1,8", help="comma-separated concurrencies (default 1,8)")
    parser.add_argument("--compare", action="store_true", help="also measure `--no-worker` and PostgreSQL")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="a PostgreSQL server where the benchmark may create and drop a database (with --compare)",
    )
    parser.add_argument("--profile", type=Path, help="write py-spy samples of each run to this directory")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    connections = sorted({int(part) for part in args.connections.split(",") if part.strip()})
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install -y wrk)")
    load_cpus, target_cpus = llm_gateway.cpu_split()
    if target_cpus is not None:
        os.sched_setaffinity(0, load_cpus)
    signal.signal(signal.SIGTERM, llm_gateway._interrupt)

    results: list[Figures] = []
    with tempfile.TemporaryDirectory(prefix="job-bench-") as temporary, ExitStack() as stack:
        directory = Path(temporary)
        processes = Processes(directory, target_cpus)
        # (name, worker in the process, database, settings, calls)
        servers: list[tuple[str, bool, str | None, dict[str, str], list[Call]]] = [
            ("hypereal", True, None, {}, CALLS),
            (NO_WAIT, True, None, {"HYPEREAL_SYNC_WAIT_SECONDS": "0"}, [IMAGE_SUBMIT]),
        ]
        if args.compare:
            database = stack.enter_context(llm_gateway.fresh_postgres(args.postgres_url))
            # Without a worker in the process nothing would ever answer a synchronous call.
            servers += [
                ("hypereal-no-worker", False, None, {}, [call for call in CALLS if call.name != "image"]),
                ("hypereal-postgres", True, database, {}, CALLS),
            ]
        try:
            print(f"CPUs: server {sorted(target_cpus) if target_cpus else 'shared'}, load {sorted(load_cpus)}")
            for name, worker, database_url, settings, calls in servers:
                server = llm_gateway.start_hypereal(
                    processes,
                    directory,
                    None,
                    name=name,
                    worker=worker,
                    database_url=database_url,
                    catalog_text=CATALOG,
                    settings=settings,
                )
                try:
                    results += measure(server, calls, connections, args.duration, directory, args.profile)
                finally:
                    processes.stop_all()
        except KeyboardInterrupt:
            print("\nInterrupted; stopping.", file=sys.stderr)
        finally:
            processes.stop_all()
    if results:
        report(results)
        if args.profile is not None:
            for path in sorted(args.profile.glob("*.txt")):
                print(llm_gateway.summarise_profile(path), end="\n\n")
        if args.json:
            args.json.write_text(json.dumps([asdict(f) for f in results], indent=2))


if __name__ == "__main__":
    main()
