"""How long the default `hypereal serve` takes to answer after its start, and its memory then.

    .venv/bin/python bench/startup.py [--rounds 7]

Each round starts `hypereal serve` (as `./scripts/serve` runs it: the worker in the process,
the embedded SQLite, the built-in offline models) twice: on a new data directory (the
database created at the newest revision) and again on the same one (a restart, the common case), and
reads the time from the process's start to its first answer from `/healthz` (polled every
10 ms) and its resident memory then. Printed: the median, least and most of each over the
rounds. The modules' bytecode is cached as in an installed server (the first round's first
start writes it when missing).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import llm_gateway
from llm_gateway import Processes

TARGET_SECONDS = 1.0
TARGET_MB = 120.0


def start_once(processes: Processes, data_dir: Path) -> tuple[float, float]:
    """(seconds to the first answer, resident MB then) of one start, stopped after."""
    port = llm_gateway.free_port()
    env = llm_gateway.clean_environ({"HYPEREAL_DATA_DIR": str(data_dir), "HYPEREAL_LOG_LEVEL": "warning"})
    command = [sys.executable, "-m", "hypereal.cli", "serve", "--port", str(port)]
    began = time.monotonic()
    process = processes.start("serve", command, env, pinned=False)
    llm_gateway.wait_until_ready(
        f"http://127.0.0.1:{port}/healthz", process, lambda: processes.log_tail("serve"), timeout=60
    )
    seconds = time.monotonic() - began
    resident = llm_gateway.resident_mb(process.pid) or 0.0
    processes.stop(process)
    return seconds, resident


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="starts of each kind (default 7)")
    args = parser.parse_args()
    figures: dict[str, list[tuple[float, float]]] = {"new data directory": [], "restart": []}
    with tempfile.TemporaryDirectory(prefix="startup-bench-") as temporary:
        directory = Path(temporary)
        processes = Processes(directory, None)
        try:
            start_once(processes, directory / "warm-up")  # bytecode written, files in the page cache
            for index in range(args.rounds):
                data_dir = directory / f"data-{index}"
                figures["new data directory"].append(start_once(processes, data_dir))
                figures["restart"].append(start_once(processes, data_dir))
        finally:
            processes.stop_all()
    print(f"{'start':<20} {'seconds: median':>16} {'least':>7} {'most':>7} {'resident MB':>12}")
    for kind, runs in figures.items():
        seconds = [run[0] for run in runs]
        resident = statistics.median(run[1] for run in runs)
        print(
            f"{kind:<20} {statistics.median(seconds):>16.2f} {min(seconds):>7.2f} {max(seconds):>7.2f}"
            f" {resident:>12.0f}"
        )
    for kind, runs in figures.items():
        seconds = statistics.median(run[0] for run in runs)
        resident = statistics.median(run[1] for run in runs)
        print(f"<= {TARGET_SECONDS:g} s to answer, {kind}: {seconds:.2f} s ->"
              f" {'met' if seconds <= TARGET_SECONDS else 'NOT met'}")  # fmt: skip
        print(f"<= {TARGET_MB:g} MB resident after start, {kind}: {resident:.0f} MB ->"
              f" {'met' if resident <= TARGET_MB else 'NOT met'}")  # fmt: skip


if __name__ == "__main__":
    main()
