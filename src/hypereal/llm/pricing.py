"""What a chat call costs, in millicredits (1 credit = 1000 millicredits = $0.01).

Catalog prices are credits per million tokens, so a token costs `price / 1000`
millicredits. Cached input is billed at the cached price where the catalog has one and
the upstream reported cache reads. No message costs less than the documented minimum.
"""

from __future__ import annotations

import math

from hypereal.catalog.schema import Pricing
from hypereal.llm.types import Usage
from hypereal.units import MILLI

MINIMUM_CREDITS_PER_MESSAGE = 2
MINIMUM_MILLI = MINIMUM_CREDITS_PER_MESSAGE * MILLI
TOKENS_PER_PRICE_UNIT = 1_000_000


def token_cost(pricing: Pricing, usage: Usage) -> int:
    """Millicredits for `usage` at `pricing`, before the minimum."""
    cached = min(max(usage.cached_input_tokens, 0), max(usage.input_tokens, 0))
    fresh = max(usage.input_tokens, 0) - cached
    cached_price = pricing.input_per_mtok if pricing.cached_input_per_mtok is None else pricing.cached_input_per_mtok
    credits_times_million = (
        fresh * pricing.input_per_mtok + cached * cached_price + max(usage.output_tokens, 0) * pricing.output_per_mtok
    )
    return math.ceil(credits_times_million * MILLI / TOKENS_PER_PRICE_UNIT - 1e-9)


def cost(pricing: Pricing, usage: Usage) -> int:
    """Millicredits to bill for one message: the token cost, never below the minimum."""
    return max(MINIMUM_MILLI, token_cost(pricing, usage))


def reservation(
    pricing: Pricing, input_tokens: int, max_output_tokens: int, *, choices: int = 1, prompts: int = 1
) -> int:
    """The most a call can cost: every allowed output token of each of its `choices`, and its
    whole prompt uncached once per upstream call that reads it (`prompts`: one when the
    upstream makes the choices itself, one per choice when each is a call of its own)."""
    return cost(pricing, Usage(input_tokens=input_tokens * prompts, output_tokens=max_output_tokens * choices))
