"""Every example of the README, run as written against a real `hypereal serve`.

One server (SQLite in a temp data dir, the job worker in the same process) is started the way
a newcomer starts it; the tests read the development key it prints and run the README's own
curl lines (taken from the README, with only the server's address and the printed key put
in), then check the files that come back: a PNG of the requested aspect ratio, an H.264 MP4
of the requested length, a decodable MP3, a GLB that trimesh loads. Every example must work
without the internet: no URL in them leaves this server. The SDK snippet and the admin
examples run as written too. Finally the balance must have dropped by exactly the credits
the answers reported.

The helpers at the top (a local file server for input media, the printed key, job polling,
decoders) are shared with the other end-to-end modules.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import pytest
import trimesh
from PIL import Image, ImageDraw

from tests.conftest import ADMIN_KEY, Server, clean_environ

# Upstream credentials set empty, so a key in the environment running the tests cannot leak in.
NO_UPSTREAM_KEYS = {
    name: "" for name in ("FAL_KEY", "REPLICATE_API_TOKEN", "WAVESPEED_API_KEY", "OPENAI_API_KEY", "ANTHROPIC_API_KEY")
}
# The input media server listens on loopback, which the SSRF guard refuses unless allowed.
ALLOW_LOOPBACK = {"HYPEREAL_OUTBOUND_ALLOW": "127.0.0.1/32"}
JOB_WAIT_SECONDS = 240.0
README = Path(__file__).resolve().parents[2] / "README.md"
README_SERVER = "http://127.0.0.1:8000"


# ---------------------------------------------------------------- shared helpers


class MediaServer:
    """A loopback HTTP server that serves registered bytes under the content type given."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, str]] = {}
        files = self.files

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                found = files.get(self.path.split("?", 1)[0])
                if found is None:
                    self.send_error(404)
                    return
                data, content_type = found
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def add(self, name: str, data: bytes, content_type: str) -> str:
        path = "/" + name.lstrip("/")
        self.files[path] = (data, content_type)
        return self.base + path

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def media() -> Iterator[MediaServer]:
    server = MediaServer()
    try:
        yield server
    finally:
        server.close()


@dataclass
class DevAccount:
    """The development account `serve` creates on an empty database, and its printed key."""

    server: Server
    key: str
    credits: int
    spent: list[int | float] = field(default_factory=list)
    """creditsUsed of every request made in the module, as the answers reported them."""

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.server.url, headers=self.headers, timeout=180)


def dev_account(server: Server) -> DevAccount:
    output = server.output()
    key = re.search(r"\b(ck_[A-Za-z0-9_\-]+)", output)
    credits = re.search(r"development account with (\d+) credits", output)
    assert key and credits, f"serve did not print a development key:\n{output}"
    return DevAccount(server, key.group(1), int(credits.group(1)))


def wait_for_job(client: httpx.Client, url: str, seconds: float = JOB_WAIT_SECONDS) -> dict[str, Any]:
    """Poll a job until it leaves `processing`; the bound only keeps a hung job from hanging the run."""
    deadline = time.monotonic() + seconds
    while True:
        response = client.get(url)
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        if job["status"] != "processing" or time.monotonic() > deadline:
            return job
        time.sleep(0.25)


def download(url: str) -> httpx.Response:
    response = httpx.get(url, timeout=60)
    assert response.status_code == 200, f"GET {url}: {response.status_code}"
    return response


def balance(account: DevAccount) -> int | float:
    # The README reads the balance with x-api-key; both headers authenticate.
    response = httpx.get(account.server.url + "/api/v1/account", headers={"x-api-key": account.key}, timeout=30)
    assert response.status_code == 200, response.text
    value: int | float = response.json()["balance"]
    return value


def ledger(account: DevAccount) -> list[dict[str, Any]]:
    response = httpx.get(account.server.url + "/api/v1/account/ledger?limit=200", headers=account.headers, timeout=30)
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["data"]
    return entries


