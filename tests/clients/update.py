"""`scripts/update-clients`: the real clients' newest releases, and a record of what they send.

1. Bump (unless `--no-bump`): npm names each package's newest release (`npm view <package>
   version`); it is pinned exactly in tests/clients/package.json, the lockfile is rewritten
   (`npm install --package-lock-only`), the README's list of tested versions follows, and the
   clients are installed (`scripts/install-clients`).
2. Record: a hypereal server runs with a `RecordingProxy` in front; each client runs a plain
   turn and a tool turn (its own shell tool, scripted) against the proxy, and every request
   it sent goes, scrubbed of this machine (`capture.Scrubber`), into
   `corpus/<client>-<version>/NNN-<surface>.json`, numbered in the order sent. The model
   of each client is one whose upstream speaks the client's own format (a protocol double,
   `tests.integration.chat_support`), so the gateway forwards the requests rather than
   translating them: what is recorded does not depend on the translations the corpus is
   there to test. A version's directory is written whole; the directories of other versions
   stay, as regression inputs for the replay tests (test_corpus.py).

A failed turn is reported, and what was recorded kept: what the client sent is the point.
The exit status is 1 when any turn failed, 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from tests.clients.capture import RecordingProxy, Scrubber
from tests.clients.programs import CLIENTS_DIR, PLAIN_PROMPT, PROGRAMS, Program
from tests.conftest import Server, launch_server
from tests.doubles.openai_double import BackgroundServer
from tests.integration.chat_support import running_stack

CORPUS = CLIENTS_DIR / "corpus"
ROOT = CLIENTS_DIR.parent.parent
FORWARDED_TO = {"anthropic-messages": "bill-claude", "openai-responses": "bill-codex", "openai-chat": "bill-gpt"}
"""For each surface, a model whose upstream (a double) speaks it."""


def bump() -> None:
    """Pin every client's newest release, rewrite the lockfile and install."""
    manifest_path = CLIENTS_DIR / "package.json"
    manifest = json.loads(manifest_path.read_text())
    pins: dict[str, str] = manifest["dependencies"]
    for package, pinned in pins.items():
        newest = npm("view", package, "version").strip()
        print(f"{package}: {pinned} -> {newest}" if newest != pinned else f"{package}: {pinned} (newest)")
        pins[package] = newest
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    readme = ROOT / "README.md"
    text = readme.read_text()
    for package, version in pins.items():
        text = readme_pin(package).sub(lambda match, version=version: version + match.group(2), text)
    readme.write_text(text)
    npm("install", "--package-lock-only", "--no-audit", "--no-fund", "--loglevel=error")
    subprocess.run([str(ROOT / "scripts" / "install-clients")], check=True)


def readme_pin(package: str) -> re.Pattern[str]:
    """Where the README names the tested version of `package`: "2.1.332 (`@anthropic-ai/claude-code`"."""
    return re.compile(rf"(\d[\w.-]*)(\s+\(`{re.escape(package)}`)")


def npm(*args: str) -> str:
    return subprocess.run(["npm", *args], cwd=CLIENTS_DIR, capture_output=True, text=True, check=True).stdout


def record(programs: list[Program]) -> bool:
    """Record each program's turns into the corpus; whether every turn succeeded."""
    succeeded = True
    with tempfile.TemporaryDirectory(prefix="hypereal-record-") as scratch:
        servers: list[Server] = []

        def start(env: dict[str, str]) -> Server:
            servers.append(launch_server(Path(scratch), env))
            return servers[-1]

        try:
            with (
                running_stack(start, Path(scratch)) as stack,
                BackgroundServer(RecordingProxy(stack.server.url)) as proxy,
            ):
                key = stack.account(credits=100_000_000).key
                for program in programs:
                    succeeded &= record_program(program, proxy, key, Path(scratch) / program.name)
        finally:
            for server in servers:
                server.stop()
    return succeeded


def record_program(program: Program, proxy: RecordingProxy, key: str, directory: Path) -> bool:
    reason = program.missing()
    if reason is not None:
        print(f"{program.name}: not recorded, {reason}")
        return False
    scrubber = Scrubber(directory / "home", directory / "project", address=urlsplit(proxy.url).netloc)
    entries: list[tuple[str, dict[str, object]]] = []
    succeeded = True
    for turn, prompt in (("plain", PLAIN_PROMPT), ("tool", program.tool_prompt())):
        proxy.take()
        run = program.run(directory, proxy.url, key, FORWARDED_TO[program.surface], prompt)
        exchanges = proxy.take()
        statuses = ", ".join(f"{exchange.method} {exchange.path} {exchange.status}" for exchange in exchanges)
        print(f"{program.name} {program.version()} {turn} turn: exit {run.returncode}; {statuses}")
        if run.returncode != 0:
            succeeded = False
            said = (run.stdout + run.stderr).strip().splitlines()
            print("\n".join("  " + line for line in said[-8:]))
        for exchange in exchanges:
            entry = {"turn": turn, **scrubber.entry(exchange)}
            leaks = scrubber.leaks(json.dumps(entry, ensure_ascii=False))
            if leaks:
                raise SystemExit(f"{program.name}: a request still holds {leaks} after scrubbing; nothing written")
            entries.append((exchange.surface, entry))
    target = CORPUS / f"{program.name}-{program.version()}"
    target.mkdir(parents=True, exist_ok=True)
    for old in target.glob("*.json"):
        old.unlink()
    for number, (surface, entry) in enumerate(entries):
        text = json.dumps(entry, indent=2, ensure_ascii=False) + "\n"
        (target / f"{number:03d}-{surface}.json").write_text(text)
    print(f"  {len(entries)} requests in {target.relative_to(ROOT)}")
    return succeeded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/update-clients", description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-bump", action="store_true", help="record the pinned versions without bumping them")
    parser.add_argument("--only", action="append", choices=[program.name for program in PROGRAMS], default=[])
    arguments = parser.parse_args(argv)
    if not arguments.no_bump:
        bump()
    chosen = [program for program in PROGRAMS if not arguments.only or program.name in arguments.only]
    ok = record(chosen)
    print("Review `git diff tests/clients`, then: UPDATE_GOLDENS=1 pytest tests/clients/test_corpus.py; run the tests.")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
