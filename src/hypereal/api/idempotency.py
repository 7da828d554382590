"""`Idempotency-Key` on charging requests: the same key and body give the same answer, once.

The first request with a key claims it in the database before doing anything, so two
concurrent retries cannot both charge; the answer is stored and replayed. A key reused with
another body is refused (409). Server errors release the key, so a retry can succeed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable

import orjson
from fastapi import Request
from starlette.responses import Response

from hypereal.errors import Conflict, HyperealError, ValidationFailed
from hypereal.keys import Principal
from hypereal.services import Services
from hypereal.store import jobs as store

HEADER = "idempotency-key"
MAX_KEY_LENGTH = 200


async def idempotent(
    request: Request, principal: Principal, services: Services, handler: Callable[[], Awaitable[Response]]
) -> Response:
    key = request.headers.get(HEADER)
    if key is None:
        return await handler()
    if not key.strip() or len(key) > MAX_KEY_LENGTH:
        raise ValidationFailed(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters")
    digest = hashlib.sha256(request.method.encode() + request.url.path.encode() + b"\n" + await request.body())
    fingerprint = digest.hexdigest()
    async with services.db.write() as conn:
        existing = await store.reserve_idempotency(
            conn, principal.account_id, key, fingerprint, abandoned_after=services.settings.sync_wait_seconds + 540
        )
    if existing is not None:
        stored_hash, status, body = existing
        if stored_hash != fingerprint:
            raise Conflict("This Idempotency-Key was already used with a different request")
        if status is None or body is None:
            raise Conflict("A request with this Idempotency-Key is still in progress")
        return Response(
            body, status_code=status, media_type="application/json", headers={"Idempotent-Replayed": "true"}
        )
    try:
        response = await handler()
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
