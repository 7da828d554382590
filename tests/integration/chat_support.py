"""A running server whose chat models are served by protocol doubles, and accounts that read
their ledger back.

Prices in the catalog make one input token cost 1 credit, one output token 2 credits and
one cached input token 0.1 credit, so every settlement is an exact figure. The models:

    bill-gpt        the OpenAI double's Chat Completions (Chat Completions clients are forwarded)
    bill-chat       the OpenAI double's Chat Completions behind an `openai-compatible` provider,
                    which takes nothing else: Responses clients are translated too
    bill-claude     the Anthropic double
    bill-codex      the OpenAI double's Responses API (the upstream model's name matches `*codex*`)
    bill-echo       local-echo
    bill-slow       local-echo, one word each 50 ms
    bill-fallback   the OpenAI double, then the slow local-echo
    bill-mixed      the Anthropic double, then the OpenAI double
    bill-echo-claude  the slow local-echo, which runs no hosted tool, then the Anthropic double
    bill-echo-gpt     the slow local-echo, then the OpenAI double
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.conftest import ADMIN_HEADERS, Server
from tests.doubles.anthropic_double import AnthropicDouble
from tests.doubles.openai_double import BackgroundServer, OpenAIDouble

PRICING = "{input_per_mtok: 1000000, output_per_mtok: 2000000, cached_input_per_mtok: 100000}"


def _model(model_id: str, *routes: str) -> str:
    lines = "".join(f"      - {{provider: {provider}, model: upstream-{model_id}}}\n" for provider in routes)
    return (
        f"  - id: {model_id}\n    category: llm\n    name: {model_id}\n    description: A billing test model.\n"
        f"    max_output_tokens: 1000\n    pricing: {PRICING}\n    routes:\n{lines}"
    )


@dataclass
class Stack:
    server: Server
    gpt: OpenAIDouble
    claude: AnthropicDouble

    def account(self, credits: int = 5000) -> Client:
        return open_account(self.server.url, credits)


def open_account(server_url: str, credits: int = 5000) -> Client:
    """A new account holding `credits`, and a key to it, made through the admin API."""
    made = httpx.post(
        server_url + "/api/v1/admin/accounts", json={"name": "billing", "credits": credits}, headers=ADMIN_HEADERS
    ).json()
    keys = server_url + f"/api/v1/admin/accounts/{made['id']}/keys"
    key = httpx.post(keys, json={}, headers=ADMIN_HEADERS).json()["key"]
    return Client(server_url + "/api/v1", key)


@dataclass
class Client:
    api: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}", "content-type": "application/json"}

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(self.api + path, content=orjson.dumps(body), headers=self.headers, timeout=30)

    def balance(self) -> float:
        return float(httpx.get(self.api + "/account", headers=self.headers).json()["balance"])

    def chat_entries(self) -> list[dict[str, Any]]:
        entries = httpx.get(self.api + "/account/ledger", headers=self.headers).json()["data"]
        return [entry for entry in reversed(entries) if entry["reference"].startswith("chat_")]

    def settled_cost(self, wait_seconds: float = 10.0) -> float:
        """Credits kept by the one chat call of this account, once it is settled or refunded."""
        deadline = time.monotonic() + wait_seconds
        while True:
            entries = self.chat_entries()
            if any(entry["kind"] in ("settle", "refund") for entry in entries) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        kinds = [entry["kind"] for entry in entries]
        assert kinds[0] == "charge" and len(kinds) == 2, kinds
        return round(-sum(entry["amount"] for entry in entries), 3)


def chat_body(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}], **extra}


@contextlib.contextmanager
def running_stack(start_server: Callable[..., Server], directory: Path) -> Iterator[Stack]:
    """The server and its doubles, for a module's `stack` fixture (the catalog is written in `directory`)."""
    with BackgroundServer(OpenAIDouble()) as gpt, BackgroundServer(AnthropicDouble()) as claude:
        catalog = directory / "catalog.yaml"
        catalog.write_text(
            "providers:\n"
            f"  dbl-openai: {{type: openai, api_key_env: DOUBLE_OPENAI_KEY, base_url: '{gpt.url}'}}\n"
            f"  dbl-compatible: {{type: openai-compatible, api_key_env: DOUBLE_OPENAI_KEY, base_url: '{gpt.url}'}}\n"
            f"  dbl-anthropic: {{type: anthropic, api_key_env: DOUBLE_ANTHROPIC_KEY, base_url: '{claude.url}'}}\n"
            "  echo: {type: local-echo}\n"
            "  slow-echo: {type: local-echo, options: {token_delay_seconds: 0.05}}\n"
            "models:\n"
            + _model("bill-gpt", "dbl-openai")
            + _model("bill-chat", "dbl-compatible")
            + _model("bill-echo", "echo")
            + _model("bill-claude", "dbl-anthropic")
            + _model("bill-slow", "slow-echo")
            + _model("bill-fallback", "dbl-openai", "slow-echo")
            + _model("bill-codex", "dbl-openai")
            + _model("bill-mixed", "dbl-anthropic", "dbl-openai")
            + _model("bill-echo-claude", "slow-echo", "dbl-anthropic")
            + _model("bill-echo-gpt", "slow-echo", "dbl-openai")
        )
        server = start_server(
            env={"HYPEREAL_CATALOG": str(catalog), "DOUBLE_OPENAI_KEY": gpt.key, "DOUBLE_ANTHROPIC_KEY": claude.key}
        )
        yield Stack(server, gpt, claude)
