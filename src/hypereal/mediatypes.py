"""What kind of media a body is: its magic bytes, checked against its declared content type.

The declared type only has to be plausible; the magic bytes decide, so a text or HTML body
labelled image/png is refused. Generic types are accepted because object stores often
serve media as application/octet-stream.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

GENERIC_TYPES = frozenset(
    {"application/octet-stream", "binary/octet-stream", "application/binary", "application/unknown"}
)
_HEIF_BRANDS = {
    b"avif": "image/avif", b"avis": "image/avif", b"heic": "image/heic", b"heix": "image/heic",
    b"hevc": "image/heic", b"heim": "image/heic", b"heis": "image/heic", b"mif1": "image/heif",
    b"msf1": "image/heif",
}  # fmt: skip
_MATROSKA = b"\x1a\x45\xdf\xa3"


def _ftyp_brand(data: bytes) -> bytes | None:
    return data[8:12] if data[4:8] == b"ftyp" else None


def sniff_image(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:2] == b"BM" and len(data) >= 26 and data[6:10] == b"\0\0\0\0":
        return "image/bmp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "image/tiff"
    brand = _ftyp_brand(data)
    return _HEIF_BRANDS.get(brand) if brand is not None else None


def _mpeg_audio_frame(data: bytes) -> str | None:
    if len(data) < 3 or data[0] != 0xFF:
        return None
    if data[1] & 0xF6 == 0xF0:
        return "audio/aac"  # ADTS: sync word with layer bits 00
    version_ok = data[1] & 0x18 != 0x08
    layer_ok = data[1] & 0x06 != 0
    bitrate_ok = data[2] >> 4 != 0xF
    rate_ok = (data[2] >> 2) & 0x3 != 0x3
    if data[1] & 0xE0 == 0xE0 and version_ok and layer_ok and bitrate_ok and rate_ok:
        return "audio/mpeg"
    return None


def sniff_audio(data: bytes) -> str | None:
    head = data[:4]
    if head == b"RIFF" and data[8:12] == b"WAVE":
        return "audio/wav"
    if data.startswith(b"ID3"):
        return "audio/mpeg"
    known = {b"OggS": "audio/ogg", b"fLaC": "audio/flac", b"caff": "audio/x-caf", _MATROSKA: "audio/webm"}
    if head in known:
        return known[head]
    if head == b"FORM" and data[8:12] in (b"AIFF", b"AIFC"):
        return "audio/aiff"
    if data.startswith(b"#!AMR"):
        return "audio/amr"
    brand = _ftyp_brand(data)
    if brand is not None and brand not in _HEIF_BRANDS:
        return "audio/mp4"
    return _mpeg_audio_frame(data)


def sniff_video(data: bytes) -> str | None:
    brand = _ftyp_brand(data)
    if brand is not None and brand not in _HEIF_BRANDS:
        return "video/quicktime" if brand == b"qt  " else "video/mp4"
    if data[:4] == _MATROSKA:
        return "video/webm"
    if data[:4] == b"RIFF" and data[8:12] == b"AVI ":
        return "video/x-msvideo"
    if data[:4] == b"OggS":
        return "video/ogg"
    return None


@dataclass(frozen=True, slots=True)
class MediaKind:
    name: str
    families: tuple[str, ...]
    """Declared content types accepted besides the generic binary ones."""
    sniff: Callable[[bytes], str | None]
    accept: str

    def check_declared(self, declared: str) -> str | None:
        """Why the declared type rules the body out, or None when it is plausible."""
        if not declared or declared in GENERIC_TYPES or declared.startswith(self.families):
            return None
        return f"content type {declared[:60]} is not an accepted {self.name} type"


KINDS: Mapping[str, MediaKind] = {
    "image": MediaKind("image", ("image/",), sniff_image, "image/*"),
    # webm and mp4 containers are often labelled video/* even when they hold only audio.
    "audio": MediaKind("audio", ("audio/", "video/"), sniff_audio, "audio/*, video/webm, video/mp4"),
    "video": MediaKind("video", ("video/",), sniff_video, "video/*"),
    # Outputs an upstream hosts (GLB models, archives...): any bytes, still under the guard's limits.
    "file": MediaKind("file", ("",), lambda data: "application/octet-stream", "*/*"),
}
