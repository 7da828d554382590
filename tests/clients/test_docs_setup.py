"""The docs' own set-ups on a server without provider keys: refused at once, or served offline.

A user follows the Hypereal docs: Claude Code with no model named (its own default, a Claude
model the catalog may not list yet), Codex CLI with `gpt-5-codex`, OpenCode with
`claude-sonnet-4-6`. With no provider key set, each model is refused with a 400 that says
what to set, which none of the programs retries (a 503 made both CLIs reconnect for
minutes); with HYPEREAL_LOCAL_FALLBACK=true, local-echo answers in the model's place and the
ledger says so.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.clients.programs import PLAIN_PROMPT, PROGRAMS, Program
from tests.clients.test_turns import CREDITS, settled_calls
from tests.conftest import ADMIN_HEADERS, Server, unavailable
from tests.integration.chat_support import Client

MOST_SENDS_OF_ONE_TURN = 7
"""Claude Code answers a 400 by sending the turn again with fewer `anthropic-beta` features,
up to six times in the same second; that is not a retry of a transient failure (its retry
counter stays at 0). Codex and OpenCode send it once."""
REFUSED_CHAT_CALLS = re.compile(
    r'hypereal_http_requests_total\{method="POST",route="[^"]*(messages|responses|completions)",status="400"\} (\S+)'
)


@pytest.fixture(scope="module")
def servers(start_server: Callable[..., Server]) -> Iterator[dict[str, Server]]:
    if all(program.missing() for program in PROGRAMS):
        unavailable("; ".join(sorted({str(program.missing()) for program in PROGRAMS})))
    yield {"keyless": start_server(), "fallback": start_server(env={"HYPEREAL_LOCAL_FALLBACK": "true"})}


def new_account(server: Server) -> Client:
    made = httpx.post(
        server.url + "/api/v1/admin/accounts", json={"name": "docs", "credits": CREDITS}, headers=ADMIN_HEADERS
    ).json()
    key = httpx.post(server.url + f"/api/v1/admin/accounts/{made['id']}/keys", json={}, headers=ADMIN_HEADERS)
    return Client(server.url + "/api/v1", key.json()["key"])


def refusals(server: Server) -> int:
    """How many chat calls the server has refused with a 400 so far."""
    metrics = httpx.get(server.url + "/metrics").text
    return sum(int(float(found.group(2))) for found in REFUSED_CHAT_CALLS.finditer(metrics))


def test_without_provider_keys_the_docs_set_up_fails_at_once_saying_what_to_set(
    servers: dict[str, Server], program: Program, tmp_path: Path
) -> None:
    server = servers["keyless"]
    account = new_account(server)
    before = refusals(server)

    run = program.run(tmp_path, server.url, account.key, program.docs_model, PLAIN_PROMPT)

    assert run.returncode != 0, run.describe()
    assert "No provider is configured" in run.stdout + run.stderr, run.describe()
    assert "HYPEREAL_LOCAL_FALLBACK=true" in run.stdout + run.stderr, run.describe()
    sent = refusals(server) - before
    assert 1 <= sent <= MOST_SENDS_OF_ONE_TURN, f"{sent} refused calls: retried\n{run.describe()}"
    assert account.chat_entries() == [], "a refused call leaves nothing in the ledger"


def test_with_local_fallback_the_docs_set_up_completes_a_turn_on_local_echo(
    servers: dict[str, Server], program: Program, tmp_path: Path
) -> None:
    account = new_account(servers["fallback"])

    run = program.run(tmp_path, servers["fallback"].url, account.key, program.docs_model, PLAIN_PROMPT)

    assert run.returncode == 0, run.describe() + servers["fallback"].output()[-3000:]
    assert PLAIN_PROMPT in run.answer, run.describe()
    calls = settled_calls(account)
    assert calls, "the turn was billed"
    for entries in calls:
        assert [entry["kind"] for entry in entries] == ["charge", "settle"], entries
        assert str(entries[0]["note"]).endswith("via local-echo"), entries[0]
