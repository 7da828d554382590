"""What an upstream's failure means: one table for every adapter, chat and media alike.

    upstream says                  we raise                        routing (`hypereal.routing`)
    connection refused, reset, DNS UpstreamError (502)             next route; the route failed
    connect or read timeout, 408   UpstreamTimeout (504)           next route; the route timed out
    504                            UpstreamTimeout (504)           next route; the route timed out
    500, 502, other 5xx            UpstreamError (502)             next route; the route failed
    503, 529                       UpstreamBusy (503)              next route; the route failed
    429                            UpstreamBusy (503, Retry-After) next route; cooled for Retry-After
    401, 403, 402                  ProviderRefused (400)           next route; cooled long, ERROR log
    404                            UpstreamNotFound (400)          next route; the route is not blamed
    400, 409, 413, 422, other 4xx  BadRequest (400)                the answer: the request itself is wrong

A 401 or 403 means our key is wrong and a 402 that our account cannot pay: the operator's
problem, which no client retry fixes, hence a 400 (`NotConfigured`'s reasoning in
`hypereal.errors`). A 404 is this route not having the model (or the resource) asked for:
another route may, and a request-specific 404 says nothing about the route's health. Each
surface renders these errors in its own shape (`hypereal.llm.errors`); polls of a media job
that meet a passing failure ask again later instead (`hypereal.providers.upstream.RetryLater`).
"""

from __future__ import annotations

from hypereal.errors import (
    BadRequest,
    HyperealError,
    ProviderRefused,
    Unavailable,
    UpstreamBusy,
    UpstreamError,
    UpstreamNotFound,
    UpstreamTimeout,
)
from hypereal.webhooks import parse_retry_after

MAX_MESSAGE = 500

FAILS_OVER = (UpstreamError, Unavailable, ProviderRefused, UpstreamNotFound)
"""Failures after which the next route of the plan may still answer the same request."""


def status_error(provider: str, status: int, message: str, retry_after: str | None = None) -> HyperealError:
    """Our error for an upstream's error status; `message` is the upstream's own words."""
    detail = message.strip()[:MAX_MESSAGE] or f"HTTP {status}"
    if status in (401, 403):
        return ProviderRefused(upstream_status=status)
    if status == 402:
        return ProviderRefused("The upstream provider refused to bill this server's account", upstream_status=status)
    if status == 404:
        return UpstreamNotFound(f"{provider} has no such model or resource: {detail}", upstream_status=status)
    if status in (408, 504):
        return UpstreamTimeout(f"{provider} timed out: {detail}", upstream_status=status)
    if status == 429:
        return UpstreamBusy(
            f"{provider} is rate limiting requests; retry later ({detail})",
            retry_after=parse_retry_after(retry_after) or None,
            upstream_status=status,
        )
    if status in (503, 529):
        return UpstreamBusy(f"{provider} is overloaded; retry later ({detail})", upstream_status=status)
    if status >= 500:
        return UpstreamError(f"{provider} failed with status {status}: {detail}", upstream_status=status)
    return BadRequest(f"{provider} rejected the request: {detail}", upstream_status=status)


def timed_out(provider: str, detail: str = "") -> UpstreamTimeout:
    return UpstreamTimeout(f"{provider} did not answer in time" + (f" ({detail})" if detail else ""))


def unreachable(provider: str, detail: str = "") -> UpstreamError:
    return UpstreamError(f"Could not reach {provider}" + (f": {detail}" if detail else ""))
