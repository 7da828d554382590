"""Provider entries of the catalog: a closed set of types, each with its own typed options.

The entry's `type` picks the configuration class (a discriminated union), and with it the
implementation that serves it (`implementation`, imported on first use by
`hypereal.providers.registry`) and whether it serves chat or media (`kind`). Every class
forbids unknown keys, its `options` included, so `type: openai-compatble` or
`options: {max_conections: 3}` stops the server naming the entry and the field.

An entry is served by one or more deployments: the same upstream behind several keys or
base URLs (`deployments`), each with a weight and its own connection limit. Without a
`deployments` list, the entry's own `api_key_env` and `base_url` are its one deployment;
with one, they are the defaults each deployment may override. A deployment is used only
while its key is set (`configured`).
"""

from __future__ import annotations

import os
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ProviderKind = Literal["chat", "media"]

DEFAULT_RESPONSES_MODELS = ("*codex*", "*-pro", "*-pro-*", "*deep-research*")
"""OpenAI models served only through the Responses API."""
DEFAULT_SEARCH_MODELS = ("*-search-preview", "*-search-preview-*", "*-search-api", "*-search-api-*")
"""OpenAI models that search behind Chat Completions."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Deployment(Strict):
    """One key or base URL of a provider; fields left out are the entry's own."""

    name: str | None = Field(default=None, min_length=1, max_length=60, pattern=r"^[A-Za-z0-9._\-]+$")
    """How the health API and the logs name it; by default its `api_key_env`, else its position."""
    api_key_env: str | None = None
    base_url: str | None = None
    weight: float = Field(default=1.0, gt=0, le=1000)
    """Its share of the traffic among the healthy deployments of the entry."""
    max_connections: int | None = Field(default=None, ge=1, le=10_000)
    """Upstream connections open at once through it (the entry's option by default)."""


class ProviderBase(Strict):
    kind: ClassVar[ProviderKind]
    implementation: ClassVar[str]
    """`module:Class` of the provider serving this type."""

    type: str
    api_key_env: str | None = None
    base_url: str | None = None
    timeout_seconds: float = Field(default=600.0, gt=0)
    deployments: tuple[Deployment, ...] = Field(default=(), max_length=64)

    @model_validator(mode="after")
    def _deployment_names_unique(self) -> ProviderBase:
        names = [self._name(deployment, index) for index, deployment in enumerate(self.deployments)]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"deployments: '{twice[0]}' names two deployments; give each a distinct `name`")
        return self

    def api_key(self) -> str | None:
        """The credential, read from the environment at use time; never stored in the catalog."""
        return os.environ.get(self.api_key_env) if self.api_key_env else None

    @property
    def configured(self) -> bool:
        """Whether one of its deployments can be used now: it needs no key, or its key is set."""
        if not self.deployments:
            return _set(self.api_key_env)
        return any(_set(deployment.api_key_env or self.api_key_env) for deployment in self.deployments)

    def resolved(self) -> list[ProviderBase]:
        """One configuration per deployment, each with a single key and base URL and a name
        (`Deployment.name`), ready to build a provider instance from."""
        if not self.deployments:
            return [self]
        return [
            self.model_copy(
                update={
                    "api_key_env": deployment.api_key_env or self.api_key_env,
                    "base_url": deployment.base_url or self.base_url,
                    "deployments": (deployment.model_copy(update={"name": self._name(deployment, index)}),),
                }
            )
            for index, deployment in enumerate(self.deployments)
        ]

    def _name(self, deployment: Deployment, index: int) -> str:
        return deployment.name or deployment.api_key_env or self.api_key_env or str(index)

    @property
    def deployment(self) -> Deployment:
        """This configuration's own deployment (of a `resolved` one: the one it stands for)."""
        return self.deployments[0] if len(self.deployments) == 1 else _DEFAULT


_DEFAULT = Deployment(name="default")


def _set(api_key_env: str | None) -> bool:
    return api_key_env is None or bool(os.environ.get(api_key_env))


# ---------------------------------------------------------------------------- media


class QueueOptions(Strict):
    """What the upstream queue adapters share (`hypereal.providers.upstream.UpstreamClient`)."""

    request_timeout_seconds: float | None = Field(default=None, gt=0)
    """One status or submit call; the entry's `timeout_seconds`, at most 60 s, by default."""
    max_connections: int = Field(default=100, ge=1, le=10_000)


class FalOptions(QueueOptions):
    data_uri_max_bytes: int = Field(default=10 * 1024 * 1024, ge=0)


class ReplicateOptions(QueueOptions):
    data_uri_max_bytes: int = Field(default=1024 * 1024, ge=0)
    """Replicate takes data: URIs for small files only (its documentation says under 1 MB)."""
    wait_seconds: int | None = Field(default=None, ge=1, le=60)
    """`Prefer: wait=n`: quick models (images) answer on submit instead of being polled."""


class WaveSpeedOptions(QueueOptions):
    data_uri_max_bytes: int | None = Field(default=None, ge=0)
    """None: only URLs are passed on, without an operator's word that the models take base64."""


