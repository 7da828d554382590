"""The real coding agents, and how to run each one non-interactively against a hypereal server.

The programs are the npm packages pinned in `tests/clients/package.json` and installed (by
`scripts/test`, or `npm install --prefix tests/clients`) into `tests/clients/node_modules`.
Each run is isolated: a HOME of its own (so no user configuration, history or credentials
are read, and the program's own files land there), an empty working directory, and an
environment holding only what the program needs: its configuration exactly as the README
gives it, plus the switches that keep it off the internet (update checks, telemetry,
plugin and model-list downloads), so a run talks to the hypereal server and nothing else.

A turn is plain (the program prints its final answer) or streamed (its JSON event output:
Claude Code's `stream-json`, `codex exec --json`, `opencode run --format json`); the API
calls underneath stream in both cases, as all three programs always ask for a stream.
`Program.tool_prompt` makes the model call the program's own shell tool through the
directive local-echo and the upstream doubles follow (`hypereal.providers.echo.scripted_call`):
the program runs `echo hypereal-$((6*7))`, and the answer that ends the turn quotes what the
tool printed, `hypereal-42`, which only a shell could have made of the prompt.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

CLIENTS_DIR = Path(__file__).resolve().parent
BIN = CLIENTS_DIR / "node_modules" / ".bin"
TIMEOUT_SECONDS = 120.0
SHELL_COMMAND = "echo hypereal-$((6*7))"
SHELL_OUTPUT = "hypereal-42"
PLAIN_PROMPT = "Reply with a short greeting."
PASSED_ON = ("PATH", "LANG", "LC_ALL", "SYSTEMROOT")
"""The test process's variables a program gets; everything else it sees is set here."""


@dataclass
class Run:
    """What one run of a program did."""

    program: Program
    returncode: int
    stdout: str
    stderr: str
    streamed: bool
    events: list[dict[str, Any]] = field(default_factory=list)
    """The JSON events of a streamed run, in order."""

    @property
    def answer(self) -> str:
        """The final answer, as the program reports it."""
        return self.program.answer(self)

    def describe(self) -> str:
        return f"{self.program.name} exited with {self.returncode}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"


