"""The SSRF guard against a local aiohttp server on 127.0.0.1 (allowed only where a test says so)."""

from __future__ import annotations

import asyncio
import base64
import gzip
import ipaddress
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_from_bytes

import pytest
from aiohttp import web

from hypereal.errors import InputFetchFailed
from hypereal.netguard import AllowList, OutboundGuard, is_public

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(64)
WAV = b"RIFF" + (36).to_bytes(4, "little") + b"WAVEfmt " + bytes(64)
WEBM = b"\x1a\x45\xdf\xa3" + bytes(64)
LOCAL = ["127.0.0.1/32"]


@dataclass
class Server:
    base: str
    port: int
    hits: dict[str, int] = field(default_factory=dict)
    seen: list[dict[str, Any]] = field(default_factory=list)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    release = asyncio.Event()
    state = Server(base="", port=0)

    def count(request: web.Request) -> None:
        state.hits[request.path] = state.hits.get(request.path, 0) + 1

    async def blob(request: web.Request) -> web.Response:
        count(request)
        bodies = {
            "png": (PNG, "image/png"),
            "text-as-png": (b"hello, not an image", "image/png"),
            "html": (PNG, "text/html"),
            "octet-png": (PNG, "application/octet-stream"),
            "wav": (WAV, "audio/wav"),
            "webm": (WEBM, "video/webm"),
            "empty": (b"", "image/png"),
        }
        body, ctype = bodies[request.match_info["name"]]
        state.seen.append({"host": request.headers.get("Host"), "ua": request.headers.get("User-Agent")})
        return web.Response(body=body, headers={"Content-Type": ctype})

    async def redirect(request: web.Request) -> web.Response:
        count(request)
        raise web.HTTPFound(request.query["to"])

    async def hops(request: web.Request) -> web.Response:
        left = int(request.match_info["n"])
        raise web.HTTPFound(f"/hops/{left - 1}" if left > 0 else "/blob/png")

    async def loop(request: web.Request) -> web.Response:
        count(request)
        raise web.HTTPMovedPermanently("/loop")

    async def big_declared(request: web.Request) -> web.Response:
        return web.Response(body=PNG + bytes(5000), content_type="image/png")

    async def big_stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "image/png"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(PNG)
        for _ in range(10):
            await resp.write(bytes(1000))
        await resp.write_eof()
        return resp

    async def gzip_bomb(request: web.Request) -> web.Response:
        packed = gzip.compress(PNG + bytes(200_000))
        return web.Response(body=packed, headers={"Content-Type": "image/png", "Content-Encoding": "gzip"})

    async def slow(request: web.Request) -> web.Response:
        count(request)
        await asyncio.wait_for(release.wait(), 30)
        return web.Response(body=PNG, content_type="image/png")

    async def hook(request: web.Request) -> web.Response:
        count(request)
        state.seen.append({"headers": dict(request.headers), "body": await request.read()})
        return web.Response(status=int(request.query.get("status", "200")), text="thanks")

    async def hook_redirect(request: web.Request) -> web.Response:
        count(request)
        raise web.HTTPFound("/hook")

    app = web.Application()
    app.add_routes(
        [
            web.get("/blob/{name}", blob),
            web.get("/redirect", redirect),
            web.get("/hops/{n}", hops),
            web.get("/loop", loop),
            web.get("/big", big_declared),
            web.get("/big-stream", big_stream),
            web.get("/gzip-bomb", gzip_bomb),
            web.get("/slow", slow),
            web.post("/slow", slow),
            web.post("/hook", hook),
            web.post("/hook-redirect", hook_redirect),
        ]
    )
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.port = runner.addresses[0][1]
    state.base = f"http://127.0.0.1:{state.port}"
    try:
        yield state
    finally:
        release.set()
        await runner.cleanup()


@pytest.fixture
async def guard() -> AsyncIterator[OutboundGuard]:
    g = OutboundGuard()
    yield g
    await g.close()


@pytest.fixture
async def local_guard() -> AsyncIterator[OutboundGuard]:
    g = OutboundGuard(allow=LOCAL, max_bytes=2000, timeout=5.0)
    yield g
    await g.close()


def fake_dns(monkeypatch: pytest.MonkeyPatch, table: dict[str, list[str]]) -> list[str]:
    """Answer getaddrinfo from `table` for the names in it; returns the names asked, in order."""
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo
    asked: list[str] = []

    async def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in table:
            return await real(host, port, *args, **kwargs)
        asked.append(host)
        infos = []
        for addr in table[host]:
            ip = ipaddress.ip_address(addr)
            if ip.version == 4:
                infos.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (addr, int(port))))
            else:
                infos.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (addr, int(port), 0, 0)))
        return infos

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    return asked


