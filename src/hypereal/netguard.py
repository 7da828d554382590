"""Safe outbound HTTP for every URL fetched on a user's behalf: input media and webhooks.

For each hop: check the scheme, resolve the host, drop addresses that are not public
(unless the operator allowed them), and connect only to the addresses that passed. The
check runs inside the connector's resolver, so the addresses checked are the addresses
dialled: a second DNS answer (rebinding) never gets a say. TLS SNI and the Host header
still carry the hostname. Redirects are never followed by the client: input fetches follow
up to `MAX_REDIRECTS` by hand, checking every hop again; webhooks follow none. Bodies are
capped in size (Content-Length refused early, streams cut past the cap), the whole fetch
in time, and media in type (declared type and magic bytes must agree on the kind).

Every failure of `fetch` is an `InputFetchFailed` naming the URL without its query.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import re
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote, unquote_to_bytes

from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from hypereal.errors import InputFetchFailed
from hypereal.mediatypes import KINDS, MediaKind
from hypereal.providers.base import InputFile

if TYPE_CHECKING:
    # Imported where a session is opened: a process that fetches nothing never loads aiohttp.
    import aiohttp
    from aiohttp.abc import AbstractResolver, ResolveResult

MiB = 1024 * 1024
MAX_REDIRECTS = 5
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024
_RESPONSE_EXCERPT = 1024

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Refused even where the stdlib's `is_global` would pass them: its tables differ between
# Python versions, and multicast counts as "global" there.
_BLOCKED_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(net)
    for net in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
        "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
        "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
        "::/8", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32", "fc00::/7",
        "fe80::/10", "fec0::/10", "ff00::/8",
    )
)  # fmt: skip
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NUMERIC_HOST = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}")


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, NAT64), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public(ip: IPAddress) -> bool:
    """Whether `ip` is a globally routable unicast address."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = embedded_ipv4(ip)
        if ip.ipv4_mapped is not None and inner is not None:
            return is_public(inner)
        if inner is not None and not is_public(inner):
            return False
    if any(ip in net for net in _BLOCKED_NETWORKS):
        return False
    return ip.is_global and not (
        ip.is_multicast or ip.is_private or ip.is_reserved or ip.is_loopback
        or ip.is_link_local or ip.is_unspecified
    )  # fmt: skip


def _parse_ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


def _normalize_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


@dataclass(frozen=True, slots=True)
class AllowList:
    """Operator exceptions: CIDRs (or single addresses), host names, and `*.suffix` domains."""

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()

    @classmethod
    def parse(cls, entries: Sequence[str]) -> AllowList:
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        suffixes: list[str] = []
        for raw in entries:
            entry = raw.strip()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            name = _normalize_host(entry)
            wildcard = name.startswith(("*.", "."))
            name = name.lstrip("*.")
            labels = name.split(".")
            if not name or not all(lbl and lbl.replace("-", "").replace("_", "").isalnum() for lbl in labels):
                raise ValueError(f"Invalid outbound allow-list entry {raw!r}: expected a host name or a CIDR")
            if wildcard:
                suffixes.append("." + name)
            else:
                hosts.add(name)
        return cls(tuple(networks), frozenset(hosts), tuple(suffixes))

    def allows_host(self, host: str) -> bool:
        name = _normalize_host(host)
        return name in self.hosts or any(name.endswith(suffix) for suffix in self.suffixes)

    def allows_address(self, ip: IPAddress) -> bool:
        candidates: list[IPAddress] = [ip]
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            candidates.append(ip.ipv4_mapped)
        return any(addr in net for addr in candidates for net in self.networks)


class _Blocked(Exception):
    """A destination the policy refuses. Never leaves this module."""


_ALLOW_HINT = "allow with HYPEREAL_OUTBOUND_ALLOW"


def _refusal(address: str) -> str:
    return f"address {address} is not public ({_ALLOW_HINT})"


