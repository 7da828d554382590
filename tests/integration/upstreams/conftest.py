"""Fixtures for the fal, Replicate and WaveSpeed adapters' tests against their doubles."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from hypereal.providers.fal import FalProvider
from hypereal.providers.replicate import ReplicateProvider
from hypereal.providers.wavespeed import WaveSpeedProvider
from tests.doubles.fal_double import FalDouble
from tests.doubles.replicate_double import ReplicateDouble
from tests.doubles.wavespeed_double import WaveSpeedDouble
from tests.integration.upstreams.support import config


@pytest.fixture
async def fal_double(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FalDouble]:
    monkeypatch.setenv("TEST_FAL_KEY", "fal-test-key")
    async with FalDouble() as double:
        yield double


@pytest.fixture
async def fal(fal_double: FalDouble) -> AsyncIterator[FalProvider]:
    provider = FalProvider(config("fal", "TEST_FAL_KEY", fal_double.base_url, timeout_seconds=5))
    yield provider
    await provider.close()


@pytest.fixture
async def replicate_double(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ReplicateDouble]:
    monkeypatch.setenv("TEST_REPLICATE_TOKEN", "r8-test-token")
    async with ReplicateDouble() as double:
        yield double


@pytest.fixture
async def replicate(replicate_double: ReplicateDouble) -> AsyncIterator[ReplicateProvider]:
    provider = ReplicateProvider(config("replicate", "TEST_REPLICATE_TOKEN", replicate_double.base_url))
    yield provider
    await provider.close()


@pytest.fixture
async def wavespeed_double(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[WaveSpeedDouble]:
    monkeypatch.setenv("TEST_WAVESPEED_KEY", "ws-test-key")
    async with WaveSpeedDouble() as double:
        yield double


@pytest.fixture
async def wavespeed(wavespeed_double: WaveSpeedDouble) -> AsyncIterator[WaveSpeedProvider]:
    provider = WaveSpeedProvider(config("wavespeed", "TEST_WAVESPEED_KEY", wavespeed_double.base_url))
    yield provider
    await provider.close()
