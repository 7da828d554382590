"""The embedded database under sustained chat load: the write-ahead log's peak size, and the throughput.

    .venv/bin/python bench/sustained_load.py [--minutes 10] [--connections 64] [--no-worker]
                                             [--baseline REV [--rounds 3]] [--wal-cap-mb 4096]
                                             [--json PATH]

Starts the static upstream of llm_gateway.py (nginx) and `hypereal serve` on its embedded
SQLite, as users run it (the job worker in the same process; `--no-worker` as llm_gateway.py
runs it), with auth, the rate limit and billing on, then keeps `--connections` wrk
connections of non-streaming OpenAI Chat Completions calls on it for `--minutes` without a
pause: every call writes to the ledger, so the write-ahead log (`hypereal.db-wal`) only stays
small if checkpoints keep up with the writes and the log restarts. A thread samples the log's
size every 50 ms. Printed: each minute, the log's size and its peak so far; at the end,
requests/s, p50/p99, CPU per request, the log's peak, and what the server leaves on disk once
stopped.

`--baseline REV` first runs the same load on the sources of git revision REV (exported with
`git archive` into a temporary directory, nothing checked out), then on the working tree's,
and prints both, so that a change is measured against what came before it on the same
machine in the same session; `--rounds N` alternates the two N times and compares medians,
since other work on a shared machine moves single runs by more than a change does.
`--wal-cap-mb` ends a run early when its log passes that size (a log that never starts over
grew by 20 to 70 MB a second here), so a baseline that grows without bound does not fill
the disk; its figures are then over the time it ran.
Needs nginx and wrk, as llm_gateway.py.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import llm_gateway
from llm_gateway import Processes, Target

PEAK_TARGET_MB = 64.0
SAMPLE_SECONDS = 0.05
PROJECT = Path(__file__).resolve().parent.parent
MB = 1024 * 1024


@dataclass
class Run:
    name: str
    sources: str
    seconds: float
    requests: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    failures: int
    cpu_us_per_request: float | None
    wal_peak_mb: float
    wal_end_mb: float
    left_on_disk_mb: float
    capped: bool
    resident_start_mb: float | None = None
    """The server's resident memory once it answered, before any call."""
    resident_end_mb: float | None = None
    """... and at the end of the load, before it stopped."""


class LogWatch:
    """Samples a file's size on a thread; the peak, and a line of progress each minute."""

    def __init__(self, path: Path, cap_bytes: int, on_cap: threading.Event) -> None:
        self.path = path
        self.cap_bytes = cap_bytes
        self.on_cap = on_cap
        self.peak = 0
        self.last = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LogWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        started = time.monotonic()
        next_report = started + 60
        while not self._stop.wait(SAMPLE_SECONDS):
            self.last = size_of(self.path)
            self.peak = max(self.peak, self.last)
            if self.last > self.cap_bytes:
                self.on_cap.set()
            now = time.monotonic()
            if now >= next_report:
                next_report += 60
                print(
                    f"    {(now - started) / 60:4.1f} min: log {self.last / MB:8.1f} MB, peak {self.peak / MB:8.1f} MB",
                    flush=True,
                )


