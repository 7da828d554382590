"""What the upstream queue adapters (fal, Replicate, WaveSpeed) share.

UpstreamClient   one aiohttp session per provider instance, opened on first use and
                 closed by `close()`; JSON calls with a timeout; network failures and
                 HTTP error statuses translated into hypereal.errors once, here.
RetryLater       raised instead of an error while polling, for failures that pass
                 (rate limits, 5xx, timeouts): a video that takes ten minutes upstream
                 must not be failed and refunded because one status call met a 503.
                 The job's deadline bounds how long that can go on.
InputMap         how one upstream model names Hypereal's parameters, as data: renames,
                 value tables, allowed durations (a request is rounded up), sizes.
guess_output     content type and extension of a produced file from its URL.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from hypereal.catalog.providers import QueueConfig
from hypereal.errors import BadRequest, HyperealError, Unavailable, UpstreamError
from hypereal.providers import failures
from hypereal.providers.base import Output

if TYPE_CHECKING:
    # Imported with the first session: a server with no upstream configured never loads aiohttp.
    import aiohttp

log = logging.getLogger(__name__)

DEFAULT_REQUEST_TIMEOUT = 60.0
MAX_ERROR_TEXT = 500
PASSING = frozenset({408, 429, 500, 502, 503, 504})
"""Statuses of a status call that say "ask again later", not "the job failed"."""
GATEWAY_PASSING = frozenset({408, 429, 502, 503, 504})
"""The same for fetching a finished result, where a 500 is the job's own failure."""


