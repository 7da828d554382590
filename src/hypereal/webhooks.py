"""Standard Webhooks signing, the retry policy, and one delivery attempt.

The durable outbox lives in the job engine; this module holds what does not need a
database: secrets, signatures, the retry schedule, how an answer is classified, and a
single signed POST through the outbound guard.

Signature (https://www.standardwebhooks.com): `webhook-signature: v1,<b64>` where `<b64>`
is HMAC-SHA256 of `{webhook-id}.{webhook-timestamp}.{raw body}` keyed with the
base64-decoded part of the `whsec_` secret. During a rotation every current secret signs
and the signatures are space-separated; receivers accept any one that matches. The
`webhook-id` stays the same across retries of one event (receivers de-duplicate on it);
the timestamp is the attempt's, since receivers refuse stale ones.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import random
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from secrets import token_bytes, token_urlsafe
from typing import Literal

from hypereal.netguard import OutboundGuard

Outcome = Literal["delivered", "retry", "gone"]

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
MIN_SECRET_BYTES = 16
# Seconds to wait before each retry, after the immediate first attempt:
# 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h.
DEFAULT_SCHEDULE: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
JITTER = 0.10
MAX_DELAY = 7 * 86400.0
MAX_SCHEDULE_LENGTH = 50
MAX_RETRY_AFTER = 86400.0
_UNITS = {"": 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DELAY = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?", re.IGNORECASE)


# -- secrets and signatures -----------------------------------------------------------------


def new_secret() -> str:
    """A fresh signing secret: `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(token_bytes(SECRET_BYTES)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The HMAC key inside a `whsec_` secret; ValueError when it is not one."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("webhook secret is not base64 after the whsec_ prefix") from exc
    if len(key) < MIN_SECRET_BYTES:
        raise ValueError(f"webhook secret is too short ({len(key)} bytes, at least {MIN_SECRET_BYTES})")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256>` over `{msg_id}.{timestamp}.{body}`."""
    signed = f"{msg_id}.{int(timestamp)}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def headers_for(secret_or_secrets: str | Sequence[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers; several secrets give space-separated signatures."""
    secrets = [secret_or_secrets] if isinstance(secret_or_secrets, str) else list(secret_or_secrets)
    if not secrets:
        raise ValueError("at least one webhook secret is needed to sign")
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp)),
        "webhook-signature": " ".join(sign(secret, msg_id, timestamp, body) for secret in secrets),
    }


def new_message_id() -> str:
    """A unique `webhook-id`: keep it for every retry of the same event."""
    return "msg_" + token_urlsafe(18)


# -- retry policy ---------------------------------------------------------------------------


def parse_schedule(text: str) -> tuple[float, ...]:
    """Seconds to wait before each retry, e.g. "5,300,1800" or "5s,5m,30m,2h"; "" means no retries."""
    if not text.strip():
        return ()
    items = text.split(",")
    if len(items) > MAX_SCHEDULE_LENGTH:
        raise ValueError(f"Invalid webhook retry schedule: more than {MAX_SCHEDULE_LENGTH} retries")
    delays: list[float] = []
    for item in items:
        match = _DELAY.fullmatch(item.strip())
        if match is None:
            raise ValueError(
                f"Invalid webhook retry schedule {text!r}: {item.strip()!r} is not a delay "
                "(seconds, or a number with ms/s/m/h/d, e.g. 5,300,1800 or 5s,5m,30m)"
            )
        delay = float(match.group(1)) * _UNITS[(match.group(2) or "").lower()]
        if delay > MAX_DELAY:
            raise ValueError(f"Invalid webhook retry schedule {text!r}: {item.strip()!r} is over 7 days")
        delays.append(delay)
    return tuple(delays)


def parse_retry_after(value: str | float | None, now: datetime | None = None) -> float | None:
    """Seconds asked for by a Retry-After header (delta-seconds or HTTP date); None if unusable."""
    if value is None:
        return None
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip()
        if text.isdigit():
            seconds = float(text)
        else:
            try:
                when = parsedate_to_datetime(text)
            except (TypeError, ValueError):
                return None
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def next_delay(
    attempt_number: int,
    schedule: Sequence[float] = DEFAULT_SCHEDULE,
    retry_after_header: str | float | None = None,
    rng: random.Random | None = None,
) -> float | None:
    """Seconds to wait after attempt `attempt_number` (1 = the first) failed; None = give up.

    The scheduled delay gets ±10% jitter so that retries of many events spread out. A
    Retry-After (pass `Attempt.retry_after`, only set on 429 and 503) wins when it is longer.
    """
    if attempt_number < 1:
        raise ValueError("attempt_number counts attempts made and starts at 1")
    if attempt_number > len(schedule):
        return None
    jitter = (rng or random).uniform(-JITTER, JITTER)
    delay = schedule[attempt_number - 1] * (1.0 + jitter)
    asked = parse_retry_after(retry_after_header)
    return max(delay, asked) if asked is not None else delay


def classify(status: int | None) -> Outcome:
    """Only 2xx delivers; 410 stops retries for that URL; anything else (3xx too) is retried."""
    if status is not None and 200 <= status < 300:
        return "delivered"
    if status == 410:
        return "gone"
    return "retry"


# -- one attempt ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attempt:
    status: int | None
    latency_ms: float
    outcome: Outcome
    retry_after: float | None = None
    """Seconds the receiver asked for with Retry-After on 429/503."""
    error: str | None = None
    timestamp: int = 0
    """The `webhook-timestamp` this attempt was signed with."""
    response: str = ""
    """The start of the receiver's answer, for the delivery log."""


async def deliver(
    guard: OutboundGuard,
    url: str,
    body: bytes,
    msg_id: str,
    secrets: str | Sequence[str],
    time_limit: float = 15.0,
    *,
    timestamp: int | None = None,
) -> Attempt:
    """POST one signed event to `url` through the guard; never raises for HTTP or network failures.

    A destination the guard refuses is "gone": retrying the same URL cannot succeed.
    """
    signed_at = int(time.time()) if timestamp is None else int(timestamp)
    headers = headers_for(secrets, msg_id, signed_at, body)
    headers["Content-Type"] = "application/json"
    result = await guard.post(url, body, headers, time_limit)
    if result.status is None:
        return Attempt(
            None, result.elapsed_ms, "gone" if result.blocked else "retry",
            error=result.error, timestamp=signed_at,
        )  # fmt: skip
    status = result.status
    outcome = classify(status)
    retry_after = parse_retry_after(result.headers.get("Retry-After")) if status in (429, 503) else None
    error: str | None = None
    if 300 <= status < 400:
        location = result.headers.get("Location", "")
        error = f"HTTP {status}: redirect{' to ' + location[:200] if location else ''} not followed"
    elif outcome == "gone":
        error = "HTTP 410: the receiver asked to stop deliveries to this URL"
    elif outcome == "retry":
        error = f"HTTP {status}"
    return Attempt(
        status,
        result.elapsed_ms,
        outcome,
        retry_after,
        error,
        timestamp=signed_at,
        response=result.body_excerpt,
    )
