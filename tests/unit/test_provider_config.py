"""Provider entries: one configuration class per type, each built into its implementation."""

from __future__ import annotations

from typing import get_args

import pytest
from pydantic import TypeAdapter, ValidationError

from hypereal.catalog.providers import OpenAIConfig, ProviderConfig
from hypereal.providers.base import MediaProvider
from hypereal.providers.chat import ChatProvider
from hypereal.providers.registry import build

CONFIGS = get_args(get_args(ProviderConfig)[0])


@pytest.mark.parametrize("config_class", CONFIGS, ids=lambda cls: cls.model_fields["type"].default)
def test_every_type_builds_its_own_kind_of_provider(config_class: type) -> None:
    config = config_class(base_url="http://127.0.0.1:9/v1")
    provider = build(config)
    assert provider.type == config.type
    assert isinstance(provider, ChatProvider if config.kind == "chat" else MediaProvider)
    assert provider.config is config


def test_options_are_typed_and_closed() -> None:
    parse = TypeAdapter(ProviderConfig).validate_python
    config = parse({"type": "openai-compatible", "base_url": "http://h/v1", "options": {"responses": True}})
    assert config.options.responses is True and config.options.responses_models == ()
    assert OpenAIConfig().options.responses_models, "OpenAI's own default patterns"
    with pytest.raises(ValidationError):
        parse({"type": "local-echo", "options": {"responses": True}})


def test_deployments_inherit_the_entry_and_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    config = OpenAIConfig(
        api_key_env="KEY_A",
        base_url="http://a/v1",
        deployments=[{"weight": 3}, {"api_key_env": "KEY_B", "base_url": "http://b/v1", "max_connections": 4}],
    )
    first, second = config.resolved()
    assert (first.api_key_env, first.base_url, first.deployment.name, first.deployment.weight) == (
        "KEY_A",
        "http://a/v1",
        "KEY_A",
        3,
    )
    assert (second.api_key_env, second.base_url, second.deployment.name) == ("KEY_B", "http://b/v1", "KEY_B")
    assert second.resolved() == [second]
    monkeypatch.delenv("KEY_A", raising=False)
    monkeypatch.delenv("KEY_B", raising=False)
    assert not config.configured
    monkeypatch.setenv("KEY_B", "secret")
    assert config.configured and second.configured and not first.configured
