"""The API's traffic in the last hour, for the operator's system screen.

Prometheus counters only grow, so the last hour is what they hold now minus what they held
an hour ago: a task notes the request counters once a minute and keeps an hour of notes. A
process up for less than an hour reports since it started. Each process counts its own
requests; behind a load balancer, the screen shows the process that served it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass

from hypereal.metrics import Metrics
from hypereal.services import Services

NOTE_EVERY_SECONDS = 60.0
WINDOW_SECONDS = 3600.0
Counts = dict[tuple[str, str], tuple[int, int, float]]
"""(method, route) -> (requests, server errors, seconds spent)."""


@dataclass(frozen=True, slots=True)
class RouteTraffic:
    method: str
    route: str
    requests: int
    errors: int
    mean_ms: float | None


def read(metrics: Metrics) -> Counts:
    counts: dict[tuple[str, str], list[float]] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            labels = sample.labels
            route = labels.get("route", "")
            if not route.startswith(("/api/", "/v1/")):
                continue
            entry = counts.setdefault((labels["method"], route), [0, 0, 0.0])
            if sample.name == "hypereal_http_requests_total":
                entry[0] += sample.value
                if labels.get("status", "").startswith("5"):
                    entry[1] += sample.value
            elif sample.name == "hypereal_http_request_seconds_sum":
                entry[2] += sample.value
    return {key: (int(value[0]), int(value[1]), value[2]) for key, value in counts.items()}


class TrafficWindow:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.notes: deque[tuple[float, Counts]] = deque([(time.time(), {})])

    def note(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        self.notes.append((now, read(self.metrics)))
        while len(self.notes) > 1 and self.notes[1][0] <= now - WINDOW_SECONDS:
            self.notes.popleft()

    def last_hour(self, now: float | None = None) -> tuple[float, list[RouteTraffic]]:
        """Since when (at most an hour ago), and each route's traffic since then, busiest first."""
        now = time.time() if now is None else now
        since, before = next(
            ((when, counts) for when, counts in self.notes if when >= now - WINDOW_SECONDS), self.notes[-1]
        )
        rows = []
        for (method, route), (requests, errors, seconds) in read(self.metrics).items():
            old_requests, old_errors, old_seconds = before.get((method, route), (0, 0, 0.0))
            count = requests - old_requests
            if count > 0:
                mean = 1000 * (seconds - old_seconds) / count
                rows.append(RouteTraffic(method, route, count, errors - old_errors, mean))
        return since, sorted(rows, key=lambda row: -row.requests)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(NOTE_EVERY_SECONDS)
            self.note()


def traffic(services: Services) -> TrafficWindow:
    """The process's traffic window; its notes start with the first call (at start-up)."""
    found = services.extensions.get("console-traffic")
    if found is None:
        found = services.extensions["console-traffic"] = TrafficWindow(services.metrics)
        services.spawn(found.run(), "console-traffic")
    assert isinstance(found, TrafficWindow)
    return found