# -- address policy -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "100.100.100.200",
        "0.0.0.0",
        "224.0.0.1",
        "255.255.255.255",
        "240.0.0.1",
        "192.0.2.1",
        "198.18.0.1",
        "::1",
        "::",
        "fe80::1",
        "fd00:ec2::254",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "64:ff9b::a00:1",
        "2002:a00:1::",
        "::127.0.0.1",
        "2001:db8::1",
    ],
)
def test_non_public_addresses(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


def test_allow_list_parsing() -> None:
    allow = AllowList.parse(["127.0.0.1/32", " files.internal ", "*.corp.example", "[::1]", ""])
    assert allow.allows_address(ipaddress.ip_address("127.0.0.1"))
    assert allow.allows_address(ipaddress.ip_address("::ffff:127.0.0.1"))
    assert allow.allows_address(ipaddress.ip_address("::1"))
    assert not allow.allows_address(ipaddress.ip_address("127.0.0.2"))
    assert allow.allows_host("FILES.internal.")
    assert allow.allows_host("a.b.corp.example")
    assert not allow.allows_host("corp.example.evil")
    with pytest.raises(ValueError, match="allow-list"):
        AllowList.parse(["not a host!"])


# -- refusals before any connection ----------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "http://127.0.0.1:{port}/blob/png",
        "http://10.0.0.7/a.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:{port}/blob/png",
        "http://[::ffff:127.0.0.1]:{port}/blob/png",
        "http://100.64.0.1/x.png",
        "http://0.0.0.0:{port}/blob/png",
    ],
)
async def test_private_literals_refused_by_default(server: Server, guard: OutboundGuard, template: str) -> None:
    url = template.format(port=server.port)
    with pytest.raises(InputFetchFailed, match="not public"):
        await guard.fetch(url, kind="image")
    with pytest.raises(InputFetchFailed, match="not public"):
        guard.check_url(url)
    assert server.hits == {}


@pytest.mark.parametrize("host", ["127.1", "2130706433", "0x7f000001", "0x7f.0.0.1", "017700000001"])
async def test_numeric_host_forms_refused(guard: OutboundGuard, host: str) -> None:
    with pytest.raises(InputFetchFailed, match="not a canonical IP address"):
        await guard.fetch(f"http://{host}/a.png", kind="image")


async def test_localhost_name_refused(server: Server, guard: OutboundGuard) -> None:
    with pytest.raises(InputFetchFailed, match="loopback"):
        await guard.fetch(server.url("/blob/png", host="localhost"), kind="image")
    assert server.hits == {}


async def test_hostname_resolving_to_private_refused(
    server: Server, guard: OutboundGuard, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = fake_dns(monkeypatch, {"images.example": ["127.0.0.1"]})
    with pytest.raises(
        InputFetchFailed, match=r"images\.example resolves only to non-public addresses \(127\.0\.0\.1\)"
    ):
        await guard.fetch(server.url("/blob/png", host="images.example"), kind="image")
    with pytest.raises(InputFetchFailed, match="non-public"):
        await guard.check_destination(server.url("/hook", host="images.example"))
    assert asked == ["images.example", "images.example"]
    assert server.hits == {}


# -- allowed by the operator ------------------------------------------------------------------


async def test_allow_list_permits_private_target(server: Server, local_guard: OutboundGuard) -> None:
    got = await local_guard.fetch(server.url("/blob/png"), kind="image")
    assert got.data == PNG
    assert got.content_type == "image/png"
    assert got.url == server.url("/blob/png")
    assert server.seen[-1]["ua"] == "hypereal"


async def test_allow_list_by_host_name(server: Server) -> None:
    g = OutboundGuard(allow=["localhost"], timeout=5.0)
    try:
        got = await g.fetch(server.url("/blob/png", host="localhost"), kind="image")
    finally:
        await g.close()
    assert got.data == PNG


async def test_connects_only_to_the_checked_addresses(
    server: Server, local_guard: OutboundGuard, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A decoy on 127.0.0.2 (same port, not allowed) comes first in the DNS answer: the guard
    # must drop it and dial only the address it accepted, keeping the name in the Host header.
    decoy_hits: list[str] = []

    async def decoy(request: web.Request) -> web.Response:
        decoy_hits.append(request.path)
        return web.Response(body=PNG[:8] + b"decoy", content_type="image/png")

    app = web.Application()
    app.router.add_get("/{tail:.*}", decoy)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.2", server.port).start()
    except OSError:
        await runner.cleanup()
        pytest.skip("127.0.0.2 is not bindable here")
    try:
        asked = fake_dns(monkeypatch, {"cdn.example": ["127.0.0.2", "127.0.0.1"]})
        got = await local_guard.fetch(server.url("/blob/png", host="cdn.example"), kind="image")
        assert got.data == PNG
        assert decoy_hits == []
        assert server.seen[-1]["host"] == f"cdn.example:{server.port}"
        assert asked == ["cdn.example"]  # one answer, both checked and dialled
    finally:
        await runner.cleanup()


# -- redirects --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.5/x.png",
        "http://[::1]:1/x.png",
        "file:///etc/passwd",
        "data:image/png;base64,iVBORw0KGgo=",
    ],
)
async def test_redirect_to_forbidden_target_refused(server: Server, local_guard: OutboundGuard, target: str) -> None:
    url = server.url("/redirect?" + f"to={target}")
    with pytest.raises(InputFetchFailed, match=r"refused|not public") as info:
        await local_guard.fetch(url, kind="image")
    assert "redirect to" in info.value.message
    assert server.hits == {"/redirect": 1}


