"""Where generated outputs go: a local directory served by the app, or an S3-compatible bucket.

Keys are `<account>/<name>.<ext>`: the account owns the file, and the name is 32 random
URL-safe characters, so a URL cannot be guessed from another. Keys arriving from outside
(a request path) are checked against one strict pattern before anything touches a path
or a bucket, which is what makes traversal impossible rather than merely filtered.

Backends are chosen by the `type` of a typed configuration (`local` or `s3`), never by
string checks elsewhere: `parse_storage_config(data).build()`.
"""

from __future__ import annotations

import abc
import asyncio
import mimetypes
import os
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from hypereal.errors import NotFound, Unavailable

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

_T = TypeVar("_T")
_ACCOUNT = r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}"
_KEY = re.compile(rf"(?P<account>{_ACCOUNT})/(?P<name>[A-Za-z0-9_-]{{32,128}})\.(?P<ext>[a-z0-9]{{1,10}})")
_ACCOUNT_ONLY = re.compile(_ACCOUNT)
_EXTENSION = re.compile(r"[a-z0-9]{1,10}")

# The type a stored file is served with follows from its extension, so that no side record is
# needed and a file always reads back the same way.
_CONTENT_TYPES = {
    "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp",
    "gif": "image/gif", "bmp": "image/bmp", "tiff": "image/tiff", "avif": "image/avif",
    "mp4": "video/mp4", "webm": "video/webm", "mov": "video/quicktime", "mp3": "audio/mpeg",
    "wav": "audio/wav", "ogg": "audio/ogg", "opus": "audio/opus", "flac": "audio/flac",
    "m4a": "audio/mp4", "aac": "audio/aac", "glb": "model/gltf-binary", "gltf": "model/gltf+json",
    "obj": "model/obj", "stl": "model/stl", "ply": "application/octet-stream", "usdz": "model/vnd.usdz+zip",
    "json": "application/json", "txt": "text/plain", "srt": "application/x-subrip", "vtt": "text/vtt",
    "zip": "application/zip",
}  # fmt: skip


def content_type_for(extension: str) -> str:
    ext = extension.lower().lstrip(".")
    return _CONTENT_TYPES.get(ext) or mimetypes.types_map.get("." + ext) or "application/octet-stream"


@dataclass(frozen=True, slots=True)
class StoredFile:
    key: str
    url: str
    size: int
    content_type: str


@dataclass(frozen=True, slots=True)
class ParsedKey:
    account_id: str
    filename: str


def parse_key(key: str) -> ParsedKey:
    """Split a key from outside; NotFound for anything that is not exactly a key we issue."""
    match = _KEY.fullmatch(key)
    if match is None:
        raise NotFound("File not found")
    return ParsedKey(match["account"], f"{match['name']}.{match['ext']}")


def new_key(account_id: str, extension: str) -> str:
    """A fresh unguessable key for `account_id`; ValueError for ids or extensions we cannot store."""
    if _ACCOUNT_ONLY.fullmatch(account_id) is None:
        raise ValueError(f"account id {account_id!r} cannot name a storage folder")
    ext = extension.lower().lstrip(".")
    if _EXTENSION.fullmatch(ext) is None:
        raise ValueError(f"file extension {extension!r} is not 1-10 letters or digits")
    name = secrets.token_urlsafe(24)  # 32 characters from 192 random bits
    return f"{account_id}/{name}.{ext}"


class Storage(abc.ABC):
    """Output files owned by accounts. Keys from outside go through `parse_key` first."""

    @abc.abstractmethod
    async def put(self, account_id: str, data: bytes, content_type: str, extension: str) -> StoredFile:
        """Store `data` under a new unguessable key in the account's space."""

    @abc.abstractmethod
    async def get(self, key: str) -> tuple[bytes, str]:
        """(bytes, content type); NotFound when the key is invalid or absent."""

    @abc.abstractmethod
    async def delete(self, key: str) -> None:
        """Remove the file; a missing file is not an error."""

    @abc.abstractmethod
    async def url_for(self, key: str) -> str:
        """A URL a client can fetch now (presigned URLs expire: ask again rather than store them)."""

    def owner_of(self, key: str) -> str:
        """The account a key belongs to; NotFound for an invalid key."""
        return parse_key(key).account_id

    async def close(self) -> None:
        return None


class LocalStorage(Storage):
    """Files under `root/<account>/<name>.<ext>`, served by the app at `{public_url}/files/{key}`."""

    def __init__(self, root: Path, public_url: str) -> None:
        self.root = Path(root).resolve()
        self.public_url = public_url.rstrip("/")

    def path_for(self, key: str) -> Path:
        """The file behind a key (for serving it directly); NotFound for an invalid key."""
        parsed = parse_key(key)
        path = self.root / parsed.account_id / parsed.filename
        # The key pattern already rules out separators and dot segments; this guards
        # against a symlinked account folder leading elsewhere.
        if not path.resolve().is_relative_to(self.root):
            raise NotFound("File not found")
        return path

    async def put(self, account_id: str, data: bytes, content_type: str, extension: str) -> StoredFile:
        key = new_key(account_id, extension)
        await asyncio.to_thread(self._write, self.path_for(key), data)
        return StoredFile(key=key, url=await self.url_for(key), size=len(data), content_type=content_type)

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written aside then renamed, so a reader never sees half a file; the leading dot keeps
        # the partial file outside the key pattern.
        partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
        try:
            partial.write_bytes(data)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)

    async def get(self, key: str) -> tuple[bytes, str]:
        path = self.path_for(key)
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise NotFound("File not found") from exc
        return data, content_type_for(path.suffix)

    async def delete(self, key: str) -> None:
        path = self.path_for(key)
        await asyncio.to_thread(path.unlink, missing_ok=True)

    async def url_for(self, key: str) -> str:
        parse_key(key)
        return f"{self.public_url}/files/{key}"


