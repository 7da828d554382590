"""A recording proxy: what a real client sends, exactly, on its way to a hypereal server.

`RecordingProxy(target)` listens on 127.0.0.1 (a `LocalServer`, run with
`tests.doubles.openai_double.BackgroundServer`) and forwards every request to `target`
unchanged, streaming the answer back as it comes; each request is kept in `exchanges` as it
arrived: method, path with its query, headers, body bytes, and the status it got.

`Scrubber` turns an exchange into a corpus entry that holds nothing of the machine it was
recorded on. The paths of the run (its HOME and working directory, also in the dashed form
Claude Code makes of a path) become `/home/user` and `/home/user/project`, the proxy's
address `127.0.0.1:8000`; the kernel release and the operating system a user agent names
become fixed stand-ins; UUIDs, 64-digit hex ids and OpenCode's session ids become numbered
placeholders, the same value always the same placeholder, so a corpus entry still shows
which ids are equal. `Scrubber.leaks(text)` names what is left of the machine, and the
recorder refuses to write an entry that has any. Only the headers that say what a client is
and which API version it speaks are kept (`KEPT_HEADERS`); keys and per-request ids are not.
"""

from __future__ import annotations

import gzip
import os
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import aiohttp
import orjson
from aiohttp import web

from tests.doubles.local_server import LocalServer

KEPT_HEADERS = ("anthropic-beta", "anthropic-version", "openai-beta", "originator", "user-agent", "x-app")
HOP_BY_HOP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}
HOME = "/home/user"
PROJECT = "/home/user/project"
ADDRESS = "127.0.0.1:8000"
KERNEL_RELEASE = "6.0.0-generic"
# Ids often follow a prefix (`msg_<uuid>`), so they are delimited by what is not hex, not by \b.
UUID = re.compile(
    r"(?<![0-9a-fA-F])[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(?![0-9a-fA-F])"
)
HEX_ID = re.compile(r"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")
DASHED = re.compile(r"[^a-zA-Z0-9]")
"""What Claude Code turns into dashes to name a directory after a path."""
OPENCODE_ID = re.compile(r"\b(ses|msg|prt)_[0-9a-zA-Z]{20,}\b")
USER_AGENT_OS = re.compile(r"\((?:Debian|Ubuntu|Fedora|Alpine|Arch|CentOS|Red Hat|Linux|Mac OS|macOS|Windows)[^;()]*;")
SURFACES = {
    "/v1/messages": "anthropic-messages",
    "/v1/messages/count_tokens": "anthropic-count-tokens",
    "/v1/chat/completions": "openai-chat",
    "/v1/responses": "openai-responses",
}


@dataclass
class Exchange:
    method: str
    path: str
    """With the query string, as the client sent it."""
    headers: dict[str, str]
    body: bytes
    status: int = 0

    @property
    def surface(self) -> str:
        """The wire format of the call (`anthropic-messages`, `openai-chat`, …), or `other`."""
        route = self.path.split("?", 1)[0].removeprefix("/api")
        return SURFACES.get(route, "other") if self.method == "POST" else "other"

    def json(self) -> Any:
        if not self.body:
            return None
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return self.body.decode(errors="replace")


class RecordingProxy(LocalServer):
    client_max_size = 256 * 1024**2  # an agent's whole conversation, images included

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target.rstrip("/")
        self.exchanges: list[Exchange] = []
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return self.base_url

    def _routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._forward)

    async def start(self) -> Self:
        # Compressed answers go back as they came: the client asked for them.
        self._session = aiohttp.ClientSession(auto_decompress=False, timeout=aiohttp.ClientTimeout(total=None))
        return await super().start()

    async def stop(self) -> None:
        await super().stop()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def take(self) -> list[Exchange]:
        """The exchanges recorded since the last call."""
        taken, self.exchanges = self.exchanges, []
        return taken

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        body = await request.read()
        exchange = Exchange(request.method, request.path_qs, dict(request.headers), _decoded(request, body))
        self.exchanges.append(exchange)
        headers = {name: value for name, value in request.headers.items() if name.lower() not in HOP_BY_HOP}
        async with self._session.request(
            request.method, self.target + request.path_qs, headers=headers, data=body or None
        ) as upstream:
            exchange.status = upstream.status
            answer = web.StreamResponse(
                status=upstream.status,
                headers={name: value for name, value in upstream.headers.items() if name.lower() not in HOP_BY_HOP},
            )
            await answer.prepare(request)
            async for chunk in upstream.content.iter_any():
                await answer.write(chunk)
            await answer.write_eof()
            return answer


