"""Prometheus metrics, in a registry of the app's own so tests and several apps don't collide."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from hypereal.routing.health import Health

ROUTE_STATES = {"closed": 0, "half-open": 1, "open": 2}


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        # `labels()` takes a lock and builds its key on every call: a few percent of a small request.
        self._request_series: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.requests = Counter(
            "hypereal_http_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "hypereal_http_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.credits_charged = Counter(
            "hypereal_credits_charged", "Credits charged (net of settlements)", registry=self.registry
        )
        self.credits_refunded = Counter("hypereal_credits_refunded", "Credits refunded", registry=self.registry)
        self.jobs_finished = Counter(
            "hypereal_jobs_finished", "Jobs that reached a terminal state", ["type", "status"], registry=self.registry
        )
        self.webhook_attempts = Counter(
            "hypereal_webhook_attempts", "Webhook delivery attempts by outcome", ["outcome"], registry=self.registry
        )

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request; the labelled series are looked up once per label set."""
        key = (method, route, status)
        series = self._request_series.get(key)
        if series is None:
            series = self._request_series[key] = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
        series[0].inc()
        series[1].observe(seconds)

    def watch_routes(self, health: Health) -> None:
        """Each route's state and counters, read from `health` when scraped: nothing is
        counted on the request path for them."""
        self.registry.register(_Routes(health))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Routes(Collector):
    def __init__(self, health: Health) -> None:
        self.health = health

    def collect(self) -> Iterator[Metric]:
        labels = ["route"]
        state = GaugeMetricFamily(
            "hypereal_route_state", "Circuit of each route: 0 closed, 1 half-open, 2 open", labels=labels
        )
        calls = CounterMetricFamily("hypereal_route_calls", "Upstream calls on each route", labels=labels)
        errors = CounterMetricFamily("hypereal_route_errors", "Upstream calls that failed, by route", labels=labels)
        timeouts = CounterMetricFamily("hypereal_route_timeouts", "Upstream calls that timed out", labels=labels)
        latency = GaugeMetricFamily(
            "hypereal_route_latency_seconds", "Recent seconds to an upstream's first byte (average)", labels=labels
        )
        now = time.time()
        for route in self.health:
            state.add_metric([route.key], ROUTE_STATES[route.state(now)])
            calls.add_metric([route.key], route.requests)
            errors.add_metric([route.key], route.errors)
            timeouts.add_metric([route.key], route.timeouts)
            if route.latency is not None:
                latency.add_metric([route.key], route.latency)
        yield from (state, calls, errors, timeouts, latency)