class S3Storage(Storage):
    """An S3-compatible bucket (AWS, MinIO, R2, ...), through boto3 in worker threads.

    URLs are `{public_url}/{key}` when the bucket is served publicly (or through a CDN),
    otherwise presigned GET URLs valid for `presign_expiry` seconds.
    """

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_env: str | None = None,
        secret_key_env: str | None = None,
        public_url: str | None = None,
        presign_expiry: int = 3600,
        prefix: str = "",
        addressing_style: Literal["auto", "path", "virtual"] = "auto",
    ) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix
        self.public_url = public_url.rstrip("/") if public_url else None
        self.presign_expiry = presign_expiry
        # Credentials come from named environment variables when configured, else from
        # boto3's default chain (environment, shared files, instance roles).
        key_id = secret = None
        if access_key_env or secret_key_env:
            key_id = _required_env(access_key_env, "access_key_env")
            secret = _required_env(secret_key_env, "secret_key_env")
        session = boto3.session.Session(aws_access_key_id=key_id, aws_secret_access_key=secret, region_name=region)
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": addressing_style},
            retries={"max_attempts": 3, "mode": "standard"},
            max_pool_connections=32,
        )
        self._client: S3Client = session.client("s3", endpoint_url=endpoint_url, config=config)

    def _object_key(self, key: str) -> str:
        parse_key(key)
        return self.prefix + key

    async def put(self, account_id: str, data: bytes, content_type: str, extension: str) -> StoredFile:
        key = new_key(account_id, extension)
        await self._call(
            self._client.put_object,
            Bucket=self.bucket,
            Key=self._object_key(key),
            Body=data,
            ContentType=content_type,
        )
        return StoredFile(key=key, url=await self.url_for(key), size=len(data), content_type=content_type)

    async def get(self, key: str) -> tuple[bytes, str]:
        object_key = self._object_key(key)

        def read() -> tuple[bytes, str]:
            answer = self._client.get_object(Bucket=self.bucket, Key=object_key)
            with answer["Body"] as body:
                data = body.read()
            return data, answer.get("ContentType") or content_type_for(key.rsplit(".", 1)[-1])

        return await self._call(read)

    async def delete(self, key: str) -> None:
        await self._call(self._client.delete_object, Bucket=self.bucket, Key=self._object_key(key))

    async def url_for(self, key: str) -> str:
        object_key = self._object_key(key)
        if self.public_url:
            return f"{self.public_url}/{key}"
        # Signing is local computation: no request leaves the process.
        return self._client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": object_key}, ExpiresIn=self.presign_expiry
        )

    async def _call(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            result = await asyncio.to_thread(fn, *args, **kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound"):
                raise NotFound("File not found") from exc
            raise Unavailable(f"Storage is unavailable ({code or 'error'})") from exc
        except BotoCoreError as exc:
            raise Unavailable(f"Storage is unavailable ({type(exc).__name__})") from exc
        return result

    async def close(self) -> None:
        await asyncio.to_thread(self._client.close)


def _required_env(name: str | None, field: str) -> str:
    if not name:
        raise ValueError(f"S3 storage: {field} must be set when the other credential variable is")
    value = os.environ.get(name)
    if not value:
        raise ValueError(f"S3 storage: environment variable {name} ({field}) is not set")
    return value


# -- configuration --------------------------------------------------------------------------


class LocalStorageConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["local"] = "local"
    root: Path
    public_url: str

    def build(self) -> Storage:
        return LocalStorage(self.root, self.public_url)


class S3StorageConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["s3"]
    bucket: str = Field(min_length=3, max_length=63)
    endpoint_url: str | None = None
    region: str | None = None
    access_key_env: str | None = None
    secret_key_env: str | None = None
    public_url: str | None = None
    presign_expiry: int = Field(default=3600, ge=1, le=7 * 86400)
    prefix: str = ""
    addressing_style: Literal["auto", "path", "virtual"] = "auto"

    @field_validator("prefix")
    @classmethod
    def _prefix_is_a_folder(cls, value: str) -> str:
        if value and (not value.endswith("/") or not re.fullmatch(r"[A-Za-z0-9_./-]+", value) or ".." in value):
            raise ValueError("prefix must be empty or a folder path ending in '/'")
        return value

    def build(self) -> Storage:
        return S3Storage(
            self.bucket,
            endpoint_url=self.endpoint_url,
            region=self.region,
            access_key_env=self.access_key_env,
            secret_key_env=self.secret_key_env,
            public_url=self.public_url,
            presign_expiry=self.presign_expiry,
            prefix=self.prefix,
            addressing_style=self.addressing_style,
        )


StorageConfig = Annotated[LocalStorageConfig | S3StorageConfig, Field(discriminator="type")]
_STORAGE_CONFIG: TypeAdapter[LocalStorageConfig | S3StorageConfig] = TypeAdapter(StorageConfig)


def parse_storage_config(data: Mapping[str, Any]) -> LocalStorageConfig | S3StorageConfig:
    """Validate a storage section (`{"type": "local" | "s3", ...}`); unknown keys are refused."""
    return _STORAGE_CONFIG.validate_python(dict(data))


def build_storage(config: LocalStorageConfig | S3StorageConfig) -> Storage:
    return config.build()
