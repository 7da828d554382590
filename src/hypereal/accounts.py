"""Accounts and their keys: the operations the admin API and the CLI share."""

from __future__ import annotations

import base64
import secrets
import time
from typing import Any

from hypereal.billing import Billing
from hypereal.bounds import MAX_RATE_LIMIT_PER_HOUR
from hypereal.errors import Conflict, NotFound, ValidationFailed
from hypereal.keys import KeyService, Principal, generate_key, hash_key, visible_prefix
from hypereal.store import accounts as store
from hypereal.store.accounts import Account, KeyRecord
from hypereal.store.db import Database

DEVELOPMENT_ACCOUNT = "Development"

MAX_ACTIVE_KEYS = 100
"""Keys an account may hold at once through the self-service API (the operator is not limited)."""


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def new_webhook_secret() -> str:
    """Standard Webhooks secret: `whsec_` + base64 of random bytes (the HMAC key)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class AccountService:
    def __init__(self, db: Database, billing: Billing, keys: KeyService) -> None:
        self.db = db
        self.billing = billing
        self.keys = keys

    async def create_account(self, name: str, credits: int = 0) -> Account:
        name = name.strip()
        if not name:
            raise ValidationFailed("Name is required")
        async with self.db.write() as conn:
            account = await store.insert_account(conn, new_id("acc"), name, new_webhook_secret())
            await self.billing.grant_in(conn, account.id, credits)
            return await store.get_account(conn, account.id)

    async def create_key(
        self, account_id: str, name: str | None = None, rate_limit_per_hour: int | None = None
    ) -> tuple[KeyRecord, str]:
        """A new key and its secret, which is shown this once and stored only as a hash."""
        if rate_limit_per_hour is not None and not 1 <= rate_limit_per_hour <= MAX_RATE_LIMIT_PER_HOUR:
            raise ValidationFailed(
                f"rate_limit_per_hour must be between 1 and {MAX_RATE_LIMIT_PER_HOUR}", field="rate_limit_per_hour"
            )
        raw = generate_key()
        record = _key_record(account_id, name, rate_limit_per_hour, raw)
        async with self.db.write() as conn:
            await store.get_account(conn, account_id)
            await store.insert_key(conn, record)
        return record, raw

    async def set_key_preferences(self, key_id: str, preferences: dict[str, Any] | None) -> KeyRecord:
        """Make `preferences` (checked by the caller) the key's default, in every process."""
        async with self.db.write() as conn:
            record = await store.set_key_preferences(conn, key_id, preferences)
        await self.keys.changed()
        return record

    async def revoke_key(self, key_id: str) -> None:
        async with self.db.write() as conn:
            await store.revoke_key(conn, key_id)
        await self.keys.revoked()

    async def create_own_key(
        self, caller: Principal, name: str | None, rate_limit_per_hour: int | None, default_limit: int
    ) -> tuple[KeyRecord, str]:
        """A key made by a key of the same account. Its hourly limit may not exceed the
        caller's own, so that a user cannot raise the limit the operator set; without one it
        takes the caller's."""
        account_id = caller.account_id
        ceiling = caller.rate_limit_per_hour or default_limit
        if rate_limit_per_hour is not None and rate_limit_per_hour > ceiling:
            raise ValidationFailed(
                f"rate_limit_per_hour cannot exceed this key's own limit of {ceiling} per hour",
                field="rate_limit_per_hour",
                maximum=ceiling,
            )
        raw = generate_key()
        record = _key_record(account_id, name, rate_limit_per_hour or caller.rate_limit_per_hour, raw)
        async with self.db.write() as conn:
            await store.lock_account(conn, account_id)
            if await store.count_active_keys(conn, account_id) >= MAX_ACTIVE_KEYS:
                raise Conflict(
                    f"An account can hold at most {MAX_ACTIVE_KEYS} active keys; revoke one first",
                    limit=MAX_ACTIVE_KEYS,
                )
            await store.insert_key(conn, record)
        return record, raw

    async def revoke_own_key(self, account_id: str, key_id: str, caller_key_id: str, confirm: bool) -> KeyRecord:
        """Revoke a key of the account. The account's last active key, or the calling key
        itself, only with `confirm`: either would end the caller's access."""
        async with self.db.write() as conn:
            await store.lock_account(conn, account_id)
            record = await store.get_key(conn, key_id)
            if record.account_id != account_id:
                raise NotFound("Key not found")
            if record.revoked_at is not None:
                return record
            if not confirm:
                if await store.count_active_keys(conn, account_id) <= 1:
                    raise Conflict(
                        "This is the account's last active key: revoking it locks the account out until the"
                        " operator issues a new one. Repeat the request with confirm=true to revoke it anyway.",
                        confirm_required=True,
                    )
                if key_id == caller_key_id:
                    raise Conflict(
                        "This is the key making the request: it stops working at once. Repeat the request"
                        " with confirm=true to revoke it anyway.",
                        confirm_required=True,
                    )
            record = await store.revoke_key(conn, key_id)
        await self.keys.revoked()
        return record

    async def get(self, account_id: str) -> Account:
        async with self.db.read() as conn:
            return await store.get_account(conn, account_id)

    async def list_accounts(self, limit: int = 100, offset: int = 0) -> list[Account]:
        async with self.db.read() as conn:
            return await store.list_accounts(conn, limit, offset)

    async def development_account(self) -> Account | None:
        """The account `ensure_development_account` made, if it is still the first one."""
        first = await self.list_accounts(limit=1)
        return first[0] if first and first[0].name == DEVELOPMENT_ACCOUNT else None

    async def list_keys(self, account_id: str) -> list[KeyRecord]:
        async with self.db.read() as conn:
            await store.get_account(conn, account_id)
            return await store.list_keys(conn, account_id)

    async def rotate_webhook_secret(self, account_id: str) -> str:
        secret = new_webhook_secret()
        async with self.db.write() as conn:
            await store.set_webhook_secret(conn, account_id, secret)
        return secret

    async def ensure_development_account(self, credits: int) -> str | None:
        """On an empty database: create an account with `credits` and return its key; else
        None. With no credits (0), nothing is created.

        Checked and created in one transaction, serialised across processes, so servers
        started together on an empty database create one account between them.
        """
        if credits <= 0:
            return None
        raw = generate_key()
        async with self.db.write() as conn:
            await store.lock_first_run(conn)
            if await store.count_accounts(conn):
                return None
            account = await store.insert_account(conn, new_id("acc"), DEVELOPMENT_ACCOUNT, new_webhook_secret())
            await self.billing.grant_in(conn, account.id, credits)
            await store.insert_key(conn, _key_record(account.id, "development", None, raw))
        return raw


def _key_record(account_id: str, name: str | None, rate_limit_per_hour: int | None, raw: str) -> KeyRecord:
    return KeyRecord(
        id=new_id("key"),
        account_id=account_id,
        name=(name or "default").strip() or "default",
        prefix=visible_prefix(raw),
        key_hash=hash_key(raw),
        rate_limit_per_hour=rate_limit_per_hour,
        created_at=time.time(),
        last_used_at=None,
        revoked_at=None,
    )
