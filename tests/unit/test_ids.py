"""Keys written on every call arrive in order, so that their index grows at its end."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from hypereal.billing import new_reference
from hypereal.ids import TIME_DIGITS, sortable_id
from hypereal.jobs.engine import new_job_id


def test_ids_made_later_sort_after_earlier_ones() -> None:
    made = []
    for _ in range(5):
        made.append(sortable_id("x_"))
        time.sleep(0.002)
    assert made == sorted(made)
    assert sorted(made, reverse=True) != made


def test_ids_made_in_the_same_millisecond_differ() -> None:
    made = {sortable_id("x_") for _ in range(10_000)}
    assert len(made) == 10_000


def test_the_time_comes_first_in_fixed_width(monkeypatch: pytest.MonkeyPatch) -> None:
    # Fixed width: 0xfff... and 0x1000... must compare as numbers do, not as text of two lengths.
    monkeypatch.setattr(time, "time_ns", lambda: 0xFFF * 1_000_000)
    earlier = sortable_id("x_")
    monkeypatch.setattr(time, "time_ns", lambda: 0x1000 * 1_000_000)
    later = sortable_id("x_")
    assert earlier < later
    assert len(earlier) == len(later) == len("x_") + TIME_DIGITS + 16


@pytest.mark.parametrize("make", [lambda: new_reference("chat"), new_job_id], ids=["chat reference", "job id"])
def test_chat_references_and_job_ids_sort_by_time(make: Callable[[], str]) -> None:
    first = make()
    time.sleep(0.002)
    second = make()
    assert first < second
    assert len(second) <= 40  # the width of the id columns
