"""The health of each route: what its recent calls did, and whether to send it more.

Every attempt on a route (a catalog route on one deployment of its provider) reports its
outcome here, in memory, with no I/O and no lock: the counters a request updates are a
few attributes of one object. What an outcome means comes from the error the adapter
raised (`hypereal.providers.failures`):

    answered        the upstream answered, if only to refuse the request (a 400)
    failed          5xx, a lost connection, a 429 without Retry-After
    timed out       no answer in time
    cooled          a 429 with Retry-After: the route is left alone for that long
    refused         our credentials or account (401, 402, 403): left alone for the longest
                    cooling period, and an ERROR line tells the operator what to fix
    neutral         a 404 (another route may have the model), a client that went away

A route that fails `failures_to_open` times in a row opens its circuit: the plans leave it
out for `cooldown` seconds, twice as long each time it opens again without having
recovered, up to `max_cooldown`. Then it is half-open: a single request is let through
as a probe (`PROBE_SECONDS` before another may be); its success closes the circuit, its
failure opens it again for longer.

Between processes (several API processes and workers), only the changes of state travel:
opened, cooled, closed, on the process bus (Redis pub/sub or PostgreSQL NOTIFY), applied by
every other process; with Redis they are also kept in a hash that a process reads when it
starts. Counters and latency stay each process's own. Each process lets its own probe
through, so N processes probe a half-open route at most N times.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from hypereal.bus import Bus
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

log = logging.getLogger(__name__)

State = Literal["closed", "open", "half-open"]
Outcome = Literal["answered", "failed", "timed out", "cooled", "refused", "neutral"]

CHANNEL = "routes.health"
SNAPSHOT_KEY = "routes.health"
PROBE_SECONDS = 30.0
"""How long one probe of a half-open route holds off the next."""
SMOOTHING = 0.2
"""Weight of the newest call in the error rate and the latency (exponential averages)."""
MAX_ROUTES = 4096
"""Routes remembered; chat families make one per model id a client sends."""


@dataclass(slots=True)
class RouteHealth:
    key: str
    requests: int = 0
    errors: int = 0
    timeouts: int = 0
    error_rate: float = 0.0
    """Recent calls that failed or timed out, as a moving share."""
    latency: float | None = None
    """Recent seconds to the first byte of an answer, as a moving average."""
    failures: int = 0
    """Failures in a row."""
    opened: int = 0
    """Times the circuit opened without the route recovering in between."""
    open_until: float = 0.0
    """Unix time until which plans leave the route out."""
    probe_until: float = 0.0
    reason: str = ""
    """Why it is open or cooling."""
    last_error: str = ""

    def state(self, now: float) -> State:
        if self.open_until > now:
            return "open"
        return "half-open" if self.opened else "closed"


class Health:
    """The health of every route this process has used, and the rules above."""

    def __init__(
        self,
        *,
        failures_to_open: int = 3,
        cooldown: float = 5.0,
        max_cooldown: float = 300.0,
        bus: Bus | None = None,
        redis_url: str | None = None,
        redis_prefix: str = "",
    ) -> None:
        self.failures_to_open = failures_to_open
        self.cooldown = cooldown
        self.max_cooldown = max(cooldown, max_cooldown)
        self.routes: dict[str, RouteHealth] = {}
        self._bus = bus
        self._redis: Any = None
        self._redis_url = redis_url
        self._snapshot_key = redis_prefix + SNAPSHOT_KEY
        self._origin = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._sending: set[asyncio.Task[None]] = set()
        if bus is not None:
            bus.subscribe(CHANNEL, self._received)

    # ---- asked while planning ----------------------------------------------------------

    def healthy(self, key: str, now: float) -> bool:
        """Whether the route is closed: no failures that count against it."""
        entry = self.routes.get(key)
        return entry is None or (not entry.opened and entry.open_until <= now)

    def usable(self, key: str, now: float) -> bool:
        """Whether a plan may include the route now; a half-open route is usable by one
        plan at a time, which this call makes the probe."""
        entry = self.routes.get(key)
        if entry is None or (not entry.opened and entry.open_until <= now):
            return True
        if entry.open_until > now or entry.probe_until > now:
            return False
        entry.probe_until = now + PROBE_SECONDS
        return True

    def reopens_at(self, key: str) -> float:
        entry = self.routes.get(key)
        return max(entry.open_until, entry.probe_until) if entry is not None else 0.0

    def latency(self, key: str) -> float | None:
        entry = self.routes.get(key)
        return entry.latency if entry is not None else None

    # ---- told after each attempt -------------------------------------------------------

    def record(self, key: str, error: BaseException | None, seconds: float | None = None) -> Outcome:
        """What an attempt on route `key` did: `error` None for an answer, `seconds` to its first byte."""
        outcome = outcome_of(error)
        if outcome == "neutral":
            entry = self.routes.get(key)
            if entry is not None:
                entry.probe_until = 0.0  # a probe that told nothing: the next request probes
            return outcome
        entry = self._entry(key)
        entry.requests += 1
        failed = outcome in ("failed", "timed out")
        entry.error_rate += SMOOTHING * (failed - entry.error_rate)
        if outcome == "answered":
            if seconds is not None:
                last = entry.latency
                entry.latency = seconds if last is None else last + SMOOTHING * (seconds - last)
            entry.failures = 0
            if entry.open_until and entry.open_until <= time.time():
                if entry.opened:
                    self._close(entry)  # the probe answered
                else:
                    entry.open_until, entry.reason = 0.0, ""  # cooled long enough
            return outcome
        entry.errors += 1
        entry.last_error = _said(error)
        now = time.time()
        if outcome == "cooled":
            assert isinstance(error, UpstreamBusy) and error.retry_after is not None
            self._open(entry, now + error.retry_after, f"rate limited for {error.retry_after:g} s", grow=False)
        elif outcome == "refused":
            self._open(entry, now + self.max_cooldown, "the upstream refused our credentials", grow=False)
            log.error(
                "route %s: the upstream refused this server's credentials or account (%s); left out for %g s: "
                "check the provider's key in the catalog and its environment variable",
                key,
                entry.last_error,
                self.max_cooldown,
            )
        else:
            entry.timeouts += outcome == "timed out"
            entry.failures += 1
            state = entry.state(now)
            if state == "half-open" or (state == "closed" and entry.failures >= self.failures_to_open):
                period = min(self.max_cooldown, self.cooldown * 2**entry.opened)
                self._open(entry, now + period, f"{entry.failures} failures in a row ({entry.last_error})")
        return outcome

    def _entry(self, key: str) -> RouteHealth:
        entry = self.routes.get(key)
        if entry is None:
            while len(self.routes) >= MAX_ROUTES:
                del self.routes[next(iter(self.routes))]  # the oldest
            entry = self.routes[key] = RouteHealth(key)
        return entry

    def _open(self, entry: RouteHealth, until: float, reason: str, *, grow: bool = True) -> None:
        entry.open_until, entry.reason, entry.probe_until = until, reason, 0.0
        entry.opened += grow
        entry.failures = 0
        if grow:
            log.warning("route %s: circuit open for %.1f s: %s", entry.key, until - time.time(), reason)
        self._share(entry)

    def _close(self, entry: RouteHealth) -> None:
        if entry.opened:
            log.warning("route %s: circuit closed, the route answers again", entry.key)
        entry.open_until = entry.probe_until = 0.0
        entry.opened, entry.reason = 0, ""
        self._share(entry)

    # ---- shared between processes ------------------------------------------------------

    async def start(self) -> None:
        """Take the states other processes recorded in Redis before this one started."""
        if not self._redis_url:
            return
        import redis.asyncio as redis

        self._redis = redis.Redis.from_url(self._redis_url)
        try:
            saved = await self._redis.hgetall(self._snapshot_key)
        except Exception as exc:
            log.warning("could not read the routes' health from Redis (%s); starting without it", exc)
            return
        now = time.time()
        for raw in saved.values():
            state = orjson.loads(raw)
            if state.get("open_until", 0) > now or state.get("opened"):
                self._apply(state)  # open, or half-open: not trusted until a probe answers

    def _share(self, entry: RouteHealth) -> None:
        if self._bus is None or not self._bus.crosses_processes:
            return
        state = {
            "key": entry.key,
            "open_until": entry.open_until,
            "opened": entry.opened,
            "reason": entry.reason,
            "origin": self._origin,
        }
        task = asyncio.get_running_loop().create_task(self._send(state), name="route-health")
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, state: dict[str, Any]) -> None:
        data = orjson.dumps(state)
        assert self._bus is not None
        await self._bus.publish(CHANNEL, data.decode())
        if self._redis is not None:
            try:
                key = self._snapshot_key
                await self._redis.hset(key, state["key"], data)
                await self._redis.expire(key, int(self.max_cooldown) + 60)  # none of it matters longer
            except Exception as exc:
                log.warning("could not record route %s's health in Redis: %s", state["key"], exc)

    def _received(self, data: str) -> None:
        if not data:
            return  # the bus reconnected: states sent meanwhile are lost until they change again
        state = orjson.loads(data)
        if state.get("origin") != self._origin:
            self._apply(state)

    def _apply(self, state: dict[str, Any]) -> None:
        entry = self._entry(str(state["key"]))
        entry.open_until = float(state.get("open_until", 0.0))
        entry.opened = int(state.get("opened", 0))
        entry.reason = str(state.get("reason", ""))
        entry.probe_until = 0.0
        if not entry.opened and not entry.open_until:
            entry.failures = 0

    async def close(self) -> None:
        for task in list(self._sending):
            task.cancel()
        if self._redis is not None:
            await self._redis.aclose()

    def __iter__(self) -> Iterator[RouteHealth]:
        return iter(list(self.routes.values()))


def outcome_of(error: BaseException | None) -> Outcome:
    """What an attempt's error says about its route."""
    if error is None:
        return "answered"
    if isinstance(error, ProviderRefused):
        return "refused"
    if isinstance(error, UpstreamNotFound):
        return "neutral"
    if isinstance(error, UpstreamBusy) and error.retry_after:
        return "cooled"
    if isinstance(error, UpstreamTimeout):
        return "timed out"
    if isinstance(error, UpstreamError | Unavailable):
        return "failed"
    if isinstance(error, BadRequest) and "upstream_status" in error.fields:
        return "answered"
    return "neutral"


def _said(error: BaseException | None) -> str:
    message = error.message if isinstance(error, HyperealError) else str(error)
    return message[:200]
