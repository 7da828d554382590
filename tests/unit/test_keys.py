"""Key material and the epoch file that tells processes sharing a data directory to drop cached keys."""

from __future__ import annotations

import asyncio
import multiprocessing
from pathlib import Path

from hypereal.keys import EpochFileInvalidation, generate_key, hash_key, visible_prefix


def test_hash_and_prefix() -> None:
    key = generate_key()
    assert hash_key(key) == hash_key(key) and len(hash_key(key)) == 64
    assert hash_key(key) != hash_key(generate_key())
    assert key.startswith(visible_prefix(key)) and len(visible_prefix(key)) < len(key) // 3


async def test_every_publish_is_seen_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "keys.epoch"
    revoker, other = EpochFileInvalidation(path), EpochFileInvalidation(path)
    assert other.changed() is False
    for _ in range(50):
        await revoker.publish()
        await revoker.publish()  # twice within one clock tick still reads as a change
        assert other.changed() is True
        assert other.changed() is False
    assert revoker.changed() is False  # the publisher cleared its own cache already


def _publish_many(path: str, count: int) -> int:
    invalidation = EpochFileInvalidation(Path(path))

    async def run() -> int:
        failures = 0
        for _ in range(count):
            try:
                await invalidation.publish()
            except OSError:
                failures += 1
        return failures

    return asyncio.run(run())


def test_processes_revoking_at_once_do_not_trip_over_each_other(tmp_path: Path) -> None:
    path = str(tmp_path / "keys.epoch")
    with multiprocessing.get_context("fork").Pool(2) as pool:
        failures = pool.starmap(_publish_many, [(path, 1500), (path, 1500)])
    assert failures == [0, 0]
    assert [p.name for p in tmp_path.iterdir()] == ["keys.epoch"]  # no temporary files left behind


async def test_the_epoch_file_is_made_at_start_so_the_check_per_request_finds_it(tmp_path: Path) -> None:
    path = tmp_path / "data" / "keys.epoch"
    first = EpochFileInvalidation(path)
    assert path.exists()
    # A second process starting on the same file does not count as a revocation...
    second = EpochFileInvalidation(path)
    assert not first.changed() and not second.changed()
    # ...and a revocation is still seen by the others.
    await second.publish()
    assert first.changed()
    assert not first.changed()
