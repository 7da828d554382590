"""An operator's catalog file (HYPEREAL_CATALOG) merged over the built-in one, checked at start-up."""

from __future__ import annotations

import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from hypereal.catalog import CatalogError
from hypereal.services import Services
from hypereal.settings import Settings, load_settings
from tests.conftest import run_cli

OPERATOR_FILE = """
providers:
  my-fal: {type: fal, api_key_env: MY_FAL_KEY}
models:
  - id: acme-sketch
    category: image
    task: t2i
    name: Acme Sketch
    description: The in-house sketch renderer, served by the local procedural model.
    params:
      prompt: {type: string, required: true, max_length: 500}
    pricing: {per_call: 3}
    routes:
      - {provider: local, model: local-image}
  - id: veo-3-1-t2v
    routes:
      - {provider: my-fal, model: fal-ai/veo3.1}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def catalog_settings(tmp_path: Path, catalog: Path | None) -> Settings:
    return load_settings(environ={}, data_dir=tmp_path / "data", catalog=catalog)


async def test_operator_file_adds_a_model_and_overrides_a_route(
    tmp_path: Path,
    make_services: Callable[[Settings], Awaitable[Services]],
    make_client: Callable[[Services], httpx.AsyncClient],
) -> None:
    builtin = await make_services(catalog_settings(tmp_path / "plain", None))
    services = await make_services(catalog_settings(tmp_path, write(tmp_path, OPERATOR_FILE)))
    client = make_client(services)

    assert "acme-sketch" not in builtin.catalog.models
    assert len(services.catalog.models) == len(builtin.catalog.models) + 1

    added = await client.get("/api/v1/models/acme-sketch")
    assert added.status_code == 200
    body = added.json()
    assert body["category"] == "image" and body["pricing"] == {"per_call": 3}
    assert body["available"] is True
    listed = (await client.get("/v1/models?category=image")).json()["data"]
    assert "acme-sketch" in [model["id"] for model in listed]

    before = builtin.catalog.models["veo-3-1-t2v"]
    after = services.catalog.models["veo-3-1-t2v"]
    assert [(r.provider, r.model) for r in after.routes] == [("my-fal", "fal-ai/veo3.1")]
    assert len(before.routes) > 1
    # Only the routes were overridden; the rest of the entry is the built-in one.
    assert (after.name, after.params, after.pricing) == (before.name, before.params, before.pricing)
    overridden = (await client.get("/v1/models/veo-3-1-t2v")).json()
    assert overridden["owned_by"] == "fal"


@pytest.mark.parametrize(
    ("text", "entry", "field"),
    [
        ("models:\n  - {id: local-image, pricing: {per_call: -5}}\n", "local-image", "pricing.per_call"),
        ("models:\n  - {id: veo-3-1-t2v, colour: red}\n", "veo-3-1-t2v", "colour"),
        ("models:\n  - {id: acme-x, category: image, name: X}\n", "acme-x", "routes"),
        ("models:\n  - {id: acme-y, category: hologram, name: Y, routes: [{provider: local, model: m}]}\n", "acme-y",
         "category"),
        ("models:\n  - {id: veo-3-1-t2v, routes: [{provider: nobody, model: m}]}\n", "veo-3-1-t2v",
         "routes.0.provider"),
        ("providers:\n  leaky: {type: fal, api_key: sk-inline-secret}\n", "leaky", "api_key"),
        ("providers:\n  mine: {type: openai-compatble, base_url: 'http://h/v1'}\n", "mine",
         "unknown provider type 'openai-compatble' (did you mean 'openai-compatible'?)"),
        ("providers:\n  mine: {type: openai, options: {max_conections: 3}}\n", "mine",
         "options.max_conections: unknown field (did you mean 'max_connections'?)"),
        ("providers:\n  mine: {type: fal, options: {data_uri_max_bytes: many}}\n", "mine",
         "options.data_uri_max_bytes"),
        ("providers:\n  mine: {type: anthropic, deployments: [{api_key_env: A, wieght: 2}]}\n", "mine",
         "deployments.0.wieght: unknown field (did you mean 'weight'?)"),
        ("providers:\n  mine: {type: openai, deployments: [{api_key_env: A}, {api_key_env: A}]}\n", "mine",
         "'A' names two deployments"),
        ("providers:\n  mine: {api_key_env: A}\n", "mine", "type: missing"),
        ("providers:\n  mine: {type: openai-compatible}\n", "mine", "base_url: an openai-compatible server"),
        ("models:\n  - {id: veo-3-1-t2v, routes: [{provider: echo, model: m}]}\n", "veo-3-1-t2v",
         "routes.0.provider: provider 'echo' of type local-echo serves chat, not media"),
        ("models:\n  - {id: veo-3-1-t2v, routes: [{provider: fall, model: m}]}\n", "veo-3-1-t2v",
         "unknown provider 'fall' (did you mean 'fal'?)"),
    ],
)  # fmt: skip
def test_a_bad_entry_names_the_entry_and_the_field(tmp_path: Path, text: str, entry: str, field: str) -> None:
    with pytest.raises(CatalogError) as caught:
        Services.build(catalog_settings(tmp_path, write(tmp_path, text)))
    assert entry in str(caught.value)
    assert field in str(caught.value)


def test_a_bad_entry_stops_the_server_at_start(tmp_path: Path) -> None:
    bad = write(tmp_path, "models:\n  - {id: local-image, pricing: {per_call: -5}}\n")
    env = {"HYPEREAL_CATALOG": str(bad), "HYPEREAL_DATA_DIR": str(tmp_path / "data")}
    for command in (["serve", "--port", "1", "--no-worker"], ["models", "list"]):
        result = run_cli(*command, env=env)
        assert result.returncode == 2
        assert "local-image" in result.stderr and "pricing.per_call" in result.stderr
        assert "Traceback" not in result.stderr


def test_a_missing_catalog_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=r"missing\.yaml"):
        Services.build(catalog_settings(tmp_path, tmp_path / "missing.yaml"))
