"""Sessions of the web console: server-side, revocable, bound to the key that opened them.

- Signing in takes an API key (a user session, acting as that key on its account) or the
  admin key (an operator session). The browser keeps only a random token in an HttpOnly,
  SameSite=Lax cookie, Secure when the console is served over https; the key itself is never
  sent back. The database keeps the token's SHA-256, so its rows cannot be replayed.
- A user session ends when its key is revoked (the revocation deletes its sessions, and each
  lookup checks the key as well), when the user signs out, or `SESSION_SECONDS` after it
  began. An operator session also ends when HYPEREAL_ADMIN_KEY changes.
- Every request that changes something with the cookie carries the session's CSRF token: the
  form field `csrf`, or the `X-CSRF-Token` header from scripts (synchronizer token pattern).
  The sign-in form, which has no session yet, uses a double-submit cookie instead.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.requests import HTTPConnection

from hypereal.errors import Forbidden, Unauthorized
from hypereal.keys import KEY_PREFIX, Principal
from hypereal.store import sessions as store
from hypereal.store.sessions import OPERATOR, USER, SessionRecord

if TYPE_CHECKING:
    from hypereal.services import Services

COOKIE = "hypereal_session"
SIGN_IN_COOKIE = "hypereal_sign_in"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
SESSION_SECONDS = 12 * 3600
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    id: str
    role: str
    csrf_token: str
    expires_at: float
    principal: Principal | None
    """The key a user session acts as; None for an operator."""

    @property
    def operator(self) -> bool:
        return self.role == OPERATOR


def same_secret(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


class ConsoleSessions:
    def __init__(self, services: Services) -> None:
        self.services = services

    async def sign_in(self, presented: str) -> tuple[str, ConsoleSession]:
        """A new session for an API key or the admin key, and the token for its cookie."""
        presented = presented.strip()
        principal: Principal | None = None
        admin_hash: str | None = None
        if presented.startswith(KEY_PREFIX):
            principal = await self.services.keys.authenticate(presented)
        elif self._admin_key() is not None and same_secret(presented, self._admin_key() or ""):
            admin_hash = digest(presented)
        else:
            raise Unauthorized("That is neither an API key of this server nor its admin key")
        token = secrets.token_urlsafe(32)
        now = time.time()
        record = SessionRecord(
            id=digest(token),
            role=USER if principal else OPERATOR,
            account_id=principal.account_id if principal else None,
            key_id=principal.key_id if principal else None,
            admin_key_hash=admin_hash,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            expires_at=now + SESSION_SECONDS,
        )
        async with self.services.db.write() as conn:
            await store.end_expired(conn)
            await store.insert(conn, record)
        return token, ConsoleSession(record.id, record.role, record.csrf_token, record.expires_at, principal)

    async def find(self, token: str | None) -> ConsoleSession | None:
        """The live session of a cookie's token, or None (expired, signed out, key revoked)."""
        if not token or len(token) > 100:
            return None
        async with self.services.db.read() as conn:
            record = await store.live(conn, digest(token))
        if record is None or record.key_revoked:
            return None
        principal = None
        if record.role == USER:
            if record.key_id is None or record.account_id is None:
                return None
            principal = Principal(record.key_id, record.account_id, record.rate_limit_per_hour)
        else:
            admin_key = self._admin_key()
            if admin_key is None or not same_secret(record.admin_key_hash, digest(admin_key)):
                return None
        return ConsoleSession(record.id, record.role, record.csrf_token, record.expires_at, principal)

    async def end(self, session: ConsoleSession) -> None:
        async with self.services.db.write() as conn:
            await store.end(conn, session.id)

    def _admin_key(self) -> str | None:
        secret = self.services.settings.admin_key
        return secret.get_secret_value() if secret is not None else None


def console_sessions(services: Services) -> ConsoleSessions:
    """The process's console sessions, made on first use."""
    found = services.extensions.get("console-sessions")
    if found is None:
        found = services.extensions["console-sessions"] = ConsoleSessions(services)
    assert isinstance(found, ConsoleSessions)
    return found


async def session_of(connection: HTTPConnection) -> ConsoleSession | None:
    services: Services = connection.app.state.services
    return await console_sessions(services).find(connection.cookies.get(COOKIE))


def check_csrf(session: ConsoleSession, presented: str | None) -> None:
    if not same_secret(presented, session.csrf_token):
        raise Forbidden("This form is out of date or did not come from the console; reload the page and try again")


async def cookie_principal(connection: HTTPConnection, method: str) -> Principal:
    """For API routes called without a key: the key of the console session in the cookie.

    A state-changing method must carry the session's CSRF token in `X-CSRF-Token`, which a
    page of another site cannot set on a request to this one.
    """
    session = await session_of(connection)
    if session is None or session.principal is None:
        raise Unauthorized()
    if method not in SAFE_METHODS:
        check_csrf(session, connection.headers.get(CSRF_HEADER))
    return session.principal
