"""`Idempotency-Key` on charging requests: the same key and body give the same answer, once.

The first request with a key claims it in the database before doing anything, so two
concurrent retries cannot both charge; the answer is stored and replayed. A key reused with
another body is refused (409). Server errors release the key, so a retry can succeed.

The claim also names the id of the job the request will create. A process that dies after
creating the job but before storing the answer leaves the claim in progress; the retry that
takes it over later submits under the same id and gets that job back, charged once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable

import orjson
from fastapi import Request
from starlette.responses import Response

from hypereal.errors import Conflict, HyperealError, ValidationFailed
from hypereal.jobs.engine import new_job_id
from hypereal.keys import Principal
from hypereal.services import Services
from hypereal.store import jobs as store

HEADER = "idempotency-key"
MAX_KEY_LENGTH = 200


async def idempotent(
    request: Request, principal: Principal, services: Services, handler: Callable[[str | None], Awaitable[Response]]
) -> Response:
    """`handler(job_id)` once per key and body; `job_id` is the id its job must take (None without a key)."""
    key = request.headers.get(HEADER)
    if key is None:
        return await handler(None)
    if not key.strip() or len(key) > MAX_KEY_LENGTH:
        raise ValidationFailed(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters")
    digest = hashlib.sha256(request.method.encode() + request.url.path.encode() + b"\n" + await request.body())
    fingerprint = digest.hexdigest()
    async with services.db.write() as conn:
        claim = await store.reserve_idempotency(
            conn,
            principal.account_id,
            key,
            fingerprint,
            new_job_id(),
            abandoned_after=services.settings.sync_wait_seconds + 540,
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
    try:
        response = await handler(claim.job_id)
    except HyperealError as error:
        if error.status >= 500:
            await _release(services, principal, key)
        else:
            await _save(services, principal, key, error.status, orjson.dumps(error.body()))
        raise
    except BaseException:
        await _release(services, principal, key)
        raise
    await _save(services, principal, key, response.status_code, bytes(response.body))
    return response


async def _save(services: Services, principal: Principal, key: str, status: int, body: bytes) -> None:
    async with services.db.write() as conn:
        await store.save_idempotent_response(conn, principal.account_id, key, status, body.decode())


async def _release(services: Services, principal: Principal, key: str) -> None:
    async with services.db.write() as conn:
        await store.release_idempotency(conn, principal.account_id, key)
