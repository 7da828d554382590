"""`GET /models` in the shape each client reads: OpenAI's, Anthropic's (paged) and Codex's metadata."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from hypereal.services import Services

ANTHROPIC = {"anthropic-version": "2023-06-01"}


def chat_ids(services: Services) -> list[str]:
    return [spec.id for spec in services.catalog.in_category("llm")]


async def test_everyone_else_gets_openais_list_with_aliases_and_families(client: httpx.AsyncClient) -> None:
    listed = (await client.get("/v1/models")).json()
    assert listed["object"] == "list"
    by_id = {model["id"]: model for model in listed["data"]}
    assert by_id["gpt-5"]["object"] == "model" and by_id["gpt-5"]["aliases"] == ["gpt-5-2025-08-07"]
    assert by_id["veo-3-1-t2v"]["category"] == "video"
    claude = next(family for family in listed["families"] if family["pattern"] == "claude-*")
    assert claude["owned_by"] == "anthropic" and claude["pricing"]["output_per_mtok"] > 0
    assert "families" not in (await client.get("/v1/models?category=video")).json()


async def test_anthropic_clients_get_anthropics_page_of_chat_models(
    client: httpx.AsyncClient, services: Services
) -> None:
    page = (await client.get("/v1/models", headers=ANTHROPIC)).json()
    assert set(page) == {"data", "has_more", "first_id", "last_id"}
    assert len(page["data"]) == 20 and page["has_more"] is True, "20 by default, as Anthropic's"
    first = page["data"][0]
    assert first["type"] == "model" and first["id"] == chat_ids(services)[0]
    assert {"display_name", "created_at", "max_input_tokens", "max_tokens"} <= set(first)
    assert (page["first_id"], page["last_id"]) == (page["data"][0]["id"], page["data"][-1]["id"])

    walked: list[str] = []
    after: str | None = None
    while True:
        query = {"limit": "7", **({"after_id": after} if after else {})}
        page = (await client.get("/api/v1/models", params=query, headers=ANTHROPIC)).json()
        walked += [model["id"] for model in page["data"]]
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert walked == chat_ids(services)

    before = (await client.get("/v1/models", params={"limit": 3, "before_id": walked[5]}, headers=ANTHROPIC)).json()
    assert [model["id"] for model in before["data"]] == walked[2:5] and before["has_more"] is True


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"after_id": "veo-3-1-t2v"}, "after_id"),
        ({"after_id": "gpt-5", "before_id": "gpt-4o"}, "before_id"),
    ],
)
async def test_a_bad_page_is_a_400_in_anthropics_shape(
    client: httpx.AsyncClient, query: dict[str, Any], field: str
) -> None:
    answer = await client.get("/v1/models", params=query, headers=ANTHROPIC)
    assert answer.status_code == 400
    body = answer.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert field in body["error"]["message"]


async def test_one_model_resolves_as_chat_calls_do_in_the_askers_shape(client: httpx.AsyncClient) -> None:
    alias = (await client.get("/v1/models/claude-haiku-4-5-20251001", headers=ANTHROPIC)).json()
    assert (alias["type"], alias["id"], alias["display_name"]) == ("model", "claude-haiku-4-5", "Claude Haiku 4.5")
    family = (await client.get("/v1/models/claude-opus-5-5")).json()
    assert (family["id"], family["owned_by"], family["available"]) == ("claude-opus-5-5", "anthropic", False)

    unknown = await client.get("/v1/models/local-ecko", headers=ANTHROPIC)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["type"] == "not_found_error"
    assert "Did you mean 'local-echo'" in unknown.json()["error"]["message"]
    native = await client.get("/v1/models/gemini-3")
    assert native.status_code == 404 and native.json()["model"] == "gemini-3"


# ---------------------------------------------------------------- Codex CLI
#
# Codex 0.171.0 asks `GET {base_url}/models?client_version=0.171.0` (codex-rs/codex-api/src/endpoint/
# models.rs) and parses `ModelsResponse {models: Vec<ModelInfo>}` (codex-rs/protocol/src/
# openai_models.rs). The fields of ModelInfo that have no serde default must be present, with these
# types and enum values; a model takes the metadata of the longest slug it starts with
# (codex-rs/models-manager/src/manager.rs, find_model_by_longest_prefix).

CODEX_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "slug": str,
    "display_name": str,
    "supported_reasoning_levels": list,
    "shell_type": str,
    "visibility": str,
    "supported_in_api": bool,
    "priority": int,
    "support_verbosity": bool,
    "truncation_policy": dict,
    "experimental_supported_tools": list,
    # Either this or model_messages.instructions_template, or Codex 0.171.0 refuses the answer.
    "base_instructions": str,
}
CODEX_OPTIONAL: dict[str, type | tuple[type, ...]] = {
    "description": (str, type(None)),
    "availability_nux": type(None),
    "upgrade": type(None),
    "default_verbosity": type(None),
    "apply_patch_tool_type": (str, type(None)),
    "web_search_tool_type": str,
    "context_window": (int, type(None)),
    "max_context_window": (int, type(None)),
    "supports_parallel_tool_calls": bool,
    "input_modalities": list,
}
SHELL_TYPES = {"default", "local", "shell_command", "unified_exec", "disabled"}


def codex_metadata(models: list[dict[str, Any]], model: str) -> dict[str, Any] | None:
    """Codex's lookup: the entry whose slug is the longest prefix of `model`."""
    matching = [entry for entry in models if model.startswith(entry["slug"])]
    return max(matching, key=lambda entry: len(entry["slug"]), default=None)


async def test_codex_gets_the_model_metadata_it_parses(client: httpx.AsyncClient, services: Services) -> None:
    answer = await client.get("/api/v1/models", params={"client_version": "0.171.0"})
    assert answer.status_code == 200
    models = answer.json()["models"]
    assert set(answer.json()) == {"models"}
    for entry in models:
        for name, kind in (CODEX_REQUIRED | CODEX_OPTIONAL).items():
            assert isinstance(entry[name], kind), (entry["slug"], name)
        assert entry["shell_type"] in SHELL_TYPES
        assert entry["visibility"] in {"list", "hide", "none"}
        assert entry["truncation_policy"]["mode"] in {"bytes", "tokens"}
        assert isinstance(entry["truncation_policy"]["limit"], int)
        assert entry["apply_patch_tool_type"] in {"freeform", "function", None}
        assert entry["web_search_tool_type"] in {"text", "text_and_image"}
        assert set(entry["input_modalities"]) <= {"text", "image"}
    slugs = [entry["slug"] for entry in models]
    assert len(slugs) == len(set(slugs))
    listed = [entry["slug"] for entry in models if entry["visibility"] == "list"]
    assert listed == chat_ids(services), "every chat model, in the picker"

    codex = codex_metadata(models, "gpt-5-codex")
    assert codex is not None and codex["slug"] == "gpt-5-codex" and codex["context_window"] == 400000
    # A model of a family the catalog does not list finds its family's metadata, kept out of the picker.
    opus = codex_metadata(models, "claude-opus-5-5")
    assert opus is not None and (opus["slug"], opus["visibility"]) == ("claude-opus-", "hide")
    assert opus["context_window"] == services.catalog.resolve("claude-opus-5-5").context_window
    assert codex_metadata(models, "gpt-6.2-sol") is not None
    assert codex_metadata(models, "gemini-3") is None
