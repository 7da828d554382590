"""Routing through a real server: chat models on two routes whose upstreams fail on command.

Each route is an OpenAI double behind a `FaultyProxy` (`route-a`, `route-b`); every test
uses models of its own, so the health of one test's routes is not another's. Routes are
left out for 1 s after three failures in a row, twice as long each time again, at most 4 s.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import ADMIN_HEADERS, Server
from tests.doubles.faults import FaultyProxy
from tests.doubles.openai_double import BackgroundServer, OpenAIDouble

PRICING = "{input_per_mtok: 1000000, output_per_mtok: 2000000}"
MODELS = ("rt-basic", "rt-stream", "rt-timeout", "rt-down", "rt-limited", "rt-circuit", "rt-refused", "rt-prefs")
ROUTE_SETTINGS = {
    "HYPEREAL_ROUTE_FAILURES_TO_OPEN": "3",
    "HYPEREAL_ROUTE_COOLDOWN_SECONDS": "1",
    "HYPEREAL_ROUTE_COOLDOWN_MAX_SECONDS": "4",
}


def catalog_text(a: str, b: str, key_env: str, models: tuple[str, ...] = MODELS) -> str:
    providers = (
        "providers:\n"
        f"  route-a: {{type: openai, api_key_env: {key_env}, base_url: '{a}', timeout_seconds: 1}}\n"
        f"  route-b: {{type: openai, api_key_env: {key_env}, base_url: '{b}', timeout_seconds: 1}}\n"
    )
    entries = "".join(
        f"  - id: {model}\n    category: llm\n    name: {model}\n    pricing: {PRICING}\n"
        f"    routes: [{{provider: route-a, model: up-{model}}}, {{provider: route-b, model: up-{model}}}]\n"
        for model in models
    )
    pooled = (
        f"  pooled:\n    type: openai\n    api_key_env: {key_env}\n    timeout_seconds: 1\n"
        f"    deployments: [{{name: one, base_url: '{a}', weight: 3}}, {{name: two, base_url: '{b}'}}]\n"
    )
    pool_model = (
        f"  - id: rt-pool\n    category: llm\n    name: rt-pool\n    pricing: {PRICING}\n"
        "    routes: [{provider: pooled, model: up-rt-pool}]\n"
    )
    return providers + pooled + "models:\n" + entries + pool_model


@dataclass
class Stack:
    server: Server
    gpt: OpenAIDouble
    a: FaultyProxy
    b: FaultyProxy
    key: str

    def chat(self, model: str, **extra: Any) -> httpx.Response:
        body = {"model": model, "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}], **extra}
        headers = {"Authorization": f"Bearer {self.key}", "content-type": "application/json"}
        return httpx.post(self.server.url + "/v1/chat/completions", content=orjson.dumps(body), headers=headers)

    def route(self, key: str) -> dict[str, Any]:
        return route_of(self.server, key)


def route_of(server: Server, key: str) -> dict[str, Any]:
    routes = httpx.get(server.url + "/api/v1/admin/routes", headers=ADMIN_HEADERS).json()["data"]
    return next((route for route in routes if route["route"] == key), {"state": "closed"})


def new_account(server: Server) -> str:
    made = httpx.post(
        server.url + "/api/v1/admin/accounts", json={"name": "r", "credits": 100_000}, headers=ADMIN_HEADERS
    )
    keys = f"/api/v1/admin/accounts/{made.json()['id']}/keys"
    return str(httpx.post(server.url + keys, json={}, headers=ADMIN_HEADERS).json()["key"])


def eventually(check: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def stack(start_server: Callable[..., Server], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with (
        BackgroundServer(OpenAIDouble()) as gpt,
        BackgroundServer(FaultyProxy(gpt.url)) as a,
        BackgroundServer(FaultyProxy(gpt.url)) as b,
    ):
        catalog = tmp_path_factory.mktemp("routing") / "catalog.yaml"
        catalog.write_text(catalog_text(a.url, b.url, "ROUTING_KEY"))
        server = start_server(env={"HYPEREAL_CATALOG": str(catalog), "ROUTING_KEY": gpt.key, **ROUTE_SETTINGS})
        yield Stack(server, gpt, a, b, new_account(server))


@pytest.fixture(autouse=True)
def no_faults(stack: Stack) -> None:
    stack.a.clear()
    stack.b.clear()


def test_a_model_keeps_answering_while_one_of_its_routes_fails(stack: Stack) -> None:
    stack.a.fail_share(0.3, status=503, seed=7)
    answers = [stack.chat("rt-basic") for _ in range(20)]
    assert [answer.status_code for answer in answers] == [200] * 20
    failed_over = [answer for answer in answers if "x-hypereal-tried" in answer.headers]
    assert 0 < len(failed_over) == stack.a.failed
    for answer in failed_over:
        assert answer.headers["x-hypereal-served-by"] == "route-b/up-rt-basic"
        assert answer.headers["x-hypereal-tried"] == "route-a/up-rt-basic=503, route-b/up-rt-basic=ok"
    assert any(answer.headers["x-hypereal-served-by"] == "route-a/up-rt-basic" for answer in answers)
    assert stack.route("route-a/up-rt-basic")["errors"] == len(failed_over)


def test_a_stream_fails_over_before_its_first_byte(stack: Stack) -> None:
    stack.a.fail(502)
    headers = {"Authorization": f"Bearer {stack.key}"}
    body = {"model": "rt-stream", "stream": True, "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
    with httpx.stream("POST", stack.server.url + "/v1/chat/completions", json=body, headers=headers) as answer:
        text = answer.read().decode()
        assert answer.status_code == 200
        assert answer.headers["x-hypereal-tried"] == "route-a/up-rt-stream=502, route-b/up-rt-stream=ok"
    assert "Hello from OpenAI: hi" in "".join(
        chunk["choices"][0]["delta"].get("content", "")
        for line in text.splitlines()
        if line.startswith("data: {")
        for chunk in [orjson.loads(line[6:])]
        if chunk["choices"]
    )


@pytest.mark.parametrize(
    ("model", "fault", "said"),
    [
        ("rt-timeout", "hang", "timeout"),
        ("rt-timeout", "slow_first_byte", "timeout"),
        ("rt-down", "down", "unreachable"),
    ],
)
def test_timeouts_and_lost_connections_fail_over(stack: Stack, model: str, fault: str, said: str) -> None:
    if fault == "down":
        stack.a.down()
    else:
        getattr(stack.a, fault)(2.0)  # the routes time out after 1 s
    answer = stack.chat(model)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-hypereal-tried"] == f"route-a/up-{model}={said}, route-b/up-{model}=ok"


def test_a_rate_limit_with_retry_after_cools_the_route_for_that_long(stack: Stack) -> None:
    stack.a.fail(429, retry_after=3)
    assert stack.chat("rt-limited").headers["x-hypereal-tried"].startswith("route-a/up-rt-limited=429")
    cooled = stack.route("route-a/up-rt-limited")
    assert cooled["state"] == "open" and "rate limited for 3 s" in cooled["reason"]
    seen = stack.a.requests
    answers = [stack.chat("rt-limited") for _ in range(3)]
    assert all(answer.headers["x-hypereal-served-by"] == "route-b/up-rt-limited" for answer in answers)
    assert all("x-hypereal-tried" not in answer.headers for answer in answers), "left out, not tried"
    assert stack.a.requests == seen
    eventually(lambda: stack.route("route-a/up-rt-limited")["state"] == "closed", 6)
    assert stack.chat("rt-limited").headers["x-hypereal-served-by"] == "route-a/up-rt-limited"


def test_the_circuit_opens_half_opens_with_one_probe_and_closes(stack: Stack) -> None:
    key = "route-a/up-rt-circuit"
    stack.a.fail(500, times=3)
    for _ in range(3):
        assert stack.chat("rt-circuit").headers["x-hypereal-served-by"] == "route-b/up-rt-circuit"
    opened = stack.route(key)
    assert opened["state"] == "open" and opened["times_opened"] == 1 and opened["errors"] == 3
    assert "3 failures in a row" in opened["reason"]
    seen = stack.a.requests
    assert stack.chat("rt-circuit").headers["x-hypereal-served-by"] == "route-b/up-rt-circuit"
    assert stack.a.requests == seen, "an open route is not called"

    metrics = httpx.get(stack.server.url + "/metrics").text
    assert f'hypereal_route_state{{route="{key}"}} 2.0' in metrics
    assert f'hypereal_route_errors_total{{route="{key}"}} 3.0' in metrics

    # Half-open: the probe fails, so the route opens again, for twice as long.
    eventually(lambda: stack.route(key)["state"] == "half-open")
    stack.a.fail(500)
    probe = stack.chat("rt-circuit")
    assert probe.headers["x-hypereal-tried"] == "route-a/up-rt-circuit=500, route-b/up-rt-circuit=ok"
    again = stack.route(key)
    assert again["state"] == "open" and again["times_opened"] == 2 and again["reopens_in_seconds"] > 1

    # The next probe answers: closed, and the route serves again.
    eventually(lambda: stack.route(key)["state"] == "half-open")
    assert stack.chat("rt-circuit").headers["x-hypereal-served-by"] == key
    closed = stack.route(key)
    assert closed["state"] == "closed" and closed["times_opened"] == 0
    assert f'hypereal_route_state{{route="{key}"}} 0.0' in httpx.get(stack.server.url + "/metrics").text


def test_a_refused_key_cools_the_route_and_tells_the_operator(stack: Stack) -> None:
    stack.a.fail(401, body={"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}})
    answer = stack.chat("rt-refused")
    assert answer.status_code == 200
    assert answer.headers["x-hypereal-tried"] == "route-a/up-rt-refused=401, route-b/up-rt-refused=ok"
    refused = stack.route("route-a/up-rt-refused")
    assert refused["state"] == "open" and "refused our credentials" in refused["reason"]
    assert refused["reopens_in_seconds"] > 3, "the longest cooling period"
    eventually(lambda: "ERROR" in stack.server.output() and "route-a/up-rt-refused" in stack.server.output())


def test_when_every_route_fails_the_last_error_is_the_answer(stack: Stack) -> None:
    stack.a.fail(503)
    stack.b.fail(429, retry_after=1)
    answer = stack.chat("rt-basic")
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "1"
    assert answer.json()["error"]["type"] == "server_error"


def test_preferences_choose_the_routes_and_are_not_forwarded(stack: Stack) -> None:
    first = stack.chat("rt-prefs", provider={"order": ["route-b"]})
    assert first.headers["x-hypereal-served-by"] == "route-b/up-rt-prefs"
    assert "provider" not in stack.gpt.requests[-1].body, "the preferences stay with us"
    only = stack.chat("rt-prefs", provider={"only": ["route-a"]})
    assert only.headers["x-hypereal-served-by"] == "route-a/up-rt-prefs"
    ignored = stack.chat("rt-prefs", provider={"ignore": ["route-a"]})
    assert ignored.headers["x-hypereal-served-by"] == "route-b/up-rt-prefs"

    stack.b.fail(503)
    fell_back = stack.chat("rt-prefs", provider={"order": ["route-b"]})
    assert fell_back.headers["x-hypereal-tried"] == "route-b/up-rt-prefs=503, route-a/up-rt-prefs=ok"
    stack.b.fail(503)
    seen = stack.a.requests
    alone = stack.chat("rt-prefs", provider={"order": ["route-b"], "allow_fallbacks": False})
    assert alone.status_code == 503 and stack.a.requests == seen


def test_deployments_of_a_provider_share_its_load_and_cover_for_each_other(stack: Stack) -> None:
    before = (stack.a.requests, stack.b.requests)
    answers = [stack.chat("rt-pool") for _ in range(40)]
    assert all(answer.headers["x-hypereal-served-by"] == "pooled/up-rt-pool" for answer in answers)
    to_one, to_two = stack.a.requests - before[0], stack.b.requests - before[1]
    assert to_one + to_two == 40 and to_one > to_two > 0, (to_one, to_two)

    stack.a.down()
    answers = [stack.chat("rt-pool") for _ in range(10)]
    assert [answer.status_code for answer in answers] == [200] * 10
    assert {answer.headers.get("x-hypereal-tried") for answer in answers} <= {
        None,
        "pooled/up-rt-pool=unreachable, pooled/up-rt-pool=ok",
    }
    eventually(lambda: stack.route("pooled@one/up-rt-pool")["state"] == "open")
    assert stack.route("pooled@two/up-rt-pool")["state"] == "closed"


def test_a_key_carries_default_preferences_that_a_request_replaces(stack: Stack) -> None:
    account = httpx.post(
        stack.server.url + "/api/v1/admin/accounts", json={"name": "keyed", "credits": 1000}, headers=ADMIN_HEADERS
    ).json()
    made = httpx.post(
        stack.server.url + f"/api/v1/admin/accounts/{account['id']}/keys", json={}, headers=ADMIN_HEADERS
    ).json()
    keyed = Stack(stack.server, stack.gpt, stack.a, stack.b, made["key"])
    where = stack.server.url + f"/api/v1/admin/keys/{made['id']}/provider"

    assert httpx.put(where, json={"order": ["nowhere"]}, headers=ADMIN_HEADERS).status_code == 400
    saved = httpx.put(where, json={"order": ["route-b"]}, headers=ADMIN_HEADERS)
    assert saved.status_code == 200 and saved.json()["provider"] == {"order": ["route-b"]}
    listed = httpx.get(stack.server.url + f"/api/v1/admin/accounts/{account['id']}/keys", headers=ADMIN_HEADERS)
    assert listed.json()["data"][0]["provider"] == {"order": ["route-b"]}

    assert keyed.chat("rt-prefs").headers["x-hypereal-served-by"] == "route-b/up-rt-prefs"
    own = keyed.chat("rt-prefs", provider={"order": ["route-a"]})
    assert own.headers["x-hypereal-served-by"] == "route-a/up-rt-prefs"
    assert stack.chat("rt-prefs").headers["x-hypereal-served-by"] == "route-a/up-rt-prefs", "other keys unchanged"

    assert httpx.put(where, content=b"null", headers=ADMIN_HEADERS).json()["provider"] is None
    assert keyed.chat("rt-prefs").headers["x-hypereal-served-by"] == "route-a/up-rt-prefs"


@pytest.mark.parametrize(
    ("preferences", "field", "words"),
    [
        ({"order": ["route-c"]}, "provider.order", "unknown provider 'route-c'; did you mean 'route-"),
        ({"only": "route-a"}, "provider.only", "must be a list"),
        ({"sort": "cost"}, "provider.sort", "'price' or 'latency'"),
        ({"allow_fallbacks": "no"}, "provider.allow_fallbacks", "true or false"),
        ({"prefer": ["route-a"]}, "provider.prefer", "not a preference"),
        ({"only": ["route-a"], "ignore": ["route-a"]}, "provider", "left by your provider preferences"),
        ("route-a", "provider", "must be an object"),
    ],
)
def test_malformed_preferences_are_a_400_naming_the_field(
    stack: Stack, preferences: Any, field: str, words: str
) -> None:
    answer = stack.chat("rt-prefs", provider=preferences)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == field and words in error["message"]


def test_processes_on_redis_agree_on_the_state_of_a_route(
    start_server: Callable[..., Server], tmp_path_factory: pytest.TempPathFactory, redis_url: str
) -> None:
    model = f"rt-shared-{secrets.token_hex(4)}"  # Redis outlives test runs: a key of this run's own
    key = f"route-a/up-{model}"
    with (
        BackgroundServer(OpenAIDouble()) as gpt,
        BackgroundServer(FaultyProxy(gpt.url)) as a,
        BackgroundServer(FaultyProxy(gpt.url)) as b,
    ):
        catalog = tmp_path_factory.mktemp("shared") / "catalog.yaml"
        catalog.write_text(catalog_text(a.url, b.url, "ROUTING_KEY", (model,)))
        env = {"HYPEREAL_CATALOG": str(catalog), "ROUTING_KEY": gpt.key, "HYPEREAL_REDIS_URL": redis_url}
        one, two = (start_server(env={**env, **ROUTE_SETTINGS}) for _ in range(2))
        first, second = (Stack(server, gpt, a, b, new_account(server)) for server in (one, two))

        a.fail(500, times=3)
        for _ in range(3):
            assert first.chat(model).headers["x-hypereal-served-by"] == f"route-b/up-{model}"
        eventually(lambda: second.route(key)["state"] == "open")
        seen = a.requests
        assert second.chat(model).headers["x-hypereal-served-by"] == f"route-b/up-{model}"
        assert a.requests == seen, "the second process leaves the route out too"
        late = start_server(env={**env, **ROUTE_SETTINGS, "HYPEREAL_ROUTE_COOLDOWN_SECONDS": "1"})
        assert route_of(late, key)["state"] in ("open", "half-open"), "a process started later reads it from Redis"

        eventually(lambda: first.route(key)["state"] == "half-open")
        assert first.chat(model).headers["x-hypereal-served-by"] == key  # the probe answers
        eventually(lambda: second.route(key)["state"] == "closed")