async def test_redirect_to_private_refused_even_when_resolved(
    server: Server, local_guard: OutboundGuard, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_dns(monkeypatch, {"metadata.example": ["169.254.169.254"]})
    url = server.url("/redirect?to=http://metadata.example/latest/")
    with pytest.raises(
        InputFetchFailed, match=r"metadata\.example resolves only to non-public addresses \(169\.254\.169\.254\)"
    ):
        await local_guard.fetch(url, kind="image")


async def test_redirects_followed_up_to_five(server: Server, local_guard: OutboundGuard) -> None:
    got = await local_guard.fetch(server.url("/hops/4"), kind="image")  # 4 hops + the final redirect
    assert got.data == PNG
    with pytest.raises(InputFetchFailed, match="more than 5 redirects"):
        await local_guard.fetch(server.url("/hops/5"), kind="image")


async def test_redirect_loop_capped(server: Server, local_guard: OutboundGuard) -> None:
    with pytest.raises(InputFetchFailed, match="more than 5 redirects"):
        await local_guard.fetch(server.url("/loop"), kind="image")
    assert server.hits["/loop"] == 6


# -- limits -----------------------------------------------------------------------------------


async def test_declared_length_over_cap(server: Server, local_guard: OutboundGuard) -> None:
    with pytest.raises(InputFetchFailed, match=f"{len(PNG) + 5000} bytes is over the limit of 2000"):
        await local_guard.fetch(server.url("/big"), kind="image")


async def test_streamed_body_over_cap(server: Server, local_guard: OutboundGuard) -> None:
    with pytest.raises(InputFetchFailed, match="over the limit of 2000 bytes"):
        await local_guard.fetch(server.url("/big-stream"), kind="image")


async def test_decompressed_size_counts(server: Server, local_guard: OutboundGuard) -> None:
    with pytest.raises(InputFetchFailed, match="over the limit"):
        await local_guard.fetch(server.url("/gzip-bomb"), kind="image")


async def test_timeout(server: Server) -> None:
    g = OutboundGuard(allow=LOCAL, timeout=0.2)
    try:
        with pytest.raises(InputFetchFailed, match=r"timed out after 0\.2 s"):
            await g.fetch(server.url("/slow"), kind="image")
    finally:
        await g.close()


# -- content types ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "kind", "error"),
    [
        ("/blob/text-as-png", "image", "not a supported image format"),
        ("/blob/html", "image", "content type text/html is not an accepted image type"),
        ("/blob/png", "audio", "content type image/png is not an accepted audio type"),
        ("/blob/empty", "image", "the body is empty"),
        ("/nowhere", "image", "HTTP 404"),
    ],
)
async def test_content_refused(server: Server, local_guard: OutboundGuard, path: str, kind: str, error: str) -> None:
    with pytest.raises(InputFetchFailed, match=error):
        await local_guard.fetch(server.url(path), kind=kind)


@pytest.mark.parametrize(
    ("path", "kind", "content_type"),
    [
        ("/blob/octet-png", "image", "image/png"),
        ("/blob/wav", "audio", "audio/wav"),
        ("/blob/webm", "audio", "audio/webm"),
        ("/blob/webm", "video", "video/webm"),
    ],
)
async def test_content_accepted_by_magic(
    server: Server, local_guard: OutboundGuard, path: str, kind: str, content_type: str
) -> None:
    got = await local_guard.fetch(server.url(path), kind=kind)
    assert got.content_type == content_type


async def test_unknown_kind_is_a_programming_error(guard: OutboundGuard) -> None:
    with pytest.raises(ValueError, match="unknown input kind"):
        await guard.fetch("https://example.com/a.png", kind="spreadsheet")


# -- data: URIs and schemes -------------------------------------------------------------------


