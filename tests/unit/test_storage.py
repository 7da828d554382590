"""Local storage: unguessable names, round trips, ownership, and keys that cannot escape the root."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from hypereal.errors import NotFound
from hypereal.storage import (
    LocalStorage,
    LocalStorageConfig,
    S3Storage,
    build_storage,
    content_type_for,
    parse_key,
    parse_storage_config,
)

PUBLIC = "https://media.example.com"


@pytest.fixture
def store(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "files", PUBLIC + "/")


async def test_put_layout_and_url(store: LocalStorage) -> None:
    stored = await store.put("acct_1", b"\x89PNG data", "image/png", ".PNG")
    assert re.fullmatch(r"acct_1/[A-Za-z0-9_-]{32}\.png", stored.key)
    assert stored.url == f"{PUBLIC}/files/{stored.key}"
    assert (stored.size, stored.content_type) == (9, "image/png")
    on_disk = store.root / stored.key
    assert on_disk.read_bytes() == b"\x89PNG data"
    assert on_disk.parent == store.root / "acct_1"
    assert [p.name for p in on_disk.parent.iterdir()] == [on_disk.name]  # no partial file left behind


async def test_names_are_distinct_and_unguessable(store: LocalStorage) -> None:
    keys = [(await store.put("acct", b"x", "text/plain", "txt")).key for _ in range(200)]
    names = [k.split("/")[1].removesuffix(".txt") for k in keys]
    assert len(set(names)) == 200
    assert all(len(n) >= 32 and re.fullmatch(r"[A-Za-z0-9_-]+", n) for n in names)
    # Random, not sequential: names share no common prefix beyond chance.
    assert len({n[:4] for n in names}) > 150


async def test_round_trip_and_delete(store: LocalStorage) -> None:
    model = b"glTF\x02\x00\x00\x00" + bytes(100)
    stored = await store.put("acct-9", model, "model/gltf-binary", "glb")
    assert await store.get(stored.key) == (model, "model/gltf-binary")
    assert store.owner_of(stored.key) == "acct-9"
    assert await store.url_for(stored.key) == stored.url
    await store.delete(stored.key)
    await store.delete(stored.key)  # already gone: still fine
    with pytest.raises(NotFound):
        await store.get(stored.key)


async def test_missing_file_is_not_found(store: LocalStorage) -> None:
    with pytest.raises(NotFound):
        await store.get("acct/" + "A" * 32 + ".png")


BAD_KEYS = [
    "../secret.txt",
    "acct/../../secret.txt",
    "acct/../" + "A" * 32 + ".png",
    "/etc/passwd",
    "acct/" + "A" * 32 + ".png/../../secret.txt",
    "acct\\..\\" + "A" * 32 + ".png",
    "acct/%2e%2e/" + "A" * 32 + ".png",
    "acct/short.png",
    "acct/" + "A" * 32,
    "acct/" + "A" * 32 + ".PNG",
    "acct/sub/" + "A" * 32 + ".png",
    ".acct/" + "A" * 32 + ".png",
    "acct/" + "A" * 32 + ".png\x00.txt",
    "acct/" + "A" * 32 + ".png\n",
    "",
]


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_traversal_and_malformed_keys_refused(store: LocalStorage, tmp_path: Path, key: str) -> None:
    (tmp_path / "secret.txt").write_text("do not serve")
    with pytest.raises(NotFound):
        await store.get(key)
    with pytest.raises(NotFound):
        store.owner_of(key)
    with pytest.raises(NotFound):
        store.path_for(key)
    with pytest.raises(NotFound):
        await store.delete(key)
    assert (tmp_path / "secret.txt").exists()


async def test_symlinked_account_folder_cannot_lead_outside(store: LocalStorage, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    name = "B" * 32 + ".txt"
    (outside / name).write_text("outside the root")
    store.root.mkdir(parents=True)
    (store.root / "evil").symlink_to(outside, target_is_directory=True)
    with pytest.raises(NotFound):
        await store.get(f"evil/{name}")


@pytest.mark.parametrize("account", ["", "../x", "a/b", ".hidden", "a b", "x" * 200])
async def test_put_refuses_unusable_account_ids(store: LocalStorage, account: str) -> None:
    with pytest.raises(ValueError, match="account id"):
        await store.put(account, b"x", "image/png", "png")


@pytest.mark.parametrize("extension", ["", "../png", "p/ng", "png.exe.", "x" * 11])
async def test_put_refuses_unusable_extensions(store: LocalStorage, extension: str) -> None:
    with pytest.raises(ValueError, match="extension"):
        await store.put("acct", b"x", "image/png", extension)


def test_parse_key() -> None:
    parsed = parse_key("acct_1/" + "a" * 40 + ".mp4")
    assert (parsed.account_id, parsed.filename) == ("acct_1", "a" * 40 + ".mp4")


def test_content_types_follow_extensions() -> None:
    assert content_type_for("mp4") == "video/mp4"
    assert content_type_for(".wav") == "audio/wav"
    assert content_type_for("glb") == "model/gltf-binary"
    assert content_type_for("unknownext") == "application/octet-stream"


def test_config_builds_the_right_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = parse_storage_config({"type": "local", "root": str(tmp_path), "public_url": PUBLIC})
    assert isinstance(local, LocalStorageConfig)
    built = build_storage(local)
    assert isinstance(built, LocalStorage) and built.root == tmp_path.resolve()

    monkeypatch.setenv("MY_S3_KEY", "key")
    monkeypatch.setenv("MY_S3_SECRET", "secret")
    s3 = parse_storage_config(
        {"type": "s3", "bucket": "outputs", "endpoint_url": "http://127.0.0.1:9", "region": "us-east-1",
         "access_key_env": "MY_S3_KEY", "secret_key_env": "MY_S3_SECRET", "prefix": "hypereal/"}
    )  # fmt: skip
    backend = build_storage(s3)
    assert isinstance(backend, S3Storage)
    assert (backend.bucket, backend.prefix) == ("outputs", "hypereal/")


@pytest.mark.parametrize(
    "data",
    [{"type": "ftp", "root": "/x"},
     {"type": "local", "root": "/x", "public_url": PUBLIC, "surprise": 1},
     {"type": "local", "root": "/x"},
     {"type": "s3", "bucket": "outputs", "presign_expiry": 8 * 86400},
     {"type": "s3", "bucket": "outputs", "prefix": "../up/"}],
)  # fmt: skip
def test_config_rejects_bad_sections(data: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        parse_storage_config(data)


def test_s3_credentials_must_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ABSENT_S3_KEY", raising=False)
    with pytest.raises(ValueError, match="ABSENT_S3_KEY"):
        S3Storage("outputs", access_key_env="ABSENT_S3_KEY", secret_key_env="ABSENT_S3_SECRET")
