"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from hypereal.services import Services
from hypereal.units import to_milli
from tests.conftest import TestAccount


def sample(metrics_text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    for line in metrics_text.splitlines():
        if line.startswith("#"):
            continue
        match = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        if found == labels:
            return float(match.group(3))
    return 0.0


async def test_healthz_and_readyz(client: httpx.AsyncClient) -> None:
    alive = await client.get("/healthz")
    assert alive.status_code == 200 and alive.json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}


async def test_readyz_fails_when_the_database_does_not_answer(
    client: httpx.AsyncClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def unreachable() -> None:
        raise ConnectionRefusedError("connection refused")

    monkeypatch.setattr(services.db, "ping", unreachable)
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"error": "Database unreachable"}
    assert (await client.get("/healthz")).status_code == 200


async def test_metrics_count_requests_by_route_and_status(client: httpx.AsyncClient, make_account: Any) -> None:
    account: TestAccount = await make_account(rate_limit_per_hour=2)
    for _ in range(3):
        await client.get("/api/v1/account", headers=account.headers)
    await client.get("/v1/account", headers={"x-api-key": "ck_nobody"})
    await client.get("/v1/models/local-image")
    await client.get("/v1/no/such/route")

    text = (await client.get("/metrics")).text
    total = "hypereal_http_requests_total"
    assert sample(text, total, method="GET", route="/api/v1/account", status="200") == 2
    assert sample(text, total, method="GET", route="/api/v1/account", status="429") == 1
    assert sample(text, total, method="GET", route="/v1/account", status="401") == 1
    # Paths are recorded by their template, so ids do not explode the label set.
    assert sample(text, total, method="GET", route="/v1/models/{model_id}", status="200") == 1
    assert sample(text, total, method="GET", route="unmatched", status="404") == 1
    assert sample(text, "hypereal_http_request_seconds_count", method="GET", route="/api/v1/account") == 3


async def test_metrics_count_credits(client: httpx.AsyncClient, services: Services, make_account: Any) -> None:
    account: TestAccount = await make_account(credits=500)
    await services.billing.charge(account.id, to_milli(120), "job_a")
    await services.billing.charge(account.id, to_milli(30), "job_b")
    await services.billing.refund(account.id, "job_b")
    await services.billing.settle(account.id, "job_a", to_milli(100))

    text = (await client.get("/metrics")).text
    assert sample(text, "hypereal_credits_charged_total") == 150
    assert sample(text, "hypereal_credits_refunded_total") == 50
    assert (await client.get("/metrics")).headers["content-type"].startswith("text/plain")
