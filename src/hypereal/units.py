"""Credits outside, millicredits inside.

1 credit = $0.01. Per-token LLM prices need finer steps than a credit, so balances and
ledger amounts are integer millicredits; every public figure is shown in credits.
"""

from __future__ import annotations

import math

MILLI = 1000


def to_milli(credits: float) -> int:
    return round(credits * MILLI)


def to_credits(milli: int) -> int | float:
    """Whole credits as an int, fractions as a float with at most three decimals."""
    if milli % MILLI == 0:
        return milli // MILLI
    return round(milli / MILLI, 3)


def ceil_milli(value: float) -> int:
    return math.ceil(value - 1e-9)
