"""Model ids as clients send them: exact ids, aliases, chat families, the 404 for the rest, and
the refusal of a model no provider is configured for."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from hypereal import routing
from hypereal.catalog import Catalog, CatalogError, load_catalog
from hypereal.catalog import loader as catalog_loader
from hypereal.errors import NotConfigured, UnknownModel
from hypereal.providers.pool import ProviderPool
from hypereal.routing import Health, Router


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def operator_catalog(tmp_path: Path, text: str) -> Catalog:
    path = tmp_path / "catalog.yaml"
    path.write_text(textwrap.dedent(text))
    return load_catalog(path)


def upstream(catalog: Catalog, model_id: str) -> tuple[str, str]:
    route = catalog.resolve(model_id, ("llm",)).routes[0]
    return route.provider, route.model


def test_an_exact_id_is_its_own_model(catalog: Catalog) -> None:
    assert catalog.resolve("gpt-5", ("llm",)) is catalog.models["gpt-5"]
    assert catalog.resolve("veo-3-1-t2v") is catalog.models["veo-3-1-t2v"]


def test_a_dated_alias_is_the_same_model_and_stays_pinned_upstream(catalog: Catalog) -> None:
    snapshot = catalog.resolve("gpt-5-2025-08-07", ("llm",))
    assert snapshot.id == "gpt-5", "the ledger and the answer name the model"
    assert snapshot.pricing == catalog.models["gpt-5"].pricing
    # gpt-5's route sends "gpt-5", which OpenAI may move on: the client asked for the snapshot.
    assert upstream(catalog, "gpt-5-2025-08-07") == ("openai", "gpt-5-2025-08-07")
    assert upstream(catalog, "gpt-5") == ("openai", "gpt-5")
    # Claude's catalog entries already route to the dated snapshot: nothing to pin.
    assert catalog.resolve("claude-haiku-4-5-20251001", ("llm",)) is catalog.models["claude-haiku-4-5"]
    assert upstream(catalog, "claude-sonnet-4-5-20250929") == ("anthropic", "claude-sonnet-4-5-20250929")


@pytest.mark.parametrize(
    ("model_id", "provider", "output_price"),
    [
        ("claude-opus-5-5", "anthropic", 2500),  # claude-opus-* beats claude-*
        ("claude-fable-5-1", "anthropic", 5000),  # only claude-* matches: the dearest tier's price
        ("claude-haiku-5-5", "anthropic", 500),
        ("gpt-6.2-sol", "openai", 1500),
        ("gpt-6-mini", "openai", 450),  # gpt-*-mini* beats gpt-*
        ("gpt-5.5-pro", "openai", 18000),
        ("o5", "openai", 800),
        ("codex-max-latest", "openai", 600),
        ("chatgpt-5-latest", "openai", 1500),
    ],
)
def test_a_family_serves_an_unlisted_id_as_sent_at_the_most_specific_price(
    catalog: Catalog, model_id: str, provider: str, output_price: int
) -> None:
    spec = catalog.resolve(model_id, ("llm",))
    assert spec.id == model_id and spec.category == "llm"
    assert [(r.provider, r.model) for r in spec.routes] == [(provider, model_id)]
    assert spec.pricing.output_per_mtok == output_price
    assert spec.context_window and spec.max_output_tokens


def test_family_models_are_remembered_within_a_bound(monkeypatch: pytest.MonkeyPatch, catalog: Catalog) -> None:
    first = catalog.resolve("claude-opus-9-9", ("llm",))
    assert catalog.resolve("claude-opus-9-9", ("llm",)) is first
    monkeypatch.setattr(catalog_loader, "FAMILY_MODELS_REMEMBERED", 3)
    for n in range(10):
        catalog.resolve(f"gpt-9.{n}", ("llm",))
    assert len(catalog._family_models) <= 3


@pytest.mark.parametrize("model_id", ["claude-x", "gpt-9"])
def test_families_are_chat_models_only(catalog: Catalog, model_id: str) -> None:
    with pytest.raises(UnknownModel):
        catalog.resolve(model_id, ("video",))
    assert catalog.resolve(model_id).category == "llm"


@pytest.mark.parametrize("model_id", ["Claude-Opus-5", "claude-" + "x" * 120, "claude opus", "gemini-3-pro"])
def test_ids_no_family_takes_are_unknown(catalog: Catalog, model_id: str) -> None:
    with pytest.raises(UnknownModel) as caught:
        catalog.resolve(model_id, ("llm",))
    assert caught.value.status == 404
    assert caught.value.fields["model"] == model_id


def test_an_unknown_id_names_the_closest_ids_and_aliases_of_its_category(catalog: Catalog) -> None:
    with pytest.raises(UnknownModel) as caught:
        catalog.resolve("local-ecko", ("llm",))
    assert "Did you mean 'local-echo'?" in caught.value.message
    assert catalog.closest("gpt-4.1-2025-04-15", ("llm",))[0] == "gpt-4.1-2025-04-14"
    assert "local-image" not in catalog.closest("local-imag", ("llm",)), "only ids of the category"
    assert catalog.closest("local-imag", ("image",))[0] == "local-image"


def test_an_operator_file_adds_aliases_and_families_and_overrides_a_family_price(tmp_path: Path) -> None:
    catalog = operator_catalog(
        tmp_path,
        """
        providers:
          gateway: {type: openai-compatible, base_url: "http://127.0.0.1:9/v1"}
        models:
          - id: local-echo
            aliases: [echo]
        families:
          - pattern: "gpt-*"
            pricing: {input_per_mtok: 1, output_per_mtok: 2}
          - pattern: "llama-*"
            provider: gateway
            pricing: {input_per_mtok: 5, output_per_mtok: 5}
        """,
    )
    assert catalog.resolve("echo", ("llm",)) is catalog.aliases["echo"]
    assert catalog.resolve("echo", ("llm",)).id == "local-echo"
    gpt = catalog.resolve("gpt-9", ("llm",))
    assert (gpt.pricing.input_per_mtok, gpt.routes[0].provider) == (1, "openai"), "only the price was overridden"
    assert upstream(catalog, "llama-4-70b") == ("gateway", "llama-4-70b")


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("models:\n  - {id: gpt-5, aliases: [gpt-4o]}\n", ["gpt-5", "aliases.0", "'gpt-4o' is the id of a model"]),
        (
            "models:\n  - {id: gpt-4o, aliases: [gpt-5-2025-08-07]}\n",
            ["gpt-4o", "gpt-5", "aliases.0", "'gpt-5-2025-08-07' is already an alias of"],
        ),
        ("models:\n  - {id: gpt-5, aliases: [GPT5]}\n", ["gpt-5", "aliases.0"]),
        ("families:\n  - {pattern: 'x-*', provider: nobody, pricing: {input_per_mtok: 1}}\n", ["x-*", "provider"]),
        ("families:\n  - {pattern: x-1, provider: openai, pricing: {input_per_mtok: 1}}\n", ["x-1", "wildcard"]),
        ("families:\n  - {pattern: 'x-*', provider: openai, pricing: {per_call: 3}}\n", ["x-*", "per-token"]),
        (
            "families:\n  - {pattern: 'x-*', provider: openai, pricing: {input_per_mtok: 1}, colour: red}\n",
            ["x-*", "colour"],
        ),
        ("families:\n  - {provider: openai}\n", ["family entry has no `pattern`"]),
    ],
)
def test_a_bad_alias_or_family_stops_the_load_naming_entry_and_field(
    tmp_path: Path, text: str, named: list[str]
) -> None:
    with pytest.raises(CatalogError) as caught:
        operator_catalog(tmp_path, text)
    for part in named:
        assert part in str(caught.value)


# ---------------------------------------------------------------- not configured


@pytest.fixture
def no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "FAL_KEY", "REPLICATE_API_TOKEN", "WAVESPEED_API_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_keys")
def test_an_unconfigured_model_is_refused_saying_what_to_set(catalog: Catalog) -> None:
    refusal = routing.not_configured(catalog, catalog.resolve("claude-opus-5-5"))
    assert refusal.status == 400 and refusal.fields == {"model": "claude-opus-5-5"}
    assert refusal.message == (
        "No provider is configured for 'claude-opus-5-5' on this server: set ANTHROPIC_API_KEY, "
        "or set HYPEREAL_LOCAL_FALLBACK=true to serve it with local-echo."
    )
    # No stand-in does music: the fallback is not offered.
    music = next(spec for spec in catalog.models.values() if spec.task == "music")
    assert "HYPEREAL_LOCAL_FALLBACK" not in routing.not_configured(catalog, music).message


@pytest.mark.usefixtures("no_keys")
def test_local_fallback_serves_a_chat_model_with_local_echo_only_when_on(catalog: Catalog) -> None:
    spec = catalog.resolve("gpt-5-codex", ("llm",))
    strict = Router(catalog, ProviderPool(catalog), Health(), local_fallback=False)
    with pytest.raises(NotConfigured, match="OPENAI_API_KEY"):
        strict.chat(spec)

    fallback = Router(catalog, ProviderPool(catalog), Health(), local_fallback=True)
    plan = fallback.chat(spec)
    assert plan.stand_in is catalog.models["local-echo"]
    assert [(route.name, route.model, route.provider.name, route.fallback) for route in plan.targets] == [
        ("echo", "local-echo", "echo", True)
    ]
    assert fallback.chat(catalog.models["local-echo"]).stand_in is None, "served by its own route"
