"""The fast lane answers the busiest routes itself, exactly as FastAPI's stack would have."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from hypereal.api.fastlane import FastLane
from tests.conftest import TestAccount
from tests.integration.test_health_metrics import sample

CHAT = {"model": "local-echo", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8}


@pytest.fixture
def lane_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    served: list[str] = []
    original = FastLane.serve

    async def counting(self: FastLane, route: Any, scope: Any, receive: Any, send: Any) -> None:
        served.append(scope["path"])
        await original(self, route, scope, receive, send)

    monkeypatch.setattr(FastLane, "serve", counting)
    return served


@pytest.mark.parametrize("prefix", ["/v1", "/api/v1"])
async def test_chat_completions_go_through_the_lane(
    client: httpx.AsyncClient, make_account: Any, lane_calls: list[str], prefix: str
) -> None:
    account: TestAccount = await make_account(rate_limit_per_hour=10)

    answer = await client.post(f"{prefix}/chat/completions", json=CHAT, headers=account.headers)

    assert lane_calls == [f"{prefix}/chat/completions"]
    assert answer.status_code == 200
    assert answer.json()["choices"][0]["message"]["role"] == "assistant"
    assert answer.headers["x-ratelimit-limit"] == "10" and answer.headers["x-ratelimit-remaining"] == "9"


async def test_errors_in_the_lane_keep_the_surface_shape_and_status(
    client: httpx.AsyncClient, make_account: Any, lane_calls: list[str]
) -> None:
    account: TestAccount = await make_account(rate_limit_per_hour=1)

    anonymous = await client.post("/v1/chat/completions", json=CHAT)
    missing_model = await client.post("/v1/chat/completions", json={"messages": []}, headers=account.headers)
    limited = await client.post("/v1/chat/completions", json=CHAT, headers=account.headers)
    too_large = await client.post(
        "/v1/chat/completions", content=b"{" + b" " * (33 * 1024 * 1024) + b"}", headers=account.headers
    )

    assert len(lane_calls) == 3, "a body over the cap is refused before any route"
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "invalid_api_key"
    assert missing_model.status_code == 400
    assert missing_model.json()["error"]["message"] == "Model is required"
    assert missing_model.headers["x-ratelimit-remaining"] == "0"
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert limited.json()["error"]["type"] == "rate_limit_error"
    assert too_large.status_code == 413


async def test_the_lane_is_counted_in_metrics_by_route(
    client: httpx.AsyncClient, make_account: Any, lane_calls: list[str]
) -> None:
    account: TestAccount = await make_account()
    await client.post("/v1/chat/completions", json=CHAT, headers=account.headers)
    await client.post("/api/v1/chat/completions", json={}, headers=account.headers)

    text = (await client.get("/metrics")).text
    total = "hypereal_http_requests_total"
    assert sample(text, total, method="POST", route="/v1/chat/completions", status="200") == 1
    assert sample(text, total, method="POST", route="/api/v1/chat/completions", status="400") == 1


async def test_other_methods_and_paths_still_go_through_fastapi(
    client: httpx.AsyncClient, lane_calls: list[str]
) -> None:
    listing = await client.get("/v1/chat/completions")
    slashed = await client.post("/v1/chat/completions/", json=CHAT)

    assert lane_calls == []
    assert listing.status_code == 200 and any(model["id"] == "local-echo" for model in listing.json()["data"])
    assert slashed.status_code in (307, 401, 404)


async def test_the_openapi_document_still_lists_the_lane_routes(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert "post" in paths["/api/v1/chat/completions"]


@pytest.mark.parametrize(
    ("path", "body", "error_of"),
    [
        ("/v1/chat", {"messages": [{"role": "user", "content": "hi"}]}, lambda body: body["error"]),
        (
            "/v1/messages",
            {"model": "local-echo", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]},
            lambda body: body["error"]["message"],
        ),
        ("/v1/responses", {"model": "local-echo", "input": "hi"}, lambda body: body["error"]["message"]),
    ],
)
async def test_every_chat_surface_takes_the_lane_with_its_own_errors(
    client: httpx.AsyncClient,
    make_account: Any,
    lane_calls: list[str],
    path: str,
    body: dict[str, Any],
    error_of: Any,
) -> None:
    account: TestAccount = await make_account()

    answer = await client.post(path, json=body, headers=account.headers)
    broken = await client.post(path, content=b"{not json", headers=account.headers)

    assert lane_calls == [path, path]
    assert answer.status_code == 200, answer.text
    assert broken.status_code == 400
    assert error_of(broken.json()) == "Request body is not valid JSON"
