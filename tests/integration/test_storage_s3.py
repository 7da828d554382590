"""S3 storage against a moto server started here on a free local port (no network)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from hypereal.errors import NotFound, Unavailable
from hypereal.storage import S3Storage, parse_storage_config

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

BUCKET = "hypereal-outputs"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    admin = boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    admin.create_bucket(Bucket=BUCKET)
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_S3_ACCESS_KEY", "test")
    monkeypatch.setenv("TEST_S3_SECRET_KEY", "test")


def _storage(endpoint: str, **extra: object) -> S3Storage:
    config = parse_storage_config(
        {"type": "s3", "bucket": BUCKET, "endpoint_url": endpoint, "region": "us-east-1",
         "access_key_env": "TEST_S3_ACCESS_KEY", "secret_key_env": "TEST_S3_SECRET_KEY",
         "addressing_style": "path", **extra}
    )  # fmt: skip
    built = config.build()
    assert isinstance(built, S3Storage)
    return built


@pytest.fixture
async def store(endpoint: str, credentials: None) -> AsyncIterator[S3Storage]:
    s = _storage(endpoint)
    yield s
    await s.close()


async def test_round_trip(store: S3Storage) -> None:
    audio = b"ID3" + bytes(500)
    stored = await store.put("acct_7", audio, "audio/mpeg", "mp3")
    assert stored.key.startswith("acct_7/") and stored.key.endswith(".mp3")
    assert stored.size == len(audio)
    assert await store.get(stored.key) == (audio, "audio/mpeg")
    assert store.owner_of(stored.key) == "acct_7"


async def test_presigned_url_serves_the_file(store: S3Storage) -> None:
    stored = await store.put("acct", b"\x89PNG pixels", "image/png", "png")
    assert "X-Amz-Signature=" in stored.url
    async with aiohttp.ClientSession() as http, http.get(stored.url) as resp:
        assert resp.status == 200
        assert await resp.read() == b"\x89PNG pixels"
        assert resp.headers["Content-Type"] == "image/png"
    fresh = await store.url_for(stored.key)
    assert fresh.split("?")[0] == stored.url.split("?")[0]


async def test_public_url_and_prefix(endpoint: str, credentials: None) -> None:
    store = _storage(endpoint, public_url="https://cdn.example.com/out/", prefix="tenant-a/")
    try:
        stored = await store.put("acct", b"{}", "application/json", "json")
        assert stored.url == f"https://cdn.example.com/out/{stored.key}"
        admin = boto3.client(
            "s3", endpoint_url=endpoint, region_name="us-east-1",
            aws_access_key_id="test", aws_secret_access_key="test",
        )  # fmt: skip
        listed = admin.list_objects_v2(Bucket=BUCKET, Prefix="tenant-a/")
        assert [o["Key"] for o in listed.get("Contents", [])] == [f"tenant-a/{stored.key}"]
        assert await store.get(stored.key) == (b"{}", "application/json")
    finally:
        await store.close()


async def test_missing_and_deleted_are_not_found(store: S3Storage) -> None:
    with pytest.raises(NotFound):
        await store.get("acct/" + "Z" * 32 + ".png")
    stored = await store.put("acct", b"bytes", "video/mp4", "mp4")
    await store.delete(stored.key)
    await store.delete(stored.key)
    with pytest.raises(NotFound):
        await store.get(stored.key)


@pytest.mark.parametrize("key", ["../acct/" + "A" * 32 + ".png", "acct/x.png", "acct/" + "A" * 32 + ".png/.."])
async def test_malformed_keys_never_reach_the_bucket(store: S3Storage, key: str) -> None:
    with pytest.raises(NotFound):
        await store.get(key)
    with pytest.raises(NotFound):
        await store.url_for(key)


async def test_unreachable_endpoint_is_unavailable(credentials: None) -> None:
    store = _storage(f"http://127.0.0.1:{_free_port()}")
    try:
        with pytest.raises(Unavailable):
            await store.put("acct", b"x", "image/png", "png")
    finally:
        await store.close()
