"""What a default server start loads: none of the libraries only some requests or settings need.

Each of these once made the start slower by itself (aiohttp with its TLS context, the local
models' numerical libraries, boto3, Alembic on a database already at the newest schema).
They are imported where they are used; an import moved back to the top of a module the
server imports would fail this. The start is run in a fresh interpreter, as `serve` runs it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

LOADED_LATER = (
    "aiohttp",  # outbound fetches, webhooks and the upstream queues: with their first session
    "jinja2",  # the console: with its first page
    "alembic",  # only when the database is behind the newest schema
    "boto3",  # S3 storage
    "botocore",
    "asyncpg",  # PostgreSQL
    "redis",  # the Redis bus, rate limits and route health
    "numpy",  # the local models
    "scipy",
    "PIL",
    "av",
    "cv2",
    "trimesh",
)

START = """
import asyncio, json, sys

from hypereal import cli
import hypereal.app, hypereal.http_server, hypereal.jobs.worker, uvicorn
from hypereal.app import create_app
from hypereal.services import Services
from hypereal.settings import load_settings


async def start():
    settings = load_settings(environ={}, data_dir=sys.argv[1])
    services = Services.build(settings)
    await services.start()
    try:
        app = create_app(settings, services=services)
        async with app.router.lifespan_context(app):
            pass
    finally:
        await services.close()


asyncio.run(start())
print(json.dumps(sorted(sys.modules)))
"""


def _started(data_dir: Path) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", START, str(data_dir)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return {name.partition(".")[0] for name in json.loads(result.stdout.splitlines()[-1])}


def test_a_default_start_leaves_the_heavy_libraries_unloaded(tmp_path: Path) -> None:
    migrated = subprocess.run(
        [sys.executable, "-m", "hypereal.cli", "migrate", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stderr
    loaded = _started(tmp_path)
    assert "hypereal" in loaded and "fastapi" in loaded  # the start did run
    assert sorted(loaded.intersection(LOADED_LATER)) == []