class Program:
    name: ClassVar[str]
    """The corpus name: `claude-code`, `codex`, `opencode`."""
    package: ClassVar[str]
    binary: ClassVar[str]
    surface: ClassVar[str]
    """The wire format the program speaks (a `hypereal.providers.chat.Protocol`)."""
    shell_tool: ClassVar[str]
    """The name of the program's own shell tool."""
    docs_model: ClassVar[str]
    """The model the Hypereal docs set the program up with ("": the program's own default)."""

    @classmethod
    def executable(cls) -> Path:
        return BIN / cls.binary

    @classmethod
    def version(cls) -> str:
        """The pinned version, from package.json."""
        pins = json.loads((CLIENTS_DIR / "package.json").read_text())["dependencies"]
        return str(pins[cls.package])

    @classmethod
    def missing(cls) -> str | None:
        """Why the program cannot run here, None when it can."""
        if shutil.which("node") is None:
            return "node is not installed"
        if not cls.executable().exists():
            return f"{cls.package} is not installed (scripts/test installs it: npm install --prefix tests/clients)"
        return None

    def tool_prompt(self) -> str:
        return f"call {self.shell_tool} with {json.dumps(self.shell_arguments())}"

    def shell_arguments(self) -> dict[str, Any]:
        raise NotImplementedError

    def configure(self, home: Path, workdir: Path, server_url: str, key: str, model: str) -> dict[str, str]:
        """Write the program's configuration; the variables it runs with."""
        raise NotImplementedError

    def argv(self, prompt: str, model: str, streamed: bool) -> list[str]:
        raise NotImplementedError

    def stdin(self, prompt: str) -> str:
        """What the program reads on its standard input (nothing, unless it takes the prompt there)."""
        return ""

    def answer(self, run: Run) -> str:
        raise NotImplementedError

    def run(
        self,
        directory: Path,
        server_url: str,
        key: str,
        model: str,
        prompt: str,
        streamed: bool = False,
        timeout: float = TIMEOUT_SECONDS,
    ) -> Run:
        """One turn in `directory` (made empty first, holding `home` and `project`)."""
        shutil.rmtree(directory, ignore_errors=True)
        home, workdir = directory / "home", directory / "project"
        home.mkdir(parents=True)
        workdir.mkdir()
        variables = {name: os.environ[name] for name in PASSED_ON if name in os.environ}
        variables.update({"HOME": str(home), "NO_COLOR": "1", "TERM": "dumb"})
        variables.update(self.configure(home, workdir, server_url, key, model))
        completed = subprocess.run(
            [str(self.executable()), *self.argv(prompt, model, streamed)],
            cwd=workdir,
            env=variables,
            input=self.stdin(prompt),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        events = [_event(line) for line in completed.stdout.splitlines() if line.startswith("{")] if streamed else []
        return Run(self, completed.returncode, completed.stdout, completed.stderr, streamed, events)


def _event(line: str) -> dict[str, Any]:
    value = json.loads(line)
    return value if isinstance(value, dict) else {"value": value}


class ClaudeCode(Program):
    name = "claude-code"
    package = "@anthropic-ai/claude-code"
    binary = "claude"
    surface = "anthropic-messages"
    shell_tool = "Bash"
    docs_model = ""

    def shell_arguments(self) -> dict[str, Any]:
        return {"command": SHELL_COMMAND, "description": "print"}

    def configure(self, home: Path, workdir: Path, server_url: str, key: str, model: str) -> dict[str, str]:
        return {
            "ANTHROPIC_BASE_URL": server_url + "/api",
            "ANTHROPIC_API_KEY": key,
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_AUTOUPDATER": "1",
        }

    def argv(self, prompt: str, model: str, streamed: bool) -> list[str]:
        # Bash is allowed up front: a non-interactive run has no one to ask. (Skipping every
        # permission check is refused to root, which CI machines often are.)
        # No model: Claude Code's own default, as a user who follows the docs runs it.
        command = ["-p", prompt, *(["--model", model] if model else []), "--allowedTools", "Bash"]
        if streamed:
            command += ["--output-format", "stream-json", "--verbose", "--include-partial-messages"]
        return command

    def answer(self, run: Run) -> str:
        if not run.streamed:
            return run.stdout.strip()
        results = [event for event in run.events if event.get("type") == "result"]
        return str(results[-1].get("result", "")) if results else ""


class Codex(Program):
    name = "codex"
    package = "@openai/codex"
    binary = "codex"
    surface = "openai-responses"
    shell_tool = "exec_command"
    docs_model = "gpt-5-codex"

    def shell_arguments(self) -> dict[str, Any]:
        return {"cmd": SHELL_COMMAND}

    def configure(self, home: Path, workdir: Path, server_url: str, key: str, model: str) -> dict[str, str]:
        config = home / ".codex" / "config.toml"
        config.parent.mkdir()
        # The README's configuration, then what keeps Codex off the internet: its update
        # check, analytics, and the plugin catalogue it syncs from GitHub.
        config.write_text(
            f'model = "{model}"\n'
            'model_provider = "hypereal"\n'
            "check_for_update_on_startup = false\n"
            "\n[model_providers.hypereal]\n"
            'name = "Hypereal"\n'
            f'base_url = "{server_url}/api/v1"\n'
            'env_key = "HYPEREAL_API_KEY"\n'
            'wire_api = "responses"\n'
            "\n[analytics]\nenabled = false\n"
            "\n[features]\nplugins = false\n"
        )
        return {"HYPEREAL_API_KEY": key}

    def argv(self, prompt: str, model: str, streamed: bool) -> list[str]:
        # No sandbox: the one Codex builds needs kernel features containers often lack.
        command = ["exec", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox", "--color", "never"]
        return [*command, *(["--json"] if streamed else []), prompt]

    def answer(self, run: Run) -> str:
        if not run.streamed:
            return run.stdout.strip()
        messages = [
            event["item"].get("text", "")
            for event in run.events
            if event.get("type") == "item.completed" and (event.get("item") or {}).get("type") == "agent_message"
        ]
        return str(messages[-1]) if messages else ""


class OpenCode(Program):
    """OpenCode with hypereal as an OpenAI-compatible provider (Chat Completions)."""

    name = "opencode"
    package = "opencode-ai"
    binary = "opencode"
    surface = "openai-chat"
    shell_tool = "bash"
    docs_model = "claude-sonnet-4-6"
    sdk: ClassVar[str] = "@ai-sdk/openai-compatible"
    """The AI SDK provider package OpenCode speaks to hypereal through."""

    def shell_arguments(self) -> dict[str, Any]:
        return {"command": SHELL_COMMAND, "description": "print"}

    def configure(self, home: Path, workdir: Path, server_url: str, key: str, model: str) -> dict[str, str]:
        config = opencode_config(self.sdk, server_url, key, [model])
        (workdir / "opencode.json").write_text(json.dumps(config, indent=2))
        return {
            "OPENCODE_DISABLE_AUTOUPDATE": "1",
            "OPENCODE_DISABLE_MODELS_FETCH": "1",
            "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1",  # else installed from npm on every fresh HOME
        }

    def argv(self, prompt: str, model: str, streamed: bool) -> list[str]:
        return ["run", "--model", f"hypereal/{model}", *(["--format", "json"] if streamed else [])]

    def stdin(self, prompt: str) -> str:
        # `opencode run "<message>"` quotes a message that holds spaces, escaping its quotes;
        # read from standard input, the prompt arrives as written.
        return prompt

    def answer(self, run: Run) -> str:
        if not run.streamed:
            return run.stdout.strip()
        texts = [str((event.get("part") or {}).get("text", "")) for event in run.events if event.get("type") == "text"]
        return texts[-1].strip() if texts else ""


class OpenCodeMessages(OpenCode):
    """OpenCode with hypereal as an Anthropic provider (Messages), as the Hypereal docs name it."""

    name = "opencode-messages"
    surface = "anthropic-messages"
    sdk = "@ai-sdk/anthropic"


def opencode_config(sdk: str, server_url: str, key: str, models: list[str]) -> dict[str, Any]:
    """An opencode.json with hypereal as a provider through the AI SDK package `sdk` (as in the README)."""
    return {
        "$schema": "https://opencode.ai/config.json",
        "provider": {
            "hypereal": {
                "npm": sdk,
                "name": "Hypereal",
                "options": {"baseURL": f"{server_url}/api/v1", "apiKey": key},
                "models": {model: {"name": model} for model in models},
            }
        },
    }


PROGRAMS: list[Program] = [ClaudeCode(), Codex(), OpenCode(), OpenCodeMessages()]
