"""Plans and health, in memory: order, mode, configuration, preferences, balance, circuits."""

from __future__ import annotations

import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from hypereal.catalog import Catalog, load_catalog
from hypereal.errors import (
    BadRequest,
    NotConfigured,
    ProviderRefused,
    UpstreamBusy,
    UpstreamError,
    UpstreamNotFound,
    UpstreamTimeout,
    ValidationFailed,
)
from hypereal.providers.pool import ProviderPool
from hypereal.routing import Health, Preferences, Router
from hypereal.routing.preferences import parse

CATALOG = """
providers:
  cheap: {type: openai-compatible, base_url: "http://127.0.0.1:9/v1"}
  dear: {type: openai-compatible, base_url: "http://127.0.0.1:9/v1"}
  keyed: {type: openai-compatible, api_key_env: ROUTING_UNIT_KEY, base_url: "http://127.0.0.1:9/v1"}
  pool:
    type: openai-compatible
    base_url: "http://127.0.0.1:9/v1"
    deployments: [{name: big, weight: 3}, {name: small, weight: 1}]
  quick: {type: scripted}
  slow: {type: scripted}
models:
  - id: talk
    category: llm
    name: Talk
    pricing: {input_per_mtok: 4, output_per_mtok: 8}
    routes:
      - {provider: dear, model: talk-1}
      - {provider: cheap, model: talk-1, pricing: {input_per_mtok: 1, output_per_mtok: 2}}
      - {provider: keyed, model: talk-1}
  - id: pooled
    category: llm
    name: Pooled
    pricing: {input_per_mtok: 1, output_per_mtok: 1}
    routes: [{provider: pool, model: p-1}, {provider: cheap, model: p-1}]
  - id: locked
    category: llm
    name: Locked
    pricing: {input_per_mtok: 1, output_per_mtok: 1}
    routes: [{provider: keyed, model: l-1}]
  - id: clip
    category: video
    name: Clip
    pricing: {per_call: 10, fast_surcharge_percent: 50}
    routes:
      - {provider: slow, model: c-1, modes: [auto]}
      - {provider: quick, model: c-1, modes: [fast]}
"""


@pytest.fixture
def catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Catalog:
    monkeypatch.delenv("ROUTING_UNIT_KEY", raising=False)
    path = tmp_path / "catalog.yaml"
    path.write_text(textwrap.dedent(CATALOG))
    return load_catalog(path)


@pytest.fixture
def health() -> Health:
    return Health(failures_to_open=3, cooldown=10, max_cooldown=40)


@pytest.fixture
def router(catalog: Catalog, health: Health) -> Router:
    return Router(catalog, ProviderPool(catalog), health, local_fallback=False)


def keys(router: Router, model: str, preferences: Preferences | None = None) -> list[str]:
    return [target.key for target in router.chat(router.catalog.resolve(model), preferences).targets]


def prefs(value: object, router: Router) -> Preferences | None:
    return parse(value, router.catalog.providers)


def test_a_plan_follows_the_catalog_and_the_configuration(router: Router, monkeypatch: pytest.MonkeyPatch) -> None:
    assert keys(router, "talk") == ["dear/talk-1", "cheap/talk-1"], "the route without its key is left out"
    monkeypatch.setenv("ROUTING_UNIT_KEY", "k")
    assert keys(router, "talk") == ["dear/talk-1", "cheap/talk-1", "keyed/talk-1"]
    plan = router.chat(router.catalog.resolve("talk"))
    assert plan is router.chat(router.catalog.resolve("talk")), "the common plan is made once"
    assert plan.targets[1].pricing.input_per_mtok == 1 and plan.targets[0].pricing.input_per_mtok == 4


def test_an_unconfigured_model_is_not_configured(router: Router) -> None:
    with pytest.raises(NotConfigured, match="ROUTING_UNIT_KEY"):
        router.chat(router.catalog.resolve("locked"))


def test_fast_mode_puts_the_fast_routes_first_and_keeps_the_others(router: Router) -> None:
    clip = router.catalog.resolve("clip")
    fast = router.media(clip, "fast").targets
    assert [(target.key, target.fast) for target in fast] == [("quick/c-1", True), ("slow/c-1", False)]
    assert [(target.key, target.fast) for target in router.media(clip, "auto").targets] == [("slow/c-1", False)]