class LocalOptions(Strict):
    concurrency: int | None = Field(default=None, ge=1, le=256)
    """Local models run at once; the number of cores by default."""


class ScriptedOptions(Strict):
    outcome: Literal["complete", "fail", "reject", "never"] | None = None
    """How every request to this entry ends, whatever it asks: an upstream that is down."""


class FalConfig(ProviderBase):
    kind: ClassVar[ProviderKind] = "media"
    implementation: ClassVar[str] = "hypereal.providers.fal:FalProvider"
    type: Literal["fal"] = "fal"
    options: FalOptions = FalOptions()


class ReplicateConfig(ProviderBase):
    kind: ClassVar[ProviderKind] = "media"
    implementation: ClassVar[str] = "hypereal.providers.replicate:ReplicateProvider"
    type: Literal["replicate"] = "replicate"
    options: ReplicateOptions = ReplicateOptions()


class WaveSpeedConfig(ProviderBase):
    kind: ClassVar[ProviderKind] = "media"
    implementation: ClassVar[str] = "hypereal.providers.wavespeed:WaveSpeedProvider"
    type: Literal["wavespeed"] = "wavespeed"
    options: WaveSpeedOptions = WaveSpeedOptions()


class LocalConfig(ProviderBase):
    kind: ClassVar[ProviderKind] = "media"
    implementation: ClassVar[str] = "hypereal.providers.local.provider:LocalProvider"
    type: Literal["local"] = "local"
    options: LocalOptions = LocalOptions()


class ScriptedConfig(ProviderBase):
    kind: ClassVar[ProviderKind] = "media"
    implementation: ClassVar[str] = "hypereal.providers.scripted:ScriptedProvider"
    type: Literal["scripted"] = "scripted"
    options: ScriptedOptions = ScriptedOptions()


QueueConfig = FalConfig | ReplicateConfig | WaveSpeedConfig


# ---------------------------------------------------------------------------- chat


class HttpChatOptions(Strict):
    max_connections: int = Field(default=256, ge=1, le=10_000)


class OpenAIOptions(HttpChatOptions):
    responses_models: tuple[str, ...] = DEFAULT_RESPONSES_MODELS
    """Patterns of upstream models served only through the Responses API."""
    search_models: tuple[str, ...] = DEFAULT_SEARCH_MODELS
    """Patterns of search models, which search behind Chat Completions."""
    custom_tools: bool = True
    """Whether the upstream knows custom (freeform) tools; where not, they are offered as functions."""


class OpenAICompatibleOptions(OpenAIOptions):
    responses_models: tuple[str, ...] = ()
    search_models: tuple[str, ...] = ()
    custom_tools: bool = False
    responses: bool = False
    """Whether the server implements the Responses API, so that its clients are forwarded."""


class AnthropicOptions(HttpChatOptions):
    anthropic_version: str = Field(default="2023-06-01", min_length=1)
    default_max_tokens: int | None = Field(default=None, ge=1)
    """`max_tokens` of a translated request that sets none (Anthropic requires one)."""


class EchoOptions(Strict):
    token_delay_seconds: float = Field(default=0.0, ge=0, le=60)
    """Slows the stream down, for testing clients that disconnect."""


class OpenAIConfig(ProviderBase):
    kind: ClassVar[ProviderKind] = "chat"
    implementation: ClassVar[str] = "hypereal.providers.openai:OpenAIProvider"
    type: Literal["openai"] = "openai"
    options: OpenAIOptions = OpenAIOptions()


class OpenAICompatibleConfig(ProviderBase):
    kind: ClassVar[ProviderKind] = "chat"
    implementation: ClassVar[str] = "hypereal.providers.openai_compatible:OpenAICompatibleProvider"
    type: Literal["openai-compatible"] = "openai-compatible"
    options: OpenAICompatibleOptions = OpenAICompatibleOptions()

    @model_validator(mode="after")
    def _has_a_base_url(self) -> OpenAICompatibleConfig:
        if not self.base_url and (not self.deployments or not all(d.base_url for d in self.deployments)):
            raise ValueError("base_url: an openai-compatible server has no default address; give its base_url")
        return self


class AnthropicConfig(ProviderBase):
    kind: ClassVar[ProviderKind] = "chat"
    implementation: ClassVar[str] = "hypereal.providers.anthropic:AnthropicProvider"
    type: Literal["anthropic"] = "anthropic"
    options: AnthropicOptions = AnthropicOptions()


class EchoConfig(ProviderBase):
    kind: ClassVar[ProviderKind] = "chat"
    implementation: ClassVar[str] = "hypereal.providers.echo:EchoProvider"
    type: Literal["local-echo"] = "local-echo"
    options: EchoOptions = EchoOptions()


ProviderConfig = Annotated[
    FalConfig
    | ReplicateConfig
    | WaveSpeedConfig
    | LocalConfig
    | ScriptedConfig
    | OpenAIConfig
    | OpenAICompatibleConfig
    | AnthropicConfig
    | EchoConfig,
    Field(discriminator="type"),
]
"""A provider entry of the catalog, its class chosen by `type`."""