async def _resolve(
    allow: AllowList, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_UNSPEC
) -> list[ResolveResult]:
    """The addresses of `host` the allow policy accepts, as aiohttp's resolvers give them."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, family=family)
    trusted_name = allow.allows_host(host)
    accepted: list[ResolveResult] = []
    refused: list[str] = []
    for fam, _, proto, _, sockaddr in infos:
        address = str(sockaddr[0])
        ip = _parse_ip(address)
        # Scoped IPv6 addresses are link-local: refused unless the name itself is trusted.
        scoped = fam == socket.AF_INET6 and len(sockaddr) >= 4 and bool(sockaddr[3])
        if ip is None or (scoped and not trusted_name):
            refused.append(address)
            continue
        if trusted_name or is_public(ip) or allow.allows_address(ip):
            accepted.append(
                {
                    "hostname": host, "host": address, "port": int(sockaddr[1]), "family": fam, "proto": proto,
                    "flags": socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
                }
            )  # fmt: skip
        else:
            refused.append(address)
    if not accepted:
        if refused:
            listed = ", ".join(sorted(set(refused))[:4])
            raise _Blocked(f"{host} resolves only to non-public addresses ({listed}); {_ALLOW_HINT}")
        raise _Blocked(f"{host} has no usable address")
    return accepted


@dataclass(frozen=True, slots=True)
class PostResult:
    """What one POST got back. `status` is None when no HTTP answer came (see `error`)."""

    status: int | None
    headers: Mapping[str, str]
    elapsed_ms: float
    error: str | None = None
    blocked: bool = False
    """True when the policy refused the destination: retrying the same URL cannot help."""
    body_excerpt: str = ""


def redact_url(url: str) -> str:
    """The URL as it may appear in messages and logs: no credentials, query or data payload."""
    if url[:5].lower() == "data:":
        header = url[5:].partition(",")[0][:80]
        return f"data:{header},… ({len(url)} chars)"
    try:
        parsed = URL(url)
    except ValueError:
        return url[:80] + ("…" if len(url) > 80 else "")
    if parsed.raw_user is not None or parsed.raw_password is not None:
        parsed = parsed.with_user(None)
    shown = str(parsed.with_query(None).with_fragment(None))
    if len(shown) > 200:
        shown = shown[:200] + "…"
    return shown + ("?…" if parsed.raw_query_string else "")


class _Refused(InputFetchFailed):
    """An InputFetchFailed that also keeps its bare reason, for reports that are not fetches."""

    def __init__(self, url: str, reason: str) -> None:
        shown = redact_url(url)
        super().__init__(f"Could not fetch {shown}: {reason}", url=shown)
        self.reason = reason


def _fail(url: str, reason: str) -> InputFetchFailed:
    return _Refused(url, reason)


class OutboundGuard:
    """The only way hypereal reaches a URL a user gave it. One instance per event loop."""

    def __init__(
        self,
        allow: Sequence[str] = (),
        max_bytes: int = 50 * MiB,
        timeout: float = 30.0,
        user_agent: str = "hypereal",
    ) -> None:
        self.allow = AllowList.parse(allow)
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None

    # -- policy ---------------------------------------------------------------------------

    def permits_address(self, ip: IPAddress) -> bool:
        return is_public(ip) or self.allow.allows_address(ip)

    def check_url(self, url: str, *, allow_data: bool = True) -> None:
        """Syntax, scheme and literal-address check, without I/O; raises InputFetchFailed."""
        if url[:5].lower() == "data:":
            if not allow_data:
                raise _fail(url, "data: URIs are not accepted here")
            self._split_data_uri(url)
            return
        self._check_hop(url, self._parse_http(url))

    async def check_destination(self, url: str) -> None:
        """`check_url`, then resolve the host and require one permitted address; no connection."""
        self.check_url(url, allow_data=False)
        target = URL(url)
        host = target.host or ""
        if _parse_ip(host) is not None:
            return
        try:
            await _resolve(self.allow, host, target.port or 0)
        except _Blocked as exc:
            raise _fail(url, str(exc)) from None
        except OSError as exc:
            raise _fail(url, f"cannot resolve {host} ({exc})") from exc

    def _parse_http(self, url: str) -> URL:
        try:
            target = URL(url)
        except ValueError as exc:
            raise _fail(url, f"not a valid URL ({exc})") from exc
        if target.scheme not in ("http", "https"):
            raise _fail(url, "only http, https and data: URLs are accepted")
        if not target.host or any(ch.isspace() for ch in target.host):
            raise _fail(url, "the URL has no valid host")
        return target

    def _check_hop(self, original: str, hop: URL, via: str = "") -> None:
        """Refuse a literal address or a loopback name before any connection is tried."""
        if hop.scheme not in ("http", "https"):
            raise _fail(original, f"redirect to a {hop.scheme or 'relative'} URL refused")
        host = hop.host or ""
        ip = _parse_ip(host)
        if ip is not None and not self.permits_address(ip):
            raise _fail(original, _refusal(str(ip)) + via)
        name = _normalize_host(host)
        if ip is None and _NUMERIC_HOST.fullmatch(name):
            # 127.1, 2130706433 and 0x7f.1 all dial loopback through inet_aton.
            raise _fail(original, f"host {name} is not a canonical IP address{via}")
        if (name == "localhost" or name.endswith(".localhost")) and not self.allow.allows_host(name):
            loopbacks = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))
            if not any(self.allow.allows_address(lo) for lo in loopbacks):
                raise _fail(original, f"{name} is a loopback name ({_ALLOW_HINT}){via}")

    # -- fetching inputs ------------------------------------------------------------------

    async def __call__(self, url: str, *, kind: str) -> InputFile:
        return await self.fetch(url, kind=kind)

    async def fetch(self, url: str, *, kind: str) -> InputFile:
        """The bytes behind `url` (http, https or data:) if they are a `kind` within limits."""
        media = KINDS.get(kind)
        if media is None:
            raise ValueError(f"unknown input kind {kind!r}; expected one of {sorted(KINDS)}")
        if url[:5].lower() == "data:":
            return self._decode_data_uri(url, media)
        first = self._parse_http(url)
        try:
            async with asyncio.timeout(self.timeout):
                return await self._fetch_http(url, first, media)
        except TimeoutError as exc:
            raise _fail(url, f"timed out after {self.timeout:g} s") from exc

    async def _fetch_http(self, url: str, target: URL, media: MediaKind) -> InputFile:
        import aiohttp

        session = self._client()
        headers = {"User-Agent": self.user_agent, "Accept": media.accept}
        for hop in range(MAX_REDIRECTS + 1):
            via = "" if hop == 0 else f" (after redirect to {redact_url(str(target))})"
            self._check_hop(url, target, via)
            try:
                async with session.get(target, headers=headers, allow_redirects=False) as resp:
                    if resp.status in _REDIRECT_STATUSES:
                        target = self._redirect_target(url, target, resp)
                        continue
                    if not 200 <= resp.status < 300:
                        raise _fail(url, f"the server answered HTTP {resp.status}{via}")
                    declared = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
                    problem = media.check_declared(declared)
                    if problem:
                        raise _fail(url, problem + via)
                    if resp.content_length is not None and resp.content_length > self.max_bytes:
                        raise _fail(url, f"{resp.content_length} bytes is over the limit of {self.max_bytes}")
                    data = await self._read_capped(url, resp)
            except _Blocked as exc:
                raise _fail(url, f"{exc}{via}") from None
            except aiohttp.ClientError as exc:
                raise _fail(url, f"connection failed{via} ({_describe(exc)})") from exc
            return InputFile(data=data, content_type=self._sniffed(url, media, data), url=url)
        raise _fail(url, f"more than {MAX_REDIRECTS} redirects")

    def _redirect_target(self, url: str, current: URL, resp: aiohttp.ClientResponse) -> URL:
        location = resp.headers.get("Location")
        if not location:
            raise _fail(url, f"HTTP {resp.status} redirect without a Location header")
        try:
            return current.join(URL(location))
        except ValueError as exc:
            raise _fail(url, f"redirect to an invalid URL ({exc})") from exc

    async def _read_capped(self, url: str, resp: aiohttp.ClientResponse) -> bytes:
        # Counted after decompression, so a small gzip bomb is cut like any other big body.
        buffer = bytearray()
        async for chunk in resp.content.iter_chunked(_CHUNK):
            buffer += chunk
            if len(buffer) > self.max_bytes:
                raise _fail(url, f"the body is over the limit of {self.max_bytes} bytes")
        return bytes(buffer)

    def _sniffed(self, url: str, media: MediaKind, data: bytes) -> str:
        if not data:
            raise _fail(url, "the body is empty")
        found = media.sniff(data)
        if found is None:
            raise _fail(url, f"the bytes are not a supported {media.name} format")
        return found

    # -- data: URIs -----------------------------------------------------------------------

    def _split_data_uri(self, url: str) -> tuple[str, bool, str]:
        """(declared media type, base64?, payload), with the size bounded before decoding."""
        header, comma, payload = url[5:].partition(",")
        if not comma:
            raise _fail(url, "malformed data: URI (no comma)")
        params = [p.strip() for p in header.split(";")]
        is_base64 = params[-1].lower() == "base64"
        if is_base64:
            params = params[:-1]
        declared = params[0].lower() if params else ""
        if declared and "/" not in declared:
            raise _fail(url, f"malformed media type {declared[:40]!r} in data: URI")
        bound = len(payload) * 3 // 4 if is_base64 else len(payload)
        # A percent-encoded payload shrinks by at most 3x; a base64 one by exactly 4/3.
        lower = bound if is_base64 else len(payload) // 3
        if lower > self.max_bytes + 3:
            raise _fail(url, f"the data is over the limit of {self.max_bytes} bytes")
        return declared, is_base64, payload

    def _decode_data_uri(self, url: str, media: MediaKind) -> InputFile:
        declared, is_base64, payload = self._split_data_uri(url)
        if is_base64:
            compact = unquote("".join(payload.split())).replace("-", "+").replace("_", "/")
            compact += "=" * (-len(compact) % 4)
            try:
                data = base64.b64decode(compact, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise _fail(url, "invalid base64 in data: URI") from exc
        else:
            data = unquote_to_bytes(payload)
        if len(data) > self.max_bytes:
            raise _fail(url, f"the data is over the limit of {self.max_bytes} bytes")
        problem = media.check_declared(declared)
        if problem:
            raise _fail(url, problem)
        return InputFile(data=data, content_type=self._sniffed(url, media, data), url=url)

    # -- webhooks -------------------------------------------------------------------------

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], time_limit: float | None = None
    ) -> PostResult:
        """One POST, redirects not followed; HTTP and network failures are reported, not raised.

        `time_limit` (seconds, default the guard's timeout) bounds the whole exchange.
        """
        import aiohttp

        limit = self.timeout if time_limit is None else time_limit
        started = time.perf_counter()

        def elapsed_ms() -> float:
            return (time.perf_counter() - started) * 1000

        no_headers: Mapping[str, str] = CIMultiDictProxy(CIMultiDict())
        try:
            target = self._parse_http(url)
            self._check_hop(url, target)
        except _Refused as exc:
            return PostResult(None, no_headers, elapsed_ms(), f"refused: {exc.reason}", blocked=True)
        sent = {"User-Agent": self.user_agent, **headers}
        try:
            async with asyncio.timeout(limit):
                async with self._client().post(target, data=body, headers=sent, allow_redirects=False) as resp:
                    excerpt = await resp.content.read(_RESPONSE_EXCERPT)
                    return PostResult(
                        resp.status,
                        CIMultiDictProxy(CIMultiDict(resp.headers)),
                        elapsed_ms(),
                        body_excerpt=excerpt.decode("utf-8", errors="replace"),
                    )
        except _Blocked as exc:
            return PostResult(None, no_headers, elapsed_ms(), f"refused: {exc}", blocked=True)
        except TimeoutError:
            return PostResult(None, no_headers, elapsed_ms(), f"timed out after {limit:g} s")
        except aiohttp.ClientError as exc:
            return PostResult(None, no_headers, elapsed_ms(), f"connection failed ({_describe(exc)})")

    # -- lifecycle ------------------------------------------------------------------------

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            import aiohttp

            connector = aiohttp.TCPConnector(resolver=_checking_resolver(self.allow), use_dns_cache=False)
            self._session = aiohttp.ClientSession(
                connector=connector,
                trust_env=False,  # proxies from the environment would bypass the address check
                cookie_jar=aiohttp.DummyCookieJar(),  # nothing carried from one user's fetch to another
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=min(self.timeout, 10.0)),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _checking_resolver(allow: AllowList) -> AbstractResolver:
    """A resolver that hands aiohttp only the addresses the allow policy accepts.

    Its class is made here, with the session, since it derives from an aiohttp class.
    """
    from aiohttp.abc import AbstractResolver

    class CheckingResolver(AbstractResolver):
        async def resolve(
            self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_UNSPEC
        ) -> list[ResolveResult]:
            return await _resolve(allow, host, port, family)

        async def close(self) -> None:
            return None

    return CheckingResolver()


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "…"
