"""The ranges of every number the API takes, defined once.

Both databases keep integers in 64 bits, signed; a larger one reaching SQLite raises in the
driver, and PostgreSQL refuses it. So every number of a request is checked against a range
here before it goes anywhere, and answered with a 400 outside it; the README's "Limits"
section lists them. The money limits leave room below 2^63 on purpose: settlements and
refunds give back what was charged and are never refused, and a balance at its ceiling can
still take back thousands of the largest charges there can be.

Credits are whole credits here (1 credit = $0.01); the ledger holds millicredits
(`units.MILLI`).
"""

from __future__ import annotations

from typing import Final

INT64_MAX: Final = 2**63 - 1
"""The largest integer either database stores, and the largest id or cursor there can be."""

MAX_JSON_INTEGER: Final = 2**53 - 1
"""The largest integer every JSON parser reads exactly: the bound of an integer no range names."""

MAX_BALANCE_CREDITS: Final = 10**12
"""The most one account can hold ($10 billion); a top-up that would pass it is refused."""

MAX_TOP_UP_CREDITS: Final = 10**10
"""The most one top-up (or an account's starting credits) can add ($100 million)."""

MAX_RATE_LIMIT_PER_HOUR: Final = 10**9
"""The highest per-key limit, requests per hour."""

MAX_PAGE_OFFSET: Final = 10**9
"""The furthest an offset-paged list can skip."""

MAX_CHAT_INTEGER: Final = 2**31 - 1
"""Chat bodies' counts (max_tokens, thinking budget_tokens, n …) when no narrower range is named."""

CHAT_NUMBER_RANGES: Final[dict[str, tuple[float, float]]] = {"temperature": (0.0, 2.0), "top_p": (0.0, 1.0)}
"""Chat bodies' sampling numbers; the upstream may accept less (Anthropic's temperature ends at 1)."""