def size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def export_sources(revision: str, directory: Path) -> Path:
    """The `src` directory of `revision`, written under `directory` (no checkout, no worktree)."""
    archive = directory / "baseline.tar"
    subprocess.run(["git", "-C", str(PROJECT), "archive", "--output", str(archive), revision, "src"], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(directory / "baseline-sources", filter="data")
    return directory / "baseline-sources" / "src"


def sustain(
    processes: Processes,
    directory: Path,
    upstream: Target,
    *,
    name: str,
    sources: Path | None,
    minutes: float,
    connections: int,
    worker: bool,
    cap_bytes: int,
) -> Run:
    target = llm_gateway.start_hypereal(processes, directory, upstream, name=name, worker=worker, sources=sources)
    data = directory / name / "data"
    wal = data / "hypereal.db-wal"
    print(f"  {name} ({sources or 'working tree'}): {minutes:g} min at c={connections}", flush=True)
    llm_gateway.run_wrk(target, False, connections, llm_gateway.WARM_UP_SECONDS, directory)
    capped = threading.Event()
    cpu_before = llm_gateway.session_cpu_seconds(target.pid)
    started = time.monotonic()
    with LogWatch(wal, cap_bytes, capped) as watch:
        wrk = llm_gateway.start_wrk(target, False, connections, minutes * 60, directory)
        while wrk.poll() is None:
            if capped.wait(0.5):
                print(f"    the log passed {cap_bytes / MB:.0f} MB: stopping this run early", flush=True)
                wrk.send_signal(signal.SIGINT)
                break
        stdout, stderr = wrk.communicate()
        cpu_after = llm_gateway.session_cpu_seconds(target.pid)
    seconds = time.monotonic() - started
    figures = llm_gateway.wrk_figures(target, False, connections, wrk.returncode, stdout, stderr, cpu_before, cpu_after)
    wal_end = size_of(wal)
    resident_end = llm_gateway.resident_mb(target.pid)
    process = next((p for p in processes.running if p.pid == target.pid), None)
    if process is not None:
        processes.stop(process)
    left = size_of(wal) + size_of(data / "hypereal.db-shm")
    run = Run(
        name=name,
        sources=str(sources or "working tree"),
        seconds=seconds,
        requests=figures.requests,
        requests_per_second=figures.requests_per_second,
        p50_ms=figures.p50_ms,
        p99_ms=figures.p99_ms,
        failures=figures.failures,
        cpu_us_per_request=figures.cpu_us_per_request,
        wal_peak_mb=watch.peak / MB,
        wal_end_mb=wal_end / MB,
        left_on_disk_mb=left / MB,
        capped=capped.is_set(),
        resident_start_mb=target.resident_mb_at_start,
        resident_end_mb=resident_end,
    )
    # The database itself is gone with the temporary directory; only the figures stay.
    shutil.rmtree(directory / name, ignore_errors=True)
    return run


def report(runs: list[Run]) -> None:
    print()
    header = (
        f"{'run':<10} {'seconds':>7} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'failed':>6} {'cpu us/req':>10}"
        f" {'log peak MB':>11} {'log end MB':>10} {'left MB':>8}"
    )
    print(header)
    print("-" * len(header))
    for run in runs:
        cpu = f"{run.cpu_us_per_request:>10.0f}" if run.cpu_us_per_request is not None else f"{'':>10}"
        print(
            f"{run.name:<10} {run.seconds:>7.0f} {run.requests_per_second:>8.0f} {run.p50_ms:>7.2f} {run.p99_ms:>7.2f}"
            f" {run.failures:>6} {cpu} {run.wal_peak_mb:>11.1f} {run.wal_end_mb:>10.1f} {run.left_on_disk_mb:>8.1f}"
            + ("  (stopped at the cap)" if run.capped else "")
        )
    print()
    current = [run for run in runs if run.name.startswith("current")]
    baseline = [run for run in runs if run.name.startswith("baseline")]
    peak = max(run.wal_peak_mb for run in current)
    print(f"log peak under {PEAK_TARGET_MB:.0f} MB: {peak:.1f} MB -> {'met' if peak < PEAK_TARGET_MB else 'NOT met'}")
    for run in current:
        if run.resident_start_mb is None or run.resident_end_mb is None:
            continue
        start, end = run.resident_start_mb, run.resident_end_mb
        print(f"{run.name}: resident memory {start:.0f} MB after start ({'met' if start <= 120 else 'NOT met'}:"
              f" <= 120 MB), {end:.0f} MB after the load ({100 * (end / start - 1):+.0f}%,"
              f" {'met' if end <= start * 1.2 else 'NOT met'}: within 20%)")  # fmt: skip
    if not baseline:
        return
    # Medians over the rounds: other work on the machine moves single runs by more than a change does.
    for label, figure in (("requests/s", "requests_per_second"), ("CPU per request", "cpu_us_per_request")):
        ours = [getattr(run, figure) for run in current if getattr(run, figure)]
        theirs = [getattr(run, figure) for run in baseline if getattr(run, figure)]
        if ours and theirs:
            change = statistics.median(ours) / statistics.median(theirs) - 1
            print(f"{label} against the baseline (median of {len(ours)}): {100 * change:+.1f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="minutes of load per run (default 10)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    parser.add_argument("--no-worker", action="store_true", help="serve --no-worker, as llm_gateway.py")
    parser.add_argument("--baseline", metavar="REV", help="first run the same load on git revision REV's sources")
    parser.add_argument(
        "--rounds", type=int, default=1, help="alternate baseline and current runs this many times (default 1)"
    )
    parser.add_argument("--wal-cap-mb", type=float, default=4096, help="end a run whose log passes this (default 4096)")
    parser.add_argument("--no-pin", action="store_true", help="do not give the server a CPU of its own")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install -y wrk)")
    load_cpus, target_cpus = llm_gateway.cpu_split()
    if args.no_pin:
        target_cpus = None
    elif target_cpus is not None:
        os.sched_setaffinity(0, load_cpus)
    signal.signal(signal.SIGTERM, llm_gateway._interrupt)
    cap = int(args.wal_cap_mb * MB)
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="sustained-load-") as temporary:
        directory = Path(temporary)
        processes = Processes(directory, target_cpus)
        try:
            upstream = llm_gateway.start_upstream(processes, directory)
            plan: list[tuple[str, Path | None]] = []
            baseline = export_sources(args.baseline, directory) if args.baseline else None
            for round_number in range(1, args.rounds + 1):
                suffix = f"-{round_number}" if args.rounds > 1 else ""
                if baseline is not None:
                    plan.append((f"baseline{suffix}", baseline))
                plan.append((f"current{suffix}", None))
            for name, sources in plan:
                runs.append(
                    sustain(
                        processes,
                        directory,
                        upstream,
                        name=name,
                        sources=sources,
                        minutes=args.minutes,
                        connections=args.connections,
                        worker=not args.no_worker,
                        cap_bytes=cap,
                    )
                )
        except KeyboardInterrupt:
            print("\nInterrupted; stopping.", file=sys.stderr)
        finally:
            processes.stop_all()
    if runs:
        report(runs)
        if args.json:
            args.json.write_text(json.dumps([asdict(run) for run in runs], indent=2))


if __name__ == "__main__":
    main()
