"""What a hostile or broken client can send, against a real `hypereal serve`: a `Host` that
tries to choose the URLs it gets back, heads past the limits, and bodies cut short."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from hypereal.settings import Settings
from tests.conftest import ADMIN_HEADERS, ADMIN_KEY, Server

VIDEO = {"model": "local-video-t2v", "input": {"prompt": "a cat", "duration": 1}}


def new_key(server: Server, credits: int = 1000) -> str:
    account = httpx.post(
        server.url + "/api/v1/admin/accounts", json={"name": "x", "credits": credits}, headers=ADMIN_HEADERS
    )
    made = httpx.post(f"{server.url}/api/v1/admin/accounts/{account.json()['id']}/keys", json={}, headers=ADMIN_HEADERS)
    key: str = made.json()["key"]
    return key


@pytest.fixture(scope="module")
def server(start_server: Callable[..., Server]) -> Server:
    return start_server(env={"HYPEREAL_MAX_HEADER_BYTES": "4096", "HYPEREAL_MAX_HEADERS": "24"})


@pytest.fixture(scope="module")
def key(server: Server) -> str:
    return new_key(server)


def raw_exchange(server: Server, request: bytes) -> bytes:
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


# ---------------------------------------------------------------- Host


def test_a_hostile_host_header_does_not_choose_the_poll_url(server: Server, key: str) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    port = server.url.rsplit(":", 1)[1]
    for host, base in [
        ("evil.example", server.url),
        (f"evil.example:{port}", server.url),
        (f"localhost@evil.example:{port}", server.url),
        (f"localhost:{port}", f"http://localhost:{port}"),  # the server's own names stay as the client wrote them
        (f"127.0.0.1:{port}", server.url),
    ]:
        accepted = httpx.post(server.url + "/v1/videos/generate", json=VIDEO, headers={**headers, "Host": host})
        assert accepted.status_code == 202, accepted.text
        assert accepted.json()["pollUrl"].startswith(f"{base}/api/v1/jobs/"), host


@pytest.mark.parametrize(
    ("overrides", "host", "base"),
    [
        ({"public_url": "https://api.example.com"}, "localhost:8000", "https://api.example.com"),
        ({"public_url": "https://api.example.com"}, "evil.example", "https://api.example.com"),
        ({"trusted_hosts": "api.internal,*.corp.example"}, "api.internal:8443", "http://api.internal:8443"),
        ({"trusted_hosts": "api.internal,*.corp.example"}, "eu.corp.example", "http://eu.corp.example"),
        ({"trusted_hosts": "api.internal,*.corp.example"}, "corp.example.evil", "http://127.0.0.1:8000"),
        ({"trusted_hosts": "api.internal"}, "localhost:8000", "http://127.0.0.1:8000"),  # the list replaces the default
        ({"host": "0.0.0.0", "port": 9000}, "evil.example", "http://127.0.0.1:9000"),
        ({}, "[::1]:8000", "http://[::1]:8000"),
        ({}, "localhost:8000/x", "http://127.0.0.1:8000"),
    ],
)
async def test_absolute_urls_come_from_the_public_url_or_a_trusted_host(
    make_settings: Callable[..., Settings],
    make_services: Any,
    make_client: Any,
    make_account: Any,
    overrides: dict[str, Any],
    host: str,
    base: str,
) -> None:
    services = await make_services(make_settings(worker=False, **overrides))
    account = await make_account(services=services)
    response = await make_client(services).post(
        "/v1/videos/generate", json=VIDEO, headers={**account.headers, "Host": host}
    )
    assert response.status_code == 202, response.text
    assert response.json()["pollUrl"].startswith(f"{base}/api/v1/jobs/")


# ---------------------------------------------------------------- heads


def test_heads_past_the_configured_limits_get_431(server: Server, key: str) -> None:
    big = raw_exchange(server, f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {'v' * 5000}\r\n\r\n".encode())
    assert big.startswith(b"HTTP/1.1 431 ")
    fields = "".join(f"X-{n}: v\r\n" for n in range(24))
    many = raw_exchange(server, f"GET /healthz HTTP/1.1\r\nHost: x\r\n{fields}\r\n".encode())
    assert many.startswith(b"HTTP/1.1 431 ")
    assert b"More than 24 request header fields" in many
    usual = httpx.get(server.url + "/v1/account", headers={"Authorization": f"Bearer {key}", "X-Pad": "v" * 2000})
    assert usual.status_code == 200


# ---------------------------------------------------------------- bodies cut short


def test_a_client_that_hangs_up_mid_body_is_one_info_line_on_every_route(server: Server, key: str) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    routes = [
        ("/api/v1/chat", key),  # the fast lane
        ("/v1/chat/completions", key),
        ("/v1/messages", key),
        ("/v1/images/generate", key),  # FastAPI's routing
        ("/api/v1/admin/accounts", ADMIN_KEY),
    ]
    for path, bearer in routes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {bearer}\r\n"
                f"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n".encode()
                + b'{"model": '
            )
            time.sleep(0.2)  # the server is waiting for the rest
    said = "client disconnected before sending the whole request body"
    deadline = time.monotonic() + 20
    while server.output().count(said) < len(routes):
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.1)
    output = server.output()
    for path, _ in routes:
        assert f"INFO hypereal.api.errors: {said}: POST {path}\n" in output
    assert "Traceback" not in output
    assert " ERROR " not in output and "ERROR:" not in output
    assert httpx.get(server.url + "/healthz").status_code == 200
