"""The upstream registry, the name tables of every catalog route, and fal jobs through the engine."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from hypereal.catalog.loader import load_catalog
from hypereal.catalog.providers import FalConfig, ReplicateConfig, WaveSpeedConfig
from hypereal.errors import Unavailable
from hypereal.jobs.worker import Worker
from hypereal.providers.fal import FalProvider
from hypereal.providers.registry import build
from hypereal.providers.replicate import ReplicateProvider
from hypereal.providers.upstream import guess_output, poll_delay, translate
from hypereal.providers.wavespeed import WaveSpeedProvider
from hypereal.services import Services
from hypereal.settings import Settings
from tests.conftest import create_test_account
from tests.doubles.fal_double import FalDouble
from tests.integration.upstreams.support import IMAGE, LAST, no_fetch, request


def test_registry_builds_the_three_upstream_types() -> None:
    assert type(build(FalConfig())) is FalProvider
    assert type(build(ReplicateConfig())) is ReplicateProvider
    assert type(build(WaveSpeedConfig())) is WaveSpeedProvider


def test_unconfigured_provider_is_unavailable_and_says_which_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_ABSENT_KEY", raising=False)
    provider = FalProvider(FalConfig(api_key_env="TEST_ABSENT_KEY"))
    assert not provider.available()
    assert provider.client.base_url == "https://queue.fal.run"


async def test_submit_without_credentials_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_ABSENT_KEY", raising=False)
    provider = WaveSpeedProvider(WaveSpeedConfig(api_key_env="TEST_ABSENT_KEY"))
    with pytest.raises(Unavailable, match="TEST_ABSENT_KEY"):
        await provider.submit(request("google/veo3.1/text-to-video", {"prompt": "x"}), no_fetch)


def _catalog_params(spec: Any) -> dict[str, Any]:
    """Every declared parameter with a plausible value, so each table entry is exercised."""
    params: dict[str, Any] = {}
    for name, p in spec.params.items():
        if p.enum:
            params[name] = p.enum[-1]
        elif p.type == "images":
            params[name] = [IMAGE, LAST]
        elif p.type in ("image", "audio"):
            params[name] = IMAGE
        elif p.type in ("integer", "number"):
            params[name] = p.default if p.default is not None else int(p.minimum or 1)
        elif p.type == "boolean":
            params[name] = True
        else:
            params[name] = p.default if p.default is not None else "text"
    return params


@pytest.mark.parametrize(
    ("provider_type", "table"),
    [("fal", FalProvider), ("replicate", ReplicateProvider), ("wavespeed", WaveSpeedProvider)],
)
def test_every_catalog_route_translates_to_upstream_names(provider_type: str, table: type) -> None:
    """fal takes every file as a `*_url(s)` field: no Hypereal file name may reach it untranslated;
    durations always leave as whole numbers or the strings the upstream wants."""
    from hypereal.providers import fal, replicate, wavespeed
    from hypereal.providers.upstream import resolve_inputs

    tables = {"fal": fal.INPUTS, "replicate": replicate.INPUTS, "wavespeed": wavespeed.INPUTS}
    catalog = load_catalog()
    routes = [
        (spec, route)
        for spec in catalog.models.values()
        for route in spec.routes
        if catalog.providers[route.provider].type == provider_type
    ]
    assert routes, f"the catalog has no {provider_type} routes"
    for spec, route in routes:
        params = _catalog_params(spec)
        body = translate(params, resolve_inputs(tables[provider_type], route.model.partition(":")[0]))
        json.dumps(body)  # the body must be plain JSON
        if provider_type == "fal":
            leaked = {"image", "images", "last_image", "audio", "mask"} & body.keys()
            assert not leaked, f"{spec.id} via {route.model} sends Hypereal names {leaked}"
        if "duration" in params and "duration" in body:
            assert isinstance(body["duration"], int | str), (spec.id, body["duration"])


def test_poll_delay_backs_off_with_age_within_bounds() -> None:
    now = 1_000_000.0
    assert poll_delay("image", now, now) == 2.0
    assert poll_delay("video", now, now) == 5.0
    assert poll_delay("video", now - 120, now) == 12.0  # a two-minute-old render is asked less often
    assert poll_delay("image", now - 3600, now) == 30.0  # but never less than every 30 s


def test_output_types_come_from_upstream_then_url_then_category() -> None:
    told = guess_output("https://cdn.example/f/abc", "video", "video/webm; codecs=vp9")
    assert (told.content_type, told.extension) == ("video/webm", "webm")
    by_url = guess_output("https://cdn.example/f/mesh.glb?sig=1", "3d")
    assert (by_url.content_type, by_url.extension) == ("model/gltf-binary", "glb")
    by_category = guess_output("https://cdn.example/f/abc", "audio")
    assert (by_category.content_type, by_category.extension, by_category.url) == (
        "audio/mpeg",
        "mp3",
        "https://cdn.example/f/abc",
    )


# ---------------------------------------------------------------------------- through the job engine


@pytest.fixture
async def fal_services(
    tmp_path: Path,
    fal_double: FalDouble,
    make_settings: Callable[..., Settings],
    make_services: Callable[[Settings], Awaitable[Services]],
) -> AsyncIterator[Services]:
    """The app's services with the catalog's `fal` provider pointed at the double, and a worker."""
    catalog = tmp_path / "fal-catalog.yaml"
    catalog.write_text(
        f"providers:\n  fal: {{type: fal, api_key_env: TEST_FAL_KEY, base_url: '{fal_double.base_url}'}}\n"
    )
    services = await make_services(make_settings(catalog=catalog))
    worker = Worker(services.jobs, 2)
    worker.start()
    try:
        yield services
    finally:
        await worker.stop()


async def test_engine_completes_an_image_through_the_fal_queue(
    fal_services: Services, fal_double: FalDouble, make_client: Callable[[Services], httpx.AsyncClient]
) -> None:
    fal_double.polls_in_queue = fal_double.polls_in_progress = 0
    fal_double.results["fal-ai/nano-banana"] = {
        "images": [{"url": fal_double.file_url("cat.png"), "content_type": "image/png"}]
    }
    account = await create_test_account(fal_services, credits=100)
    client = make_client(fal_services)

    answer = await client.post(
        "/v1/images/generate",
        json={"model": "nano-banana-t2i", "prompt": "a cat", "aspect_ratio": "16:9"},
        headers=account.headers,
    )

    assert answer.status_code == 200, answer.text
    assert answer.json()["data"][0]["url"] == fal_double.file_url("cat.png")
    assert fal_double.submissions[-1].model == "fal-ai/nano-banana"
    assert fal_double.submissions[-1].input["prompt"] == "a cat"
    job = await client.get(f"/v1/jobs/{answer.json()['jobId']}", headers=account.headers)
    assert job.json()["status"] == "completed"
    balance = (await client.get("/v1/account", headers=account.headers)).json()["balance"]
    assert balance == 100 - answer.json()["creditsUsed"] < 100


async def test_engine_refunds_a_job_fal_failed(
    fal_services: Services, fal_double: FalDouble, make_client: Callable[[Services], httpx.AsyncClient]
) -> None:
    fal_double.polls_in_queue = fal_double.polls_in_progress = 0
    fal_double.fail_jobs("Model crashed")
    account = await create_test_account(fal_services, credits=100)
    client = make_client(fal_services)

    answer = await client.post(
        "/v1/images/generate", json={"model": "nano-banana-t2i", "prompt": "a cat"}, headers=account.headers
    )

    job_id = answer.json().get("jobId") or answer.json().get("resultId")
    job = (await client.get(f"/v1/jobs/{job_id}", headers=account.headers)).json()
    assert job["status"] == "failed"
    assert "Model crashed" in job["error"]
    balance = (await client.get("/v1/account", headers=account.headers)).json()["balance"]
    assert balance == 100
