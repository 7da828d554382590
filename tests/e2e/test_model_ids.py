"""Model ids as Claude Code, Codex and the SDKs send them, against real servers, through the SDKs.

Three servers of the built-in catalog:

    doubles     its `openai` and `anthropic` providers pointed at the protocol doubles: aliases
                and family ids reach the double as the catalog says, the ledger and the
                answer name the resolved id, every answer says who served it; an unknown id
                is a 404 in each surface's shape
    no keys     no provider key: the docs' own ids fail at once with a 400 that says what to
                set, which the SDKs (max_retries=2) do not retry, and nothing is charged
    fallback    no provider key, HYPEREAL_LOCAL_FALLBACK=true: the same ids are served by
                local-echo at its price, and the answer and the ledger say so
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.conftest import ADMIN_HEADERS, Server
from tests.doubles.anthropic_double import AnthropicDouble
from tests.doubles.openai_double import BackgroundServer, OpenAIDouble
from tests.e2e.test_docs_examples import NO_UPSTREAM_KEYS

SERVED_BY = "x-hypereal-served-by"
HELLO = [{"role": "user", "content": "Hello gateway"}]


@dataclass
class Stack:
    server: Server
    key: str
    sent: list[Any] = field(default_factory=list)
    """Every request the SDK clients below made, retries included."""

    @property
    def api(self) -> str:
        return self.server.url + "/api/v1"

    def openai(self, max_retries: int = 0) -> openai.OpenAI:
        counted = openai.DefaultHttpxClient(event_hooks={"request": [self.sent.append]})
        return openai.OpenAI(base_url=self.api, api_key=self.key, max_retries=max_retries, http_client=counted)

    def anthropic(self, max_retries: int = 0) -> anthropic.Anthropic:
        counted = anthropic.DefaultHttpxClient(event_hooks={"request": [self.sent.append]})
        url = self.server.url + "/api"
        return anthropic.Anthropic(base_url=url, api_key=self.key, max_retries=max_retries, http_client=counted)

    def get(self, path: str) -> Any:
        return httpx.get(self.api + path, headers={"Authorization": f"Bearer {self.key}"}).json()

    def notes(self) -> list[str]:
        """The notes of the chat charges, oldest first."""
        entries = self.get("/account/ledger")["data"]
        return [e["note"] for e in reversed(entries) if e["kind"] == "charge" and e["reference"].startswith("chat_")]

    def balance(self) -> float:
        return float(self.get("/account")["balance"])


def new_stack(server: Server) -> Stack:
    account = httpx.post(
        server.url + "/api/v1/admin/accounts", json={"name": "ids", "credits": 100000}, headers=ADMIN_HEADERS
    ).json()
    key = httpx.post(server.url + f"/api/v1/admin/accounts/{account['id']}/keys", json={}, headers=ADMIN_HEADERS)
    return Stack(server, key.json()["key"])


@dataclass
class Doubles:
    stack: Stack
    gpt: OpenAIDouble
    claude: AnthropicDouble


@pytest.fixture(scope="module")
def doubles(start_server: Callable[..., Server], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Doubles]:
    with BackgroundServer(OpenAIDouble()) as gpt, BackgroundServer(AnthropicDouble()) as claude:
        catalog = tmp_path_factory.mktemp("catalog") / "catalog.yaml"
        # The built-in providers, pointed at the doubles: every built-in model, alias and family goes there.
        catalog.write_text(
            "providers:\n"
            f"  openai: {{type: openai, api_key_env: DOUBLE_OPENAI_KEY, base_url: '{gpt.url}'}}\n"
            f"  anthropic: {{type: anthropic, api_key_env: DOUBLE_ANTHROPIC_KEY, base_url: '{claude.url}'}}\n"
        )
        env = {"HYPEREAL_CATALOG": str(catalog), "DOUBLE_OPENAI_KEY": gpt.key, "DOUBLE_ANTHROPIC_KEY": claude.key}
        yield Doubles(new_stack(start_server(env=env)), gpt, claude)


@pytest.fixture(scope="module")
def no_keys(start_server: Callable[..., Server]) -> Stack:
    return new_stack(start_server(env=NO_UPSTREAM_KEYS))


@pytest.fixture(scope="module")
def fallback(start_server: Callable[..., Server]) -> Stack:
    return new_stack(start_server(env={**NO_UPSTREAM_KEYS, "HYPEREAL_LOCAL_FALLBACK": "true"}))


# ---------------------------------------------------------------- aliases and families, served


def test_claude_codes_ids_reach_anthropic_as_the_catalog_says(doubles: Doubles) -> None:
    client = doubles.stack.anthropic()
    for sent, upstream, resolved in [
        ("claude-opus-5-5", "claude-opus-5-5", "claude-opus-5-5"),  # a family member: as sent
        ("claude-haiku-4-5-20251001", "claude-haiku-4-5-20251001", "claude-haiku-4-5"),  # a dated alias
        ("claude-sonnet-4-5", "claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
    ]:
        raw = client.messages.with_raw_response.create(model=sent, max_tokens=50, messages=HELLO)
        assert raw.parse().content[0].text == "Hello from Claude: Hello gateway"
        assert doubles.claude.requests[-1].body["model"] == upstream
        assert raw.headers[SERVED_BY] == f"anthropic/{upstream}"
        assert doubles.stack.notes()[-1] == f"chat {resolved}"


def test_an_openai_snapshot_stays_pinned_and_a_new_gpt_reaches_openai(doubles: Doubles) -> None:
    client = doubles.stack.openai()
    raw = client.chat.completions.with_raw_response.create(model="gpt-5-2025-08-07", messages=HELLO)
    assert raw.parse().choices[0].message.content == "Hello from OpenAI: Hello gateway"
    assert doubles.gpt.requests[-1].body["model"] == "gpt-5-2025-08-07"
    assert raw.headers[SERVED_BY] == "openai/gpt-5-2025-08-07"
    assert doubles.stack.notes()[-1] == "chat gpt-5"

    with client.responses.with_streaming_response.create(model="gpt-6.2-sol", input="Hello gateway", stream=True) as r:
        assert r.headers[SERVED_BY] == "openai/gpt-6.2-sol"
        assert "Hello from OpenAI" in r.read().decode()
    assert doubles.gpt.requests[-1].body["model"] == "gpt-6.2-sol"
    assert doubles.stack.notes()[-1] == "chat gpt-6.2-sol"


def test_a_translated_answer_names_the_resolved_model(doubles: Doubles) -> None:
    completion = doubles.stack.openai().chat.completions.create(model="claude-sonnet-4-5-20250929", messages=HELLO)
    assert completion.model == "claude-sonnet-4-5"
    assert completion.choices[0].message.content == "Hello from Claude: Hello gateway"
    assert doubles.claude.requests[-1].body["model"] == "claude-sonnet-4-5-20250929"


def test_an_unknown_id_is_a_404_in_each_surfaces_shape(doubles: Doubles) -> None:
    stack = doubles.stack
    with pytest.raises(openai.NotFoundError) as chat:
        stack.openai(max_retries=2).chat.completions.create(model="gemini-3-pro", messages=HELLO)
    error = chat.value.body
    assert isinstance(error, dict)
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "model_not_found", "model")
    assert "Unknown model 'gemini-3-pro' for llm" in error["message"]

    with pytest.raises(anthropic.NotFoundError) as messages:
        stack.anthropic().messages.create(model="local-ecko", max_tokens=5, messages=HELLO)
    assert messages.value.body == {
        "type": "error",
        "error": {"type": "not_found_error", "message": messages.value.body["error"]["message"]},  # type: ignore[index]
    }
    assert "Did you mean 'local-echo'?" in messages.value.message

    native = httpx.post(
        stack.api + "/chat",
        json={"model": "gemini-3-pro", "messages": HELLO},
        headers={"Authorization": f"Bearer {stack.key}"},
    )
    assert native.status_code == 404 and native.json()["error"].startswith("Unknown model 'gemini-3-pro'")


def test_model_pickers_list_the_chat_models_in_their_own_shape(doubles: Doubles) -> None:
    listed = [model.id for model in doubles.stack.anthropic().models.list(limit=9)]  # every page
    assert listed[0] == "local-echo" and "claude-haiku-4-5" in listed and "gpt-5" in listed
    assert len(listed) == len(set(listed))
    assert doubles.stack.anthropic().models.retrieve("claude-haiku-4-5-20251001").display_name == "Claude Haiku 4.5"

    openai_ids = [model.id for model in doubles.stack.openai().models.list()]
    assert set(listed) <= set(openai_ids) and "veo-3-1-t2v" in openai_ids
    assert doubles.stack.openai().models.retrieve("claude-opus-5-5").owned_by == "anthropic"


# ---------------------------------------------------------------- no provider key: fail at once


def test_the_docs_ids_without_their_key_fail_at_once_saying_what_to_set(no_keys: Stack) -> None:
    before = no_keys.balance()
    no_keys.sent.clear()
    with pytest.raises(anthropic.BadRequestError) as claude:
        no_keys.anthropic(max_retries=2).messages.create(model="claude-sonnet-4-6", max_tokens=50, messages=HELLO)
    assert len(no_keys.sent) == 1, "not retried"
    body = claude.value.body
    assert isinstance(body, dict) and body["error"]["type"] == "invalid_request_error"
    assert "ANTHROPIC_API_KEY" in claude.value.message and "HYPEREAL_LOCAL_FALLBACK=true" in claude.value.message

    no_keys.sent.clear()
    codex_client = no_keys.openai(max_retries=2)
    with (
        pytest.raises(openai.BadRequestError) as codex,
        codex_client.responses.stream(model="gpt-5-codex", input="Hello") as events,
    ):
        events.get_final_response()
    assert len(no_keys.sent) == 1, "not retried"
    assert codex.value.code == "model_not_configured"
    assert "OPENAI_API_KEY" in codex.value.message

    # A family member and an alias: the same answer.
    for model in ("claude-opus-5-5", "claude-haiku-4-5-20251001"):
        with pytest.raises(anthropic.BadRequestError, match="ANTHROPIC_API_KEY"):
            no_keys.anthropic(max_retries=2).messages.create(model=model, max_tokens=50, messages=HELLO)
    assert no_keys.balance() == before
    assert no_keys.notes() == []


# ---------------------------------------------------------------- HYPEREAL_LOCAL_FALLBACK


def test_fallback_serves_the_docs_chat_ids_with_local_echo_and_says_so(fallback: Stack) -> None:
    raw = fallback.anthropic().messages.with_raw_response.create(
        model="claude-sonnet-4-6", max_tokens=50, messages=HELLO
    )
    message = raw.parse()
    assert message.content[0].text == "Hello gateway" and message.model == "claude-sonnet-4-6"
    assert raw.headers[SERVED_BY] == "echo/local-echo"
    assert fallback.notes()[-1] == "chat claude-sonnet-4-6 via local-echo"

    with fallback.openai().responses.with_streaming_response.create(
        model="gpt-5-codex", input="Hello gateway", stream=True
    ) as streamed:
        assert streamed.headers[SERVED_BY] == "echo/local-echo"
        assert "Hello gateway" in streamed.read().decode()
    assert fallback.notes()[-1] == "chat gpt-5-codex via local-echo"

    for model, resolved in [("claude-opus-5-5", "claude-opus-5-5"), ("claude-haiku-4-5-20251001", "claude-haiku-4-5")]:
        answer = fallback.anthropic().messages.create(model=model, max_tokens=50, messages=HELLO)
        assert answer.model == resolved
        assert fallback.notes()[-1] == f"chat {resolved} via local-echo"


def test_fallback_bills_at_the_stand_ins_price(fallback: Stack) -> None:
    headers = {"Authorization": f"Bearer {fallback.key}"}
    costs = {
        model: httpx.post(fallback.api + "/chat", json={"model": model, "messages": HELLO}, headers=headers).json()[
            "creditsUsed"
        ]
        for model in ("local-echo", "claude-opus-4-6", "gpt-5.4-pro")
    }
    assert len(set(costs.values())) == 1, costs
    # Naming no model still means a model's own route, not a stand-in.
    assert httpx.post(fallback.api + "/chat", json={"messages": HELLO}, headers=headers).json()["model"] == "local-echo"
