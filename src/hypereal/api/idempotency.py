"""`Idempotency-Key` on charging requests: the same key and body give the same answer, once.

The first request with a key claims it in the database before doing anything, so two
concurrent retries cannot both charge; the answer is stored and replayed. A key reused with
another body is refused (409). Server errors release the key, so a retry can succeed.

A claim lasts `CLAIM_SECONDS` and is renewed while its request runs, so the claims of a
process that dies mid-request lapse within seconds; until then a retry is told the request
is still in progress (409), after that it takes the claim over. The claim also names the id
of the job the request will create: the retry that takes it over submits under the same id
and gets the job the dead process made, if it made one, charged once; else it makes it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable

import orjson
from fastapi import Request
from starlette.responses import Response

from hypereal.errors import Conflict, HyperealError, ValidationFailed
from hypereal.jobs.engine import new_job_id
from hypereal.keys import Principal
from hypereal.services import Services
from hypereal.store import idempotency as store

HEADER = "idempotency-key"
MAX_KEY_LENGTH = 200
CLAIM_SECONDS = 10.0
"""How long a claim holds unless renewed: a dead process's claims are taken over after this."""
RENEW_SECONDS = CLAIM_SECONDS / 3
log = logging.getLogger(__name__)


async def idempotent(
    request: Request, principal: Principal, services: Services, handler: Callable[[str | None], Awaitable[Response]]
) -> Response:
    """`handler(job_id)` once per key and body; `job_id` is the id its job must take (None without a key)."""
    key = request.headers.get(HEADER)
    if key is None:
        return await handler(None)
    if not key.strip() or len(key) > MAX_KEY_LENGTH:
        raise ValidationFailed(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters")
    fingerprint = request_fingerprint(request.method, request.url.path, await request.body())
    claimant = secrets.token_hex(8)
    async with services.db.write() as conn:
        claim = await store.reserve_idempotency(
            conn, principal.account_id, key, fingerprint, new_job_id(), claimant, CLAIM_SECONDS
        )
    if not claim.claimed:
        if claim.request_hash != fingerprint:
            raise Conflict("This Idempotency-Key was already used with a different request")
        if claim.status_code is None or claim.response is None:
            raise Conflict("A request with this Idempotency-Key is still in progress")
        return Response(
            claim.response,
            status_code=claim.status_code,
            media_type="application/json",
            headers={"Idempotent-Replayed": "true"},
        )
    held = _Renewal(services, principal.account_id, key, claimant)
    try:
        response = await handler(claim.job_id)
    except HyperealError as error:
        if error.status >= 500:
            await _release(held)
        else:
            await _save(held, error.status, orjson.dumps(error.body()))
        raise
    except BaseException:
        await _release(held)
        raise
    finally:
        held.stop()
    await _save(held, response.status_code, bytes(response.body))
    return response


def request_fingerprint(method: str, path: str, body: bytes) -> str:
    """What makes two requests the same request: method, path and body bytes."""
    return hashlib.sha256(method.encode() + path.encode() + b"\n" + body).hexdigest()


class _Renewal:
    """Renews a claim every `RENEW_SECONDS` until stopped or lost.

    A timer, not a task, until the first renewal is due: most requests end long before, and
    then cost one timer set and cancelled.
    """

    def __init__(self, services: Services, account_id: str, key: str, claimant: str) -> None:
        self.services = services
        self.account_id = account_id
        self.key = key
        self.claimant = claimant
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = self._loop.call_later(RENEW_SECONDS, self._due)
        self._renewing: asyncio.Task[None] | None = None
        self._stopped = False

    def _due(self) -> None:
        self._timer = None
        self._renewing = self._loop.create_task(self._renew(), name="idempotency-claim-renewal")

    async def _renew(self) -> None:
        try:
            async with self.services.db.write() as conn:
                held = await store.renew_idempotency(
                    conn, self.account_id, self.key, self.claimant, time.time() + CLAIM_SECONDS
                )
        except Exception:
            # The claim outlasts a missed renewal or two; the next one tries again.
            log.exception("renewing an Idempotency-Key claim failed")
            held = True
        if held and not self._stopped:
            self._timer = self._loop.call_later(RENEW_SECONDS, self._due)

    def stop(self) -> None:
        """No more renewals; one under way finishes (cancelling it would cut a transaction short)."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


async def _save(held: _Renewal, status: int, body: bytes) -> None:
    async with held.services.db.write() as conn:
        await store.save_idempotent_response(conn, held.account_id, held.key, held.claimant, status, body.decode())


async def _release(held: _Renewal) -> None:
    async with held.services.db.write() as conn:
        await store.release_idempotency(conn, held.account_id, held.key, held.claimant)
