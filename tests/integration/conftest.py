"""Fixtures shared by the job-engine test modules (their helpers are in `jobs_support`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from hypereal.services import Services
from hypereal.settings import Settings
from tests.integration.jobs_support import Stack, StackFactory, start_stack


@pytest.fixture
def make_stack(
    tmp_path: Path,
    make_settings: Callable[..., Settings],
    make_services: Callable[[Settings], Awaitable[Services]],
    make_client: Callable[[Services], httpx.AsyncClient],
) -> StackFactory:
    """`start_stack` with settings of the test's own (`concurrency=1`, ...)."""

    async def make(**overrides: Any) -> Stack:
        return await start_stack(tmp_path, make_settings, make_services, make_client, **overrides)

    return make
