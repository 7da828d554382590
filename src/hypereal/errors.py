"""The one exception tree of hypereal. Every class carries its HTTP status.

    HyperealError (500)
    ├── BadRequest (400)
    │   ├── ValidationFailed (400)      a field of the request is missing or wrong
    │   ├── InputFetchFailed (400)      an input URL could not be fetched or decoded
    │   └── UpstreamNotFound (400)      an upstream has no such model or resource
    ├── NotConfigured (400)             a known model none of whose providers is configured here
    │   └── ProviderRefused (400)       an upstream refused this server's credentials or account
    ├── Unauthorized (401)
    ├── InsufficientCredits (402)
    ├── Forbidden (403)
    ├── NotFound (404)
    │   └── UnknownModel (404)          no model, alias or family has this id; names the closest
    ├── Conflict (409)
    ├── PayloadTooLarge (413)
    ├── RateLimited (429)
    ├── UpstreamError (502)             an upstream provider failed
    │   └── UpstreamTimeout (504)
    └── Unavailable (503)               a service or an upstream is down or busy; try again
        └── UpstreamBusy (503)          an upstream is overloaded or rate limits us; Retry-After

Rendered as `{"error": message, **fields}`; `code` is the machine-readable name OpenAI-shaped
answers carry. Foreign errors are translated once, at the edge where they occur, to the most
specific class here, with `raise ... from`.

`NotConfigured` is 400, not 503: clients retry 5xx (and 408, 409, 429), so a server without
the provider's key would have them retrying for minutes what only the operator can fix. 400
is also the one status Codex CLI does not retry (every other 4xx it retries as a dropped
stream), and Claude Code shows its message at once. An upstream refusing our key is the
same kind of problem (`ProviderRefused`). What each upstream status means is decided in one
table, `hypereal.providers.failures`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar


class HyperealError(Exception):
    status: ClassVar[int] = 500
    default_message: ClassVar[str] = "Internal server error"
    code: ClassVar[str | None] = None

    def __init__(self, message: str | None = None, **fields: Any) -> None:
        self.message = message or self.default_message
        self.fields = fields
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        return {"error": self.message, **self.fields}

    def headers(self) -> dict[str, str]:
        return {}


class BadRequest(HyperealError):
    status = 400
    default_message = "Bad request"


class ValidationFailed(BadRequest):
    pass


class InputFetchFailed(BadRequest):
    pass


class NotConfigured(HyperealError):
    status = 400
    default_message = "No provider is configured for this model"
    code = "model_not_configured"


class ProviderRefused(NotConfigured):
    default_message = "The upstream provider refused this server's credentials; the operator has been told"
    code = "provider_refused"


class Unauthorized(HyperealError):
    status = 401
    default_message = "Unauthorized. Please provide a valid API key (Authorization: Bearer ck_... or x-api-key)."


class InsufficientCredits(HyperealError):
    status = 402
    default_message = "Insufficient credits"

    def __init__(self, required: int | float, available: int | float) -> None:
        super().__init__(None, required=required, available=available)


class Forbidden(HyperealError):
    status = 403
    default_message = "Forbidden"


class NotFound(HyperealError):
    status = 404
    default_message = "Not found"


class UnknownModel(NotFound):
    code = "model_not_found"

    def __init__(self, model: str, category: str | None = None, closest: Sequence[str] = ()) -> None:
        where = f" for {category}" if category else ""
        guess = f" Did you mean {_either(closest)}?" if closest else ""
        hint = f"GET /api/v1/models?category={category}" if category else "GET /api/v1/models"
        super().__init__(
            f"Unknown model '{model}'{where}.{guess} See {hint} for the available models.", model=model, field="model"
        )


def _either(names: Sequence[str]) -> str:
    quoted = [f"'{name}'" for name in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


class UpstreamNotFound(BadRequest):
    default_message = "The upstream provider has no such model"


class Conflict(HyperealError):
    status = 409
    default_message = "Conflict"


class PayloadTooLarge(HyperealError):
    status = 413
    default_message = "Request body too large"


class RateLimited(HyperealError):
    status = 429
    default_message = "Rate limit exceeded"

    def __init__(self, limit: int, retry_after: int, reset: int) -> None:
        super().__init__(None, limit=limit, retry_after=retry_after)
        self.retry_after = retry_after
        self.limit = limit
        self.reset = reset

    def headers(self) -> dict[str, str]:
        return {
            "Retry-After": str(self.retry_after),
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(self.reset),
        }


class UpstreamError(HyperealError):
    status = 502
    default_message = "Upstream provider error"


class UpstreamTimeout(UpstreamError):
    status = 504
    default_message = "Upstream provider timed out"


class Unavailable(HyperealError):
    status = 503
    default_message = "Service unavailable"


class UpstreamBusy(Unavailable):
    default_message = "The upstream provider is busy; retry later"

    def __init__(self, message: str | None = None, *, retry_after: float | None = None, **fields: Any) -> None:
        super().__init__(message, **fields)
        self.retry_after = retry_after
        """Seconds the upstream asked us to wait, when it said."""

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, round(self.retry_after)))} if self.retry_after else {}
