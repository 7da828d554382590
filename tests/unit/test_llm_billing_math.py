"""Token estimates, prices in millicredits, and error shapes of each surface."""

from __future__ import annotations

import pytest

from hypereal.catalog.schema import Pricing
from hypereal.errors import (
    InsufficientCredits,
    NotConfigured,
    RateLimited,
    Unauthorized,
    UnknownModel,
    UpstreamTimeout,
)
from hypereal.llm import pricing, tokens
from hypereal.llm.errors import anthropic_error, openai_error
from hypereal.llm.types import ChatRequest, ImagePart, Message, TextPart, Tool, Usage

PRICES = Pricing(input_per_mtok=125, output_per_mtok=1000, cached_input_per_mtok=12.5)


def test_text_tokens_are_four_bytes_each_rounded_up() -> None:
    assert tokens.text_tokens("") == 0
    assert tokens.text_tokens("abcd") == 1
    assert tokens.text_tokens("abcde") == 2
    assert tokens.text_tokens("é" * 4) == 2  # eight bytes of UTF-8


def test_request_tokens_count_system_messages_images_and_tools() -> None:
    request = ChatRequest(
        model="m",
        system=[TextPart("abcd")],
        messages=[Message("user", [TextPart("abcdabcd"), ImagePart("https://x/y.png")])],
        tools=[Tool("t", None, {})],
    )
    expected = tokens.REQUEST_OVERHEAD + 1 + tokens.MESSAGE_OVERHEAD + 2 + tokens.IMAGE_TOKENS
    expected += tokens.TOOL_OVERHEAD + 1 + tokens.text_tokens("{}")
    assert tokens.request_tokens(request) == expected


def test_cost_uses_cached_price_for_cached_tokens() -> None:
    usage = Usage(input_tokens=1_000_000, output_tokens=100_000, cached_input_tokens=400_000)
    # 600k fresh at 125 + 400k cached at 12.5 + 100k out at 1000 credits per million
    assert pricing.token_cost(PRICES, usage) == (75 + 5 + 100) * 1000


def test_cost_is_never_below_the_per_message_minimum() -> None:
    assert pricing.cost(PRICES, Usage(input_tokens=10, output_tokens=1)) == 2000
    assert pricing.cost(PRICES, Usage()) == 2000


def test_fractions_of_a_millicredit_round_up() -> None:
    assert pricing.token_cost(Pricing(input_per_mtok=1, output_per_mtok=1), Usage(input_tokens=1)) == 1


def test_reservation_covers_the_whole_prompt_and_every_allowed_token() -> None:
    assert pricing.reservation(PRICES, 8000, 16000) == 1000 + 16000


@pytest.mark.parametrize(
    ("error", "status", "openai_type", "anthropic_type"),
    [
        (Unauthorized(), 401, "invalid_request_error", "authentication_error"),
        (InsufficientCredits(required=10, available=1), 402, "insufficient_quota", "billing_error"),
        (RateLimited(limit=5, retry_after=3, reset=0), 429, "rate_limit_error", "rate_limit_error"),
        (UnknownModel("nope"), 404, "invalid_request_error", "not_found_error"),
        (NotConfigured("set ANTHROPIC_API_KEY"), 400, "invalid_request_error", "invalid_request_error"),
        (UpstreamTimeout(), 504, "server_error", "timeout_error"),
    ],
)
def test_errors_take_each_surface_shape(error: object, status: int, openai_type: str, anthropic_type: str) -> None:
    assert error.status == status
    body = openai_error(error)  # type: ignore[arg-type]
    assert set(body) == {"error"} and body["error"]["type"] == openai_type
    assert body["error"]["message"] == error.message
    anthropic = anthropic_error(error)  # type: ignore[arg-type]
    assert anthropic == {"type": "error", "error": {"type": anthropic_type, "message": error.message}}


def test_openai_error_names_the_missing_model_code_and_keeps_fields() -> None:
    assert openai_error(UnknownModel("nope"))["error"]["code"] == "model_not_found"
    assert openai_error(UnknownModel("nope"))["error"]["param"] == "model"
    assert openai_error(NotConfigured("set OPENAI_API_KEY"))["error"]["code"] == "model_not_configured"
    assert openai_error(InsufficientCredits(required=10, available=1))["error"]["required"] == 10
