"""The ranges of `hypereal.bounds` are the ones the README's "Limits" table promises."""

from __future__ import annotations

from pathlib import Path

from hypereal import bounds

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_states_the_limits_the_code_enforces() -> None:
    text = README.read_text()
    limits = text[text.index("### Limits") : text.index("### The model catalog")]
    for value in (
        bounds.MAX_TOP_UP_CREDITS,
        bounds.MAX_BALANCE_CREDITS,
        bounds.MAX_RATE_LIMIT_PER_HOUR,
        bounds.MAX_PAGE_OFFSET,
    ):
        assert f"{value:,}" in limits, value
    assert bounds.INT64_MAX == 2**63 - 1 and "2^63 − 1" in limits
    assert bounds.MAX_JSON_INTEGER == 2**53 - 1 and "2^53 − 1" in limits
    assert bounds.MAX_CHAT_INTEGER == 2**31 - 1 and "2^31 − 1" in limits
    assert bounds.CHAT_NUMBER_RANGES == {"temperature": (0, 2), "top_p": (0, 1)} and "0 to 2, 0 to 1" in limits


def test_the_maximum_balance_leaves_room_for_what_comes_back() -> None:
    # Refunds and settlements give back what was charged, and nothing charged exceeds a balance:
    # a balance at its maximum still takes back thousands of the largest charges there can be.
    from hypereal.units import MILLI

    assert (1 + 9000) * bounds.MAX_BALANCE_CREDITS * MILLI < bounds.INT64_MAX
