"""The recording proxy passes requests through untouched, and nothing of the recording machine
reaches the corpus."""

from __future__ import annotations

import json
import platform
import re
from pathlib import Path

import httpx

from tests.clients.capture import ADDRESS, HOME, KERNEL_RELEASE, PROJECT, Exchange, RecordingProxy, Scrubber
from tests.clients.update import CORPUS
from tests.doubles.openai_double import BackgroundServer, OpenAIDouble

MACHINE_PATH = re.compile(r"hypereal-record-|pytest-of-")
"""What the temporary directories of a recording or a test run are named after. (The recorder
refuses to write the exact paths of its run; the programs' own texts name example paths.)"""


def test_the_proxy_forwards_the_request_and_streams_the_answer_back_as_it_came() -> None:
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with BackgroundServer(OpenAIDouble()) as double, BackgroundServer(RecordingProxy(double.url[:-3])) as proxy:
        headers = {"Authorization": f"Bearer {double.key}", "user-agent": "probe/1"}
        with httpx.stream("POST", proxy.url + "/v1/chat/completions?x=1", json=body, headers=headers) as answer:
            chunks = [line for line in answer.iter_lines() if line]

        assert answer.status_code == 200
        assert chunks[-1] == "data: [DONE]"
        deltas = [json.loads(chunk.removeprefix("data: "))["choices"] for chunk in chunks[:-1]]
        assert "".join(choice[0]["delta"].get("content", "") for choice in deltas if choice) == "Hello from OpenAI: hi"
        assert double.requests[-1].body == body
        (exchange,) = proxy.take()
        assert (exchange.method, exchange.path, exchange.status) == ("POST", "/v1/chat/completions?x=1", 200)
        assert exchange.json() == body and exchange.surface == "openai-chat"


def test_a_scrubbed_entry_holds_placeholders_for_paths_ids_and_the_system() -> None:
    scrubber = Scrubber(home=Path("/tmp/rec-1/home"), workdir=Path("/tmp/rec-1/project"), address="127.0.0.1:40123")
    session = "35B94802-4338-4995-8801-CD3525439C3D"
    device = "5f2b9c0e41d7a3b86e0c5d9f1a27b4e83c6d0f9a52e1b7c48d3a6f0e29b5c71d"
    system = (
        f"Primary working directory: /tmp/rec-1/project\n - OS Version: Linux {platform.release()}\n"
        "memory: /tmp/rec-1/home/.claude/projects/-tmp-rec-1-project/memory/ at http://127.0.0.1:40123/api"
    )
    body = {
        "system": system,
        "metadata": {"user_id": json.dumps({"device_id": device, "session_id": session.lower()})},
        "prompt_cache_key": session,
        "input": [{"id": f"msg_{session}"}],
        "note": "ses_dc9dc2a65ffeFXNdNawPB06Bgo then ses_dc9dc2a65ffeFXNdNawPB06Bgo",
    }
    headers = {
        "User-Agent": "codex_exec/0.171.0 (Debian 12.0.0; x86_64) xterm (codex_exec; 0.171.0)",
        "anthropic-beta": "claude-code-20250219",
        "x-api-key": "ck_secret",
        "X-Claude-Code-Session-Id": session,
    }

    entry = scrubber.entry(Exchange("POST", "/api/v1/messages?beta=true", headers, json.dumps(body).encode()))

    assert entry["headers"] == {
        "anthropic-beta": "claude-code-20250219",
        "user-agent": "codex_exec/0.171.0 (Linux; x86_64) xterm (codex_exec; 0.171.0)",
    }
    scrubbed = entry["body"]
    assert scrubbed["system"] == (
        f"Primary working directory: {PROJECT}\n - OS Version: Linux {KERNEL_RELEASE}\n"
        f"memory: {HOME}/.claude/projects/-home-user-project/memory/ at http://{ADDRESS}/api"
    )
    first_uuid = "00000000-0000-4000-8000-000000000001"
    assert json.loads(scrubbed["metadata"]["user_id"]) == {"device_id": "0" * 63 + "1", "session_id": first_uuid}
    assert scrubbed["prompt_cache_key"] == first_uuid, "the same id, in any case, is the same placeholder"
    assert scrubbed["input"] == [{"id": f"msg_{first_uuid}"}]
    assert scrubbed["note"] == "ses_placeholder0000000000000001 then ses_placeholder0000000000000001"
    assert scrubber.leaks(json.dumps(entry)) == []
    assert scrubber.leaks(json.dumps(body)) != []


def test_no_corpus_file_holds_a_path_or_kernel_of_the_machine_that_recorded_it() -> None:
    files = sorted(CORPUS.glob("*/*.json"))
    assert files, "the corpus is recorded by scripts/update-clients"
    for path in files:
        text = path.read_text()
        assert not MACHINE_PATH.search(text), f"{path.name}: {MACHINE_PATH.search(text)}"
        assert platform.release() not in text or len(platform.release()) <= 3, path.name