class RetryLater(Exception):
    """A poll met a passing failure; the job should be looked at again after `retry_after` s."""

    def __init__(self, reason: str, retry_after: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    data: Any
    """Decoded JSON, or the body text when it was not JSON."""
    headers: Mapping[str, str]
    """Names in lower case."""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def retry_after(self, default: float) -> float:
        value = self.headers.get("retry-after", "")
        try:
            return max(default, min(float(value), 300.0))
        except ValueError:
            return default


class UpstreamClient:
    """JSON over HTTP to one upstream with its credential; the session lives as long as the provider."""

    def __init__(self, name: str, config: QueueConfig, default_base: str, auth_scheme: str) -> None:
        self.name = name
        self.config = config
        self.base_url = (config.base_url or default_base).rstrip("/")
        self._auth_scheme = auth_scheme
        options = config.options
        self.timeout = options.request_timeout_seconds or min(config.timeout_seconds, DEFAULT_REQUEST_TIMEOUT)
        self.max_connections = config.deployment.max_connections or options.max_connections
        self._session: aiohttp.ClientSession | None = None

    def available(self) -> bool:
        return bool(self.config.api_key())

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            import aiohttp

            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_connections),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers={"Accept": "application/json", "User-Agent": "hypereal"},
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def check_origin(self, url: str) -> str:
        """Only send the credential to the configured API's own scheme, host and port."""
        given, base = urlsplit(url), urlsplit(self.base_url)
        if (given.scheme, given.netloc) != (base.scheme, base.netloc):
            raise UpstreamError(f"{self.name} returned a URL outside its API: {url[:200]}")
        return url

    async def call(
        self,
        method: str,
        url: str,
        body: Any = None,
        *,
        retry_on: Collection[int] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """One request; error statuses come back in the Reply for the adapter to read.

        `retry_on` marks a poll: network failures, timeouts and those statuses then raise
        RetryLater instead of failing the job.
        """
        import aiohttp

        key = self.config.api_key()
        if not key:
            raise Unavailable(f"{self.name} is not configured: {self.config.api_key_env} is not set")
        sent = {"Authorization": f"{self._auth_scheme} {key}", **(headers or {})}
        try:
            async with self._open().request(method, self.check_origin(url), json=body, headers=sent) as response:
                text = await response.text()
                headers = {name.lower(): value for name, value in response.headers.items()}
                reply = Reply(response.status, _decode(text), headers)
        except TimeoutError as exc:
            if retry_on is not None:
                raise RetryLater(f"{self.name} did not answer in time", 5.0) from exc
            raise failures.timed_out(self.name, f"{self.timeout:g} s") from exc
        except aiohttp.ClientError as exc:
            if retry_on is not None:
                raise RetryLater(f"{self.name} could not be reached", 5.0) from exc
            raise failures.unreachable(self.name, type(exc).__name__) from exc
        if retry_on is not None and reply.status in retry_on:
            raise RetryLater(f"{self.name} answered {reply.status}", reply.retry_after(5.0))
        return reply

    async def cancel(self, method: str, url: Any, request_id: str) -> bool:
        """Ask the upstream to stop a request at its published cancel URL; True when it accepted.

        A failure to reach it is logged, not raised: the job is ended and refunded either way.
        """
        if not is_url(url):
            return False
        try:
            reply = await self.call(method, str(url))
        except HyperealError as exc:
            log.warning("%s cancel of %s failed: %s", self.name, request_id, exc.message)
            return False
        return reply.ok

    def error(self, reply: Reply, message: str) -> HyperealError:
        """Our error for an upstream's error status (`hypereal.providers.failures`); `message`
        is the upstream's own words."""
        return failures.status_error(self.name, reply.status, message, reply.headers.get("retry-after"))


def _decode(text: str) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text[:MAX_ERROR_TEXT]


def poll_delay(category: str, submitted_at: float | None, now: float | None = None) -> float:
    """Seconds until the next status call: ≥2 s for images and audio, ≥5 s for video and 3D,
    growing with the job's age so a long render is not asked about every few seconds."""
    base = 5.0 if category in ("video", "3d") else 2.0
    age = max(0.0, (now or time.time()) - (submitted_at or 0.0)) if submitted_at else 0.0
    return round(min(30.0, max(base, age / 10.0)), 2)


# ---------------------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True)
class SizeRule:
    """Pixel size from `aspect_ratio` and `resolution` ("1K".."4K" as the long edge)."""

    target: str
    style: str = "object"
    """"object" -> {"width", "height"}; "star" -> "2048*1152"; "x" -> "2048x1152"."""
    edges: Mapping[str, int] = field(default_factory=lambda: {"0.5K": 512, "1K": 1024, "2K": 2048, "4K": 4096})
    default_edge: int = 2048


@dataclass(frozen=True, slots=True)
class InputMap:
    """How one upstream model family names Hypereal's parameters.

    Tables are keyed by upstream model id prefixes (whole path segments); every entry that
    matches applies, the longer prefix over the shorter, so a family sets the durations and
    a single endpoint only what differs.
    """

    rename: Mapping[str, str] = field(default_factory=dict)
    """Hypereal name -> upstream name; a dotted name nests ("voice_setting.voice_id")."""
    values: Mapping[str, Mapping[Any, Any]] = field(default_factory=dict)
    """Hypereal name -> {Hypereal value: upstream value}; an upstream value of None drops the field."""
    durations: tuple[int, ...] | None = None
    """Lengths the upstream renders; a requested duration is rounded up to the next one."""
    duration_format: str | None = None
    """None sends an integer; "{}" sends "8"; "{}s" sends "8s"."""
    single: frozenset[str] = frozenset()
    """List parameters the upstream takes as one URL (the first)."""
    wrap: frozenset[str] = frozenset()
    """Single parameters the upstream takes as a list."""
    drop: frozenset[str] = frozenset()
    fixed: Mapping[str, Any] = field(default_factory=dict)
    size: SizeRule | None = None

    def over(self, base: InputMap) -> InputMap:
        """This entry applied over a more general one."""
        return InputMap(
            rename={**base.rename, **self.rename},
            values={**base.values, **self.values},
            durations=self.durations if self.durations is not None else base.durations,
            duration_format=self.duration_format if self.duration_format is not None else base.duration_format,
            single=base.single | self.single,
            wrap=base.wrap | self.wrap,
            drop=base.drop | self.drop,
            fixed={**base.fixed, **self.fixed},
            size=self.size or base.size,
        )


def resolve_inputs(table: Mapping[str, InputMap], model: str) -> InputMap:
    """The table's entries for `model`, from the empty (default) prefix to the longest."""
    matching = sorted((p for p in table if _covers(p, model)), key=len)
    resolved = InputMap()
    for prefix in matching:
        resolved = table[prefix].over(resolved)
    return resolved


def _covers(prefix: str, model: str) -> bool:
    return prefix == "" or model == prefix or model.startswith(prefix + "/")


def translate(params: Mapping[str, Any], rules: InputMap) -> dict[str, Any]:
    """Hypereal's validated parameters -> the upstream's input body."""
    source = dict(params)
    body: dict[str, Any] = {}
    if rules.size is not None:
        size = _pixel_size(source, rules.size)
        if size is not None:
            body[rules.size.target] = size
    for name, raw in source.items():
        if name in rules.drop or raw is None:
            continue
        value = raw
        if name == "duration" and (rules.durations or rules.duration_format is not None):
            value = _duration(value, rules)
        table = rules.values.get(name)
        if table is not None and _hashable(value) and value in table:
            value = table[value]
            if value is None:
                continue
        if name in rules.single and isinstance(value, list):
            value = value[0] if value else None
        if name in rules.wrap and not isinstance(value, list):
            value = [value]
        _put(body, rules.rename.get(name, name), value)
    for name, value in rules.fixed.items():
        _put(body, name, value)
    return body


def _duration(seconds: Any, rules: InputMap) -> Any:
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return seconds
    whole = int(-(-seconds // 1))
    if rules.durations:
        allowed = sorted(rules.durations)
        whole = next((d for d in allowed if d >= whole), allowed[-1])
    return rules.duration_format.format(whole) if rules.duration_format is not None else whole


def _pixel_size(source: dict[str, Any], rule: SizeRule) -> Any:
    aspect = source.pop("aspect_ratio", None)
    resolution = source.pop("resolution", None)
    if not isinstance(aspect, str) or ":" not in aspect:
        return None
    try:
        w_part, h_part = (float(x) for x in aspect.split(":", 1))
    except ValueError:
        return None
    edge = rule.edges.get(str(resolution), rule.default_edge)
    scale = edge / max(w_part, h_part)
    width, height = (int(round(w_part * scale / 16) * 16), int(round(h_part * scale / 16) * 16))
    if rule.style == "star":
        return f"{width}*{height}"
    if rule.style == "x":
        return f"{width}x{height}"
    return {"width": width, "height": height}


def _hashable(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


def _put(body: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = body
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[leaf] = value


def check_data_uris(provider: str, params: Mapping[str, Any], max_bytes: int | None) -> None:
    """Refuse data: URIs an upstream does not take (None: none at all), before anything is sent."""
    for name, value in params.items():
        for item in value if isinstance(value, list) else [value]:
            if not (isinstance(item, str) and item.startswith("data:")):
                continue
            if max_bytes is None:
                raise BadRequest(
                    f"data: URIs are not supported by this provider ({provider}); pass an http(s) URL in `{name}`",
                    field=name,
                )
            if len(item) * 3 // 4 > max_bytes:
                raise BadRequest(
                    f"data: URIs over {max_bytes // 1024} KB are not supported by this provider ({provider}); "
                    f"pass an http(s) URL in `{name}`",
                    field=name,
                )


# ---------------------------------------------------------------------------- outputs

_BY_EXTENSION: dict[str, str] = {
    "mp4": "video/mp4",
    "webm": "video/webm",
    "mov": "video/quicktime",
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
    "mp3": "audio/mpeg",
    "wav": "audio/wav",
    "ogg": "audio/ogg",
    "flac": "audio/flac",
    "m4a": "audio/mp4",
    "glb": "model/gltf-binary",
    "gltf": "model/gltf+json",
    "obj": "model/obj",
    "fbx": "application/octet-stream",
    "usdz": "model/vnd.usdz+zip",
    "stl": "model/stl",
    "zip": "application/zip",
    "txt": "text/plain",
    "json": "application/json",
}
_EXTENSION_OF: dict[str, str] = {
    "image/jpeg": "jpg",
    "audio/mpeg": "mp3",
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "model/gltf-binary": "glb",
}
_BY_CATEGORY: dict[str, tuple[str, str]] = {
    "video": ("video/mp4", "mp4"),
    "image": ("image/png", "png"),
    "image-edit": ("image/png", "png"),
    "audio": ("audio/mpeg", "mp3"),
    "3d": ("model/gltf-binary", "glb"),
}


def guess_output(url: str, category: str = "", content_type: str | None = None) -> Output:
    """An upstream-hosted file: its type from what the upstream said, else the URL, else the category."""
    path = urlsplit(url).path
    extension = path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
    given = (content_type or "").split(";")[0].strip().lower()
    if given and given != "application/octet-stream":
        ext = extension if _BY_EXTENSION.get(extension) == given else _extension_for(given) or extension
        return Output(content_type=given, extension=ext or "bin", url=url)
    if extension in _BY_EXTENSION:
        return Output(content_type=_BY_EXTENSION[extension], extension=extension, url=url)
    guessed, _ = mimetypes.guess_type(path)
    if guessed:
        return Output(content_type=guessed, extension=extension or _extension_for(guessed) or "bin", url=url)
    fallback_type, fallback_ext = _BY_CATEGORY.get(category, ("application/octet-stream", "bin"))
    return Output(content_type=fallback_type, extension=fallback_ext, url=url)


def _extension_for(content_type: str) -> str:
    if content_type in _EXTENSION_OF:
        return _EXTENSION_OF[content_type]
    for ext, known in _BY_EXTENSION.items():
        if known == content_type:
            return ext
    guessed = mimetypes.guess_extension(content_type) or ""
    return guessed.lstrip(".")


def is_url(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("https://", "http://"))
