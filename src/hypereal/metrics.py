"""Prometheus metrics, in a registry of the app's own so tests and several apps don't collide."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest


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

    def render(self) -> bytes:
        return generate_latest(self.registry)
