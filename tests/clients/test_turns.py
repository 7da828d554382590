"""Claude Code, Codex CLI and OpenCode, the real programs, complete turns against hypereal.

Each program runs as a user would run it (its configuration as the README gives it, its
non-interactive mode), once per upstream kind: local-echo, the Anthropic double, the OpenAI
double's Chat Completions (behind an `openai-compatible` provider, which every other format
is translated to) and its Responses API (an `openai` provider's `*codex*` model). Between
them every surface meets every upstream format, forwarded where the formats are the same and
translated where they are not. A turn is plain, streamed (the program's JSON event output),
or a tool turn: the model calls the program's own shell tool, the program runs it, and the
model's last answer quotes what it printed. Every turn leaves the account's ledger with a
charge and a settlement of the model for each call the program made.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.clients.programs import PLAIN_PROMPT, SHELL_OUTPUT, Program, Run
from tests.integration.chat_support import Client, Stack

CREDITS = 10_000_000
"""Enough for any turn: the catalog prices a prompt token at a credit, and agents' prompts are long."""


@dataclass(frozen=True)
class Upstream:
    model: str
    greeting: str
    """How its answer to a prompt begins (local-echo answers with the prompt itself)."""


UPSTREAMS = {
    "echo": Upstream("bill-echo", ""),
    "anthropic": Upstream("bill-claude", "Hello from Claude:"),
    "openai-chat": Upstream("bill-chat", "Hello from OpenAI:"),
    "openai-responses": Upstream("bill-codex", "Hello from OpenAI:"),
}
upstreams = pytest.mark.parametrize("upstream", list(UPSTREAMS.values()), ids=list(UPSTREAMS))


def settled_calls(account: Client, wait_seconds: float = 10.0) -> list[list[dict[str, Any]]]:
    """The account's chat calls, each as its ledger entries, once all are settled (or time is up)."""
    deadline = time.monotonic() + wait_seconds
    while True:
        calls: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for entry in account.chat_entries():
            calls[entry["reference"]].append(entry)
        if all(len(entries) > 1 for entries in calls.values()) or time.monotonic() > deadline:
            return list(calls.values())
        time.sleep(0.05)


def assert_billed(account: Client, model: str, at_least: int) -> None:
    calls = settled_calls(account)
    assert len(calls) >= at_least, calls
    for entries in calls:
        assert [entry["kind"] for entry in entries] == ["charge", "settle"], entries
        assert model in (entries[0]["note"] or ""), entries[0]
        assert entries[0]["amount"] + entries[1]["amount"] < 0, "a call keeps some credits"


@upstreams
def test_plain_turn(stack: Stack, program: Program, upstream: Upstream, tmp_path: Path) -> None:
    account = stack.account(CREDITS)
    run = program.run(tmp_path, stack.server.url, account.key, upstream.model, PLAIN_PROMPT)

    assert run.returncode == 0, failure(run, stack)
    assert upstream.greeting in run.answer and PLAIN_PROMPT in run.answer, run.describe()
    assert_billed(account, upstream.model, at_least=1)


@upstreams
def test_streamed_turn(stack: Stack, program: Program, upstream: Upstream, tmp_path: Path) -> None:
    account = stack.account(CREDITS)
    run = program.run(tmp_path, stack.server.url, account.key, upstream.model, PLAIN_PROMPT, streamed=True)

    assert run.returncode == 0, failure(run, stack)
    assert len(run.events) > 1, run.describe()
    assert upstream.greeting in run.answer and PLAIN_PROMPT in run.answer, run.describe()
    assert_billed(account, upstream.model, at_least=1)


@upstreams
def test_tool_turn(stack: Stack, program: Program, upstream: Upstream, tmp_path: Path) -> None:
    account = stack.account(CREDITS)
    run = program.run(tmp_path, stack.server.url, account.key, upstream.model, program.tool_prompt())

    assert run.returncode == 0, failure(run, stack)
    # The prompt says $((6*7)): 42 is what the program's shell printed, and the model was given.
    assert SHELL_OUTPUT in run.answer, run.describe()
    assert_billed(account, upstream.model, at_least=2)


def failure(run: Run, stack: Stack) -> str:
    return run.describe() + "\nserver log (end):\n" + stack.server.output()[-3000:]
