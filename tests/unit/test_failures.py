"""The one table of upstream failures, and how each chat surface renders them."""

from __future__ import annotations

import pytest

from hypereal.errors import (
    BadRequest,
    HyperealError,
    NotConfigured,
    ProviderRefused,
    UpstreamBusy,
    UpstreamError,
    UpstreamNotFound,
    UpstreamTimeout,
)
from hypereal.llm.errors import anthropic_error, openai_error
from hypereal.providers import failures


@pytest.mark.parametrize(
    ("status", "error", "ours", "fails_over"),
    [
        (400, BadRequest, 400, False),
        (422, BadRequest, 400, False),
        (409, BadRequest, 400, False),
        (404, UpstreamNotFound, 400, True),
        (401, ProviderRefused, 400, True),
        (403, ProviderRefused, 400, True),
        (402, ProviderRefused, 400, True),
        (408, UpstreamTimeout, 504, True),
        (429, UpstreamBusy, 503, True),
        (500, UpstreamError, 502, True),
        (502, UpstreamError, 502, True),
        (503, UpstreamBusy, 503, True),
        (504, UpstreamTimeout, 504, True),
        (529, UpstreamBusy, 503, True),
    ],
)
def test_each_status_means_one_thing(status: int, error: type[HyperealError], ours: int, fails_over: bool) -> None:
    raised = failures.status_error("acme", status, '{"error": "no"}')
    assert type(raised) is error
    assert raised.status == ours
    assert isinstance(raised, failures.FAILS_OVER) is fails_over
    assert raised.fields["upstream_status"] == status


def test_refused_credentials_are_not_configured_and_not_retried_by_clients() -> None:
    refused = failures.status_error("acme", 401, "bad key")
    assert isinstance(refused, NotConfigured)
    assert "bad key" not in refused.message, "the upstream's words about our key are for the operator's log"
    assert openai_error(refused)["error"]["code"] == "provider_refused"
    assert anthropic_error(refused)["error"]["type"] == "invalid_request_error"


def test_rate_limit_keeps_retry_after_and_renders_as_overload() -> None:
    busy = failures.status_error("acme", 429, "slow down", retry_after="7")
    assert isinstance(busy, UpstreamBusy)
    assert busy.retry_after == 7 and busy.headers() == {"Retry-After": "7"}
    assert failures.status_error("acme", 429, "", retry_after="soon").retry_after is None  # type: ignore[attr-defined]
    assert anthropic_error(busy)["error"]["type"] == "overloaded_error"
    assert openai_error(busy)["error"]["type"] == "server_error"


def test_network_failures() -> None:
    assert type(failures.timed_out("acme")) is UpstreamTimeout
    assert type(failures.unreachable("acme", "refused")) is UpstreamError
    assert "acme" in failures.unreachable("acme").message
