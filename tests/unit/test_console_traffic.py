"""The operator's last-hour traffic: counters now minus the note taken an hour ago."""

from __future__ import annotations

from hypereal.metrics import Metrics
from hypereal.web.traffic import TrafficWindow

ROUTE = "/api/v1/jobs/{job_id}"


def test_the_last_hour_subtracts_the_note_of_an_hour_ago() -> None:
    metrics = Metrics()
    window = TrafficWindow(metrics)
    start = window.notes[0][0]
    metrics.observe_request("GET", ROUTE, 200, 0.010)
    metrics.observe_request("GET", "unmatched", 404, 0.001)  # not an API route
    window.note(start + 1800)
    for _ in range(3):
        metrics.observe_request("GET", ROUTE, 200, 0.020)
    metrics.observe_request("GET", ROUTE, 503, 0.040)

    since, rows = window.last_hour(start + 1900)
    assert since == start  # up for less than an hour: since the start
    assert [(row.route, row.requests, row.errors) for row in rows] == [(ROUTE, 5, 1)]

    window.note(start + 3700)
    since, rows = window.last_hour(start + 3700)
    assert since == start + 1800
    (row,) = rows
    assert (row.requests, row.errors) == (4, 1)
    assert row.mean_ms is not None and abs(row.mean_ms - 25.0) < 1e-6


def test_old_notes_are_dropped() -> None:
    window = TrafficWindow(Metrics())
    start = window.notes[0][0]
    for minute in range(1, 200):
        window.note(start + 60 * minute)
    assert len(window.notes) <= 62
    assert window.notes[0][0] >= start + 60 * 199 - 3600 - 60