def object_png(size: int = 256, colour: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    """A filled disc on a plain light background: an object any foreground finder can isolate."""
    image = Image.new("RGB", (size, size), (236, 236, 236))
    ImageDraw.Draw(image).ellipse((size // 4, size // 5, 3 * size // 4, 4 * size // 5), fill=colour)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


@dataclass(frozen=True)
class DecodedVideo:
    codec: str
    pixel_format: str
    fps: float
    frames: list[Any]

    @property
    def seconds(self) -> float:
        return len(self.frames) / self.fps


def decode_video(data: bytes) -> DecodedVideo:
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        codec, pixel_format = stream.codec_context.name, stream.codec_context.pix_fmt
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        frames = [frame.to_ndarray(format="gray") for frame in container.decode(stream)]
    return DecodedVideo(codec, str(pixel_format), fps, frames)


def decode_audio(data: bytes) -> tuple[str, np.ndarray[Any, Any], int]:
    """(container format, mono float samples, sample rate) of the first audio stream."""
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.audio[0]
        kind, rate = container.format.name, stream.codec_context.sample_rate
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        pieces = [
            out.to_ndarray().reshape(-1) for frame in container.decode(stream) for out in resampler.resample(frame)
        ]
        pieces += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    return str(kind), np.concatenate(pieces), int(rate)


def load_glb(data: bytes) -> trimesh.Scene:
    assert data[:4] == b"glTF", "not a binary glTF file"
    assert int.from_bytes(data[4:8], "little") == 2, "not glTF 2.0"
    scene = trimesh.load(io.BytesIO(data), file_type="glb", force="scene")
    assert isinstance(scene, trimesh.Scene)
    return scene


# ---------------------------------------------------------------- the README's own commands


def readme_block(heading: str, language: str = "sh") -> str:
    """The first ```language block after the README line `heading`."""
    text = README.read_text()
    start = text.index(f"\n{heading}\n")
    opening = text.index(f"```{language}\n", start) + len(f"```{language}\n")
    return text[opening : text.index("```", opening)]


def commands(block: str) -> list[str]:
    """The shell commands of a block: continued lines joined, comments and blank lines left out."""
    joined = re.sub(r"\\\n\s*", " ", block)
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            found.append(line.split("  #", 1)[0].strip())
    return found


def readme_command(block: str, *fragments: str) -> str:
    """The one command of `block` that holds every fragment."""
    (found,) = [command for command in commands(block) if all(fragment in command for fragment in fragments)]
    return found


def run_as_written(command: str, server: Server, **variables: str) -> Any:
    """A README shell command, pointed at `server`, with the shell variables it uses; its JSON output."""
    ran = subprocess.run(
        ["bash", "-c", command.replace(README_SERVER, server.url)],
        env=clean_environ(variables),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert ran.returncode == 0, f"{command}\n{ran.stderr}"
    return json.loads(ran.stdout)


TRY_IT = readme_block("## Try it")


# ---------------------------------------------------------------- the server of this module


@pytest.fixture(scope="module")
def server(start_server: Callable[..., Server]) -> Server:
    return start_server(env={**NO_UPSTREAM_KEYS, **ALLOW_LOOPBACK}, worker=True)


@pytest.fixture(scope="module")
def account(server: Server) -> DevAccount:
    return dev_account(server)


@pytest.fixture(scope="module")
def api(account: DevAccount) -> Iterator[httpx.Client]:
    with account.client() as client:
        yield client


def catalog_price(api: httpx.Client, model: str) -> dict[str, Any]:
    response = api.get(f"/api/v1/models/{model}")
    assert response.status_code == 200, response.text
    pricing: dict[str, Any] = response.json()["pricing"]
    return pricing


# ---------------------------------------------------------------- the README's examples


def test_every_example_works_offline() -> None:
    urls = re.findall(r"https?://[^\s'\"]+", TRY_IT)
    assert urls and all(url.startswith(README_SERVER + "/") for url in urls), urls
    assert all(command.startswith("curl ") for command in commands(TRY_IT))


def test_image_example_serves_a_png_of_the_requested_aspect_ratio(
    api: httpx.Client, account: DevAccount, server: Server
) -> None:
    answer = run_as_written(readme_command(TRY_IT, "/images/generate"), server, KEY=account.key)
    account.spent.append(answer["creditsUsed"])
    assert answer["creditsUsed"] == catalog_price(api, "local-image")["per_call"]
    assert [item["model"] for item in answer["data"]] == ["local-image"]

    file = download(answer["data"][0]["url"])
    assert file.headers["content-type"].startswith("image/png")
    image = Image.open(io.BytesIO(file.content))
    assert image.format == "PNG"
    assert image.size == (1024, 576)  # 16:9 at the default 1K long edge
    pixels = np.asarray(image.convert("RGB"), np.float32)
    assert pixels.std() > 10, "the image is a flat colour"


def test_video_example_completes_when_polled_as_h264_of_the_requested_length(
    api: httpx.Client, account: DevAccount, server: Server
) -> None:
    accepted = run_as_written(readme_command(TRY_IT, "/videos/generate"), server, KEY=account.key)
    assert accepted["status"] == "processing"
    assert accepted["pollUrl"].startswith(f"{server.url}/api/v1/jobs/{accepted['jobId']}")

    wait_for_job(api, accepted["pollUrl"])
    poll = readme_command(TRY_IT, "/api/v1/jobs/JOB_ID").replace("JOB_ID", accepted["jobId"])
    job = run_as_written(poll, server, KEY=account.key)
    assert job["status"] == "completed", job
    assert job["creditsUsed"] == 3 * catalog_price(api, "local-video-t2v")["per_second"]
    account.spent.append(job["creditsUsed"])
    assert job["provider"] == "local" and "servedBy" not in job

    video = decode_video(download(job["outputUrl"]).content)
    assert video.codec == "h264"
    assert video.pixel_format == "yuv420p"
    assert video.fps == 24  # the catalog's default
    assert len(video.frames) == 3 * 24
    assert video.seconds == pytest.approx(3.0, abs=1 / 24)
    assert min(video.frames[0].shape) == 720
    moved = np.abs(video.frames[-1].astype(np.float32) - video.frames[0].astype(np.float32)).mean()
    assert moved > 2, "the camera did not move"


def test_tts_example_returns_a_decodable_mp3(account: DevAccount, server: Server) -> None:
    answer = run_as_written(readme_command(TRY_IT, "/audio/generate"), server, KEY=account.key)
    account.spent.append(answer["creditsUsed"])
    assert answer["success"] is True
    assert answer["audioUrl"] == answer["outputUrl"]

    file = download(answer["audioUrl"])
    container, samples, rate = decode_audio(file.content)
    assert container == "mp3"
    seconds = len(samples) / rate
    assert seconds > 0.6, "too short for three words"
    # MP3 frames pad a little at both ends.
    assert seconds == pytest.approx(answer["duration"], abs=0.15)
    assert float(np.sqrt(np.mean(samples**2))) > 0.01, "the speech is silent"


def test_3d_example_returns_a_glb_that_trimesh_loads(account: DevAccount, server: Server) -> None:
    answer = run_as_written(readme_command(TRY_IT, "/3d/generate"), server, KEY=account.key)
    account.spent.append(answer["creditsUsed"])
    assert answer["success"] is True

    scene = load_glb(download(answer["outputUrl"]).content)
    meshes = list(scene.geometry.values())
    assert meshes and sum(len(mesh.faces) for mesh in meshes) > 100
    textured = [mesh for mesh in meshes if isinstance(mesh.visual, trimesh.visual.TextureVisuals)]
    assert textured, "the relief carries no texture"
    texture = textured[0].visual.material.baseColorTexture
    assert texture is not None and min(texture.size) >= 32


def test_chat_example_answers_with_local_echo(api: httpx.Client, account: DevAccount, server: Server) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    if "/api/v1/chat" not in paths:
        pytest.skip("the native /chat route is not part of this build yet")
    answer = run_as_written(readme_command(TRY_IT, "/v1/chat "), server, KEY=account.key)
    account.spent.append(answer["creditsUsed"])
    assert answer["choices"][0]["message"]["content"] == "Hello, how are you?"
    assert answer["usage"]["completion_tokens"] > 0


def test_models_example_lists_every_category_with_prices_and_availability(server: Server) -> None:
    # The README sends this one without a key.
    video = run_as_written(readme_command(TRY_IT, "/api/v1/models?category=video"), server)
    listed = {model["id"]: model for model in video["data"]}
    assert {model["category"] for model in listed.values()} == {"video"}
    assert {"local-video-t2v", "local-video-i2v", "veo-3-1-t2v", "wan-2-6-i2v"} <= set(listed)
    assert listed["local-video-t2v"]["available"] is True
    assert listed["veo-3-1-t2v"]["available"] is False  # no upstream key is set
    assert all(model["pricing"] for model in listed.values())

    everything = httpx.get(server.url + "/api/v1/models", timeout=30).json()["data"]
    assert {"image", "image-edit", "video", "audio", "3d", "llm"} <= {model["category"] for model in everything}


def test_sdk_examples_run_as_written(account: DevAccount, server: Server) -> None:
    pytest.importorskip("openai")
    pytest.importorskip("anthropic")
    snippet = readme_block("### Claude Code, Codex CLI, OpenCode and the SDKs", "python")
    snippet = snippet.replace(README_SERVER, server.url).replace("ck_YOUR_KEY", account.key)
    before = balance(account)
    ran = subprocess.run(
        [sys.executable, "-c", snippet], env=clean_environ(), capture_output=True, text=True, timeout=120, check=False
    )
    assert ran.returncode == 0, ran.stderr
    assert "ChatCompletion(" in ran.stdout and "content='Hi'" in ran.stdout
    assert ran.stdout.rstrip().endswith("\nHi")
    # The SDKs' answers do not say what they cost; the ledger does.
    account.spent.append(before - balance(account))


def test_admin_examples_run_as_written(server: Server) -> None:
    block = readme_block("### Accounts, keys and credits")
    admin = {"ADMIN": ADMIN_KEY}
    account = run_as_written(readme_command(block, "/admin/accounts ", '"name"'), server, **admin)
    assert (account["name"], account["balance"]) == ("acme", 1000)
    key = run_as_written(readme_command(block, "ACCOUNT_ID/keys").replace("ACCOUNT_ID", account["id"]), server, **admin)
    assert key["key"].startswith("ck_") and key["rate_limit_per_hour"] == 5000
    topped = run_as_written(
        readme_command(block, "ACCOUNT_ID/credits").replace("ACCOUNT_ID", account["id"]), server, **admin
    )
    assert topped == {"balance": 1500}
    revoke = readme_command(block, "-X DELETE").replace("KEY_ID", key["id"]) + " -o /dev/null -w '%{http_code}'"
    ran = subprocess.run(
        ["bash", "-c", revoke.replace(README_SERVER, server.url)],
        env=clean_environ(admin),
        capture_output=True,
        text=True,
        check=True,
    )
    assert ran.stdout == "204"
    assert httpx.get(server.url + "/v1/account", headers={"Authorization": f"Bearer {key['key']}"}).status_code == 401


def test_balance_dropped_by_exactly_the_credits_reported(account: DevAccount, server: Server) -> None:
    # Runs last in this module: every example above has recorded what its answer said it cost.
    assert balance(account) == pytest.approx(account.credits - sum(account.spent), abs=1e-9)
    shown = run_as_written(readme_command(TRY_IT, "/api/v1/account "), server, KEY=account.key)
    assert shown["balance"] == balance(account)
    moves = [entry["amount"] for entry in ledger(account) if entry["kind"] != "adjustment"]
    assert sum(moves) == pytest.approx(-sum(account.spent), abs=1e-9)