def _decoded(request: web.Request, body: bytes) -> bytes:
    if request.headers.get("content-encoding", "").lower() == "gzip":
        return gzip.decompress(body)
    return body


@dataclass
class Scrubber:
    """Replaces what belongs to the recording machine; see the module docstring."""

    home: Path
    workdir: Path
    address: str = ""
    """The proxy's host:port, which becomes `ADDRESS`."""
    _placeholders: dict[str, str] = field(default_factory=dict)

    def paths(self) -> list[tuple[str, str]]:
        """(machine value, stand-in), longest first so a path inside another goes first."""
        pairs: dict[str, str] = {}
        for real, stand_in in ((self.workdir, PROJECT), (self.home, HOME)):
            for form in {str(real), os.path.realpath(real)}:
                pairs[form] = stand_in
                pairs[DASHED.sub("-", form)] = DASHED.sub("-", stand_in)
        return sorted(pairs.items(), key=lambda pair: -len(pair[0]))

    def machine_values(self) -> list[str]:
        """What of this machine must never reach the corpus."""
        values = [real for real, _ in self.paths()]
        if len(platform.release()) > 3:
            values.append(platform.release())
        user = os.environ.get("USER") or os.environ.get("LOGNAME")
        if user and user not in ("root", "user") and len(user) > 3:
            values.append(f"/home/{user}")
        return values

    def text(self, text: str) -> str:
        for real, stand_in in self.paths():
            text = text.replace(real, stand_in)
        if self.address:
            text = text.replace(self.address, ADDRESS)
        if len(platform.release()) > 3:
            text = text.replace(platform.release(), KERNEL_RELEASE)
        text = UUID.sub(lambda match: self._placeholder("uuid", match.group(0).lower()), text)
        text = HEX_ID.sub(lambda match: self._placeholder("hex", match.group(0)), text)
        return OPENCODE_ID.sub(lambda match: self._placeholder(match.group(1), match.group(0)), text)

    def _placeholder(self, kind: str, value: str) -> str:
        if value not in self._placeholders:
            number = sum(1 for key in self._placeholders.values() if key.startswith(kind + ":")) + 1
            self._placeholders[value] = f"{kind}:{number}"
        ordinal = int(self._placeholders[value].split(":")[1])
        if kind == "uuid":
            return f"00000000-0000-4000-8000-{ordinal:012d}"
        if kind == "hex":
            return f"{ordinal:064d}"
        return f"{kind}_placeholder{ordinal:016d}"

    def entry(self, exchange: Exchange) -> dict[str, Any]:
        """The corpus entry of one exchange, scrubbed."""
        headers = {name.lower(): value for name, value in exchange.headers.items()}
        kept = {name: headers[name] for name in KEPT_HEADERS if name in headers}
        if "user-agent" in kept:
            kept["user-agent"] = USER_AGENT_OS.sub("(Linux;", kept["user-agent"])
        raw = {"method": exchange.method, "path": exchange.path, "headers": kept, "body": exchange.json()}
        return orjson.loads(self.text(orjson.dumps(raw).decode()))  # type: ignore[no-any-return]

    def leaks(self, text: str) -> list[str]:
        """The machine values still in `text`."""
        return [value for value in self.machine_values() if value in text]
