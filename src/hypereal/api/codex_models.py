"""The chat models as Codex CLI reads model metadata: `{"models": [ModelInfo, ...]}`.

What Codex does (openai/codex, Codex CLI 0.171.0):

- `codex-rs/codex-api/src/endpoint/models.rs`: `GET {base_url}/models?client_version=X.Y.Z`
  with the provider's bearer token, the body parsed as `ModelsResponse`.
- `codex-rs/models-manager/src/manager.rs`: it asks only when signed in with ChatGPT or when
  the provider's token comes from a command (`auth = { command = ... }` in the provider's
  config); a provider with `env_key` is never asked, and Codex then warns "Model metadata
  for `...` not found" for every model its own bundled list lacks. The answer is merged
  over that bundled list (same slug: ours), and a model takes the metadata of the longest
  slug it starts with.
- `codex-rs/protocol/src/openai_models.rs`: `ModelInfo`, whose fields without a default
  are the ones written here; unknown fields are ignored. 0.171.0 also refuses the whole
  answer when a model has neither `base_instructions` nor
  `model_messages.instructions_template`, and what a model carries there replaces the
  instructions Codex uses for a model it has no metadata for (its own prompt, which is not
  ours to ship): a gateway model gets `INSTRUCTIONS`, short and tool-agnostic.

So every catalog chat model is listed under its id, and each family whose pattern is a
plain prefix (`claude-*`) under that prefix, hidden from the picker: a model of the family
the catalog does not list matches it, and Codex takes its context window from there.
Codex's own models keep their bundled metadata, which is more than ours (instructions,
reasoning levels) and which a longer slug wins over ours anyway.
"""

from __future__ import annotations

import re
from typing import Any

from hypereal.catalog import Catalog
from hypereal.catalog.schema import Family

PRIORITY_AFTER_CODEX_OWN = 1000
"""Codex picks the default model by lowest priority; its own models keep first place."""
INSTRUCTIONS = (
    "You are Codex, a coding agent working in the user's workspace through the Codex CLI. "
    "Use the tools you are given: run commands to inspect, build and test, and edit files "
    "with apply_patch. Keep working until the request is done, check your changes where "
    "you can, and end with a short account of what you changed and what is left."
)
_PLAIN_PREFIX = re.compile(r"^([a-z0-9][a-z0-9._\-]{2,})\*$")


def codex_models(catalog: Catalog) -> dict[str, Any]:
    listed = [
        model_info(spec.id, spec.name, spec.description, spec.context_window, visible=True)
        for spec in catalog.in_category("llm")
    ]
    listed += [
        model_info(prefix, family.pattern, family.description, family.context_window, visible=False)
        for family in catalog.families
        if (prefix := family_prefix(family)) is not None
    ]
    for index, info in enumerate(listed):
        info["priority"] = PRIORITY_AFTER_CODEX_OWN + index
    return {"models": listed}


def family_prefix(family: Family) -> str | None:
    """`claude-` for `claude-*`; None for a pattern that is not one literal prefix."""
    plain = _PLAIN_PREFIX.match(family.pattern)
    return plain.group(1) if plain else None


def model_info(slug: str, name: str, description: str, context_window: int | None, *, visible: bool) -> dict[str, Any]:
    """One `ModelInfo`; what the catalog does not know is left as Codex assumes for a model it
    does not know (no reasoning levels, no verbosity, 10 000-byte tool output)."""
    return {
        "slug": slug,
        "display_name": name,
        "description": description,
        "supported_reasoning_levels": [],
        "shell_type": "shell_command",
        "visibility": "list" if visible else "hide",
        "supported_in_api": True,
        "priority": PRIORITY_AFTER_CODEX_OWN,
        "availability_nux": None,
        "upgrade": None,
        "base_instructions": INSTRUCTIONS,
        "supports_reasoning_summaries": False,
        "support_verbosity": False,
        "default_verbosity": None,
        # Custom tools reach every upstream (as a function where the upstream lacks them).
        "apply_patch_tool_type": "freeform",
        "web_search_tool_type": "text",
        "truncation_policy": {"mode": "bytes", "limit": 10_000},
        "supports_parallel_tool_calls": False,
        "context_window": context_window,
        "max_context_window": context_window,
        "experimental_supported_tools": [],
        "input_modalities": ["text", "image"],
    }
