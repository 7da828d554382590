"""Fixtures of the real-client tests.

stack       module-scoped: a hypereal server whose models are served by local-echo and the
            protocol doubles (`tests.integration.chat_support`), shared by a module's tests
program     parametrised over the real programs (`programs.PROGRAMS`); skipped, saying why,
            when node or the program is not installed (failed instead with
            TEST_REQUIRE_SERVICES=1, as in CI, where scripts/test installs them)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.clients.programs import PROGRAMS, Program
from tests.conftest import Server, unavailable
from tests.integration.chat_support import Stack, running_stack


@pytest.fixture(scope="module")
def stack(start_server: Callable[..., Server], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    reasons = {program.missing() for program in PROGRAMS}
    if None not in reasons:  # no program to run: no server either
        unavailable("; ".join(sorted(str(reason) for reason in reasons)))
    with running_stack(start_server, tmp_path_factory.mktemp("catalog")) as running:
        yield running


@pytest.fixture(params=PROGRAMS, ids=lambda program: program.name)
def program(request: pytest.FixtureRequest) -> Program:
    chosen: Program = request.param
    reason = chosen.missing()
    if reason is not None:
        unavailable(f"{chosen.name}: {reason}")
    return chosen