def test_preferences_order_filter_and_sort(router: Router) -> None:
    assert keys(router, "talk", prefs({"order": ["cheap"]}, router)) == ["cheap/talk-1", "dear/talk-1"]
    assert keys(router, "talk", prefs({"sort": "price"}, router)) == ["cheap/talk-1", "dear/talk-1"]
    assert keys(router, "talk", prefs({"only": ["dear"]}, router)) == ["dear/talk-1"]
    assert keys(router, "talk", prefs({"ignore": ["dear"]}, router)) == ["cheap/talk-1"]
    assert keys(router, "talk", prefs({"allow_fallbacks": False}, router)) == ["dear/talk-1"]
    no_fallback = prefs({"order": ["cheap"], "allow_fallbacks": False}, router)
    assert keys(router, "talk", no_fallback) == ["cheap/talk-1"]
    with pytest.raises(ValidationFailed, match="served by dear, cheap"):
        keys(router, "talk", prefs({"only": ["quick"]}, router))


def test_sort_by_latency_uses_what_the_routes_did_lately(router: Router, health: Health) -> None:
    health.record("dear/talk-1", None, 0.9)
    health.record("cheap/talk-1", None, 0.1)
    assert keys(router, "talk", prefs({"sort": "latency"}, router)) == ["cheap/talk-1", "dear/talk-1"]


def test_preferences_keep_the_fast_routes_first(router: Router) -> None:
    clip = router.catalog.resolve("clip")
    plan = router.media(clip, "fast", prefs({"order": ["slow"]}, router))
    assert [target.key for target in plan.targets] == ["quick/c-1", "slow/c-1"]


def test_deployments_share_the_load_by_weight(router: Router, health: Health) -> None:
    pooled = router.catalog.resolve("pooled")
    firsts = Counter(router.chat(pooled).targets[0].key for _ in range(4000))
    assert set(firsts) == {"pool@big/p-1", "pool@small/p-1"}
    assert 0.68 < firsts["pool@big/p-1"] / 4000 < 0.82, firsts
    assert [target.key for target in router.chat(pooled).targets][2:] == ["cheap/p-1"]

    for _ in range(3):
        health.record("pool@big/p-1", UpstreamError("down"))
    assert {router.chat(pooled).targets[0].key for _ in range(50)} == {"pool@small/p-1"}, "an open one is left out"


def test_a_circuit_opens_after_failures_in_a_row_and_grows(router: Router, health: Health) -> None:
    health.record("dear/talk-1", UpstreamError("one"))
    health.record("dear/talk-1", None, 0.1)  # an answer in between: not in a row
    for _ in range(2):
        health.record("dear/talk-1", UpstreamTimeout("slow"))
    assert keys(router, "talk")[0] == "dear/talk-1"
    health.record("dear/talk-1", UpstreamError("three"))
    entry = health.routes["dear/talk-1"]
    assert entry.state(time.time()) == "open" and entry.timeouts == 2 and entry.errors == 4
    assert 9 < entry.open_until - time.time() <= 10
    assert keys(router, "talk") == ["cheap/talk-1"]

    entry.open_until = time.time() - 1  # the cooling period is over: half-open
    assert keys(router, "talk") == ["dear/talk-1", "cheap/talk-1"], "this plan's request is the probe"
    assert keys(router, "talk") == ["cheap/talk-1"], "one probe at a time"
    health.record("dear/talk-1", UpstreamError("still down"))
    assert entry.state(time.time()) == "open" and entry.opened == 2
    assert 19 < entry.open_until - time.time() <= 20, "twice as long"

    entry.open_until = time.time() - 1
    assert keys(router, "talk")[0] == "dear/talk-1"
    health.record("dear/talk-1", None, 0.2)
    assert entry.state(time.time()) == "closed" and entry.opened == 0
    assert keys(router, "talk") == ["dear/talk-1", "cheap/talk-1"]


def test_when_every_route_is_out_the_plan_says_when_to_retry(router: Router, health: Health) -> None:
    health.record("dear/talk-1", UpstreamBusy("slow down", retry_after=30))
    health.record("cheap/talk-1", ProviderRefused())
    with pytest.raises(UpstreamBusy) as raised:
        keys(router, "talk")
    assert 28 < (raised.value.retry_after or 0) <= 30
    assert raised.value.headers()["Retry-After"] in ("29", "30")


@pytest.mark.parametrize(
    ("error", "outcome", "counted"),
    [
        (UpstreamNotFound("no such model", upstream_status=404), "neutral", False),
        (BadRequest("bad input", upstream_status=400), "answered", True),
        (ValidationFailed("ours, before any call"), "neutral", False),
        (UpstreamBusy("busy"), "failed", True),
        (ProviderRefused(), "refused", True),
    ],
)
def test_what_each_error_says_about_a_route(health: Health, error: Exception, outcome: str, counted: bool) -> None:
    assert health.record("r/m", error) == outcome
    assert ("r/m" in health.routes) is counted


def test_a_refused_key_is_left_out_longest(health: Health) -> None:
    health.record("r/m", ProviderRefused())
    assert 39 < health.routes["r/m"].open_until - time.time() <= 40