async def test_data_uris(guard: OutboundGuard) -> None:
    b64 = base64.b64encode(PNG).decode()
    got = await guard(f"data:image/png;base64,{b64}", kind="image")  # the InputFetcher protocol
    assert (got.data, got.content_type) == (PNG, "image/png")
    unpadded = await guard.fetch(f"data:image/png;base64,{b64.rstrip('=')}", kind="image")
    assert unpadded.data == PNG
    percent = await guard.fetch("data:image/png," + quote_from_bytes(PNG), kind="image")
    assert percent.data == PNG
    wav = await guard.fetch("data:;base64," + base64.b64encode(WAV).decode(), kind="audio")
    assert wav.content_type == "audio/wav"


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("data:text/plain,hello", "content type text/plain"),
        ("data:image/png,hello", "not a supported image format"),
        ("data:image/png;base64,!!!notbase64", "invalid base64"),
        ("data:image/png;base64", "no comma"),
    ],
)
async def test_bad_data_uris(guard: OutboundGuard, url: str, error: str) -> None:
    with pytest.raises(InputFetchFailed, match=error):
        await guard.fetch(url, kind="image")


async def test_data_uri_size_cap() -> None:
    g = OutboundGuard(max_bytes=100)
    big = base64.b64encode(PNG + bytes(200)).decode()
    with pytest.raises(InputFetchFailed, match="over the limit of 100 bytes"):
        await g.fetch(f"data:image/png;base64,{big}", kind="image")
    with pytest.raises(InputFetchFailed, match="over the limit of 100 bytes"):
        g.check_url(f"data:image/png;base64,{big}")
    with pytest.raises(InputFetchFailed, match="over the limit of 100 bytes"):
        await g.fetch("data:image/png," + quote_from_bytes(PNG + bytes(100)), kind="image")


@pytest.mark.parametrize("url", ["ftp://example.com/a.png", "file:///etc/passwd", "gopher://x/", "/relative.png"])
async def test_other_schemes_refused(guard: OutboundGuard, url: str) -> None:
    with pytest.raises(InputFetchFailed, match="only http, https and data"):
        await guard.fetch(url, kind="image")


def test_check_url_without_io() -> None:
    g = OutboundGuard()
    g.check_url("https://example.com/cat.png?sig=abc")
    g.check_url("data:image/png;base64,iVBORw0KGgo=")
    with pytest.raises(InputFetchFailed, match="not accepted here"):
        g.check_url("data:image/png;base64,iVBORw0KGgo=", allow_data=False)
    with pytest.raises(InputFetchFailed, match="not a valid URL"):
        g.check_url("http://example.com:99999/")


async def test_error_messages_hide_query_secrets(guard: OutboundGuard) -> None:
    with pytest.raises(InputFetchFailed) as info:
        await guard.fetch("http://user:hunter2@10.0.0.1/a.png?token=s3cret", kind="image")
    assert "s3cret" not in info.value.message and "hunter2" not in info.value.message
    assert info.value.fields["url"] == "http://10.0.0.1/a.png?…"


# -- post() -----------------------------------------------------------------------------------


async def test_post_delivers(server: Server, local_guard: OutboundGuard) -> None:
    result = await local_guard.post(server.url("/hook?status=202"), b'{"a":1}', {"X-Test": "yes"}, 5.0)
    assert (result.status, result.error) == (202, None)
    assert result.body_excerpt == "thanks"
    assert result.headers["content-type"].startswith("text/plain")
    assert server.seen[-1]["body"] == b'{"a":1}'
    assert server.seen[-1]["headers"]["X-Test"] == "yes"


async def test_post_does_not_follow_redirects(server: Server, local_guard: OutboundGuard) -> None:
    result = await local_guard.post(server.url("/hook-redirect"), b"{}", {}, 5.0)
    assert result.status == 302
    assert result.headers["Location"] == "/hook"
    assert server.hits == {"/hook-redirect": 1}


async def test_post_reports_instead_of_raising(server: Server, guard: OutboundGuard) -> None:
    blocked = await guard.post(server.url("/hook"), b"{}", {}, 5.0)
    assert blocked.status is None and blocked.blocked
    assert blocked.error is not None and "not public" in blocked.error
    assert server.hits == {}

    g = OutboundGuard(allow=LOCAL)
    try:
        free_port = _unused_port()
        refused = await g.post(f"http://127.0.0.1:{free_port}/hook", b"{}", {}, 5.0)
        assert refused.status is None and not refused.blocked
        assert refused.error is not None and refused.error.startswith("connection failed")
        slow = await g.post(server.url("/slow"), b"{}", {}, 0.2)
        assert slow.status is None and slow.error == "timed out after 0.2 s"
    finally:
        await g.close()


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
