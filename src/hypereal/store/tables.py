"""The schema, declared once. Migrations must produce exactly this (a test compares them).

Times are unix seconds as floats: the same comparisons work on SQLite and PostgreSQL and
leases are plain arithmetic. Money is integer millicredits (1 credit = 1000).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

accounts = Table(
    "accounts",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("balance", BigInteger, nullable=False),
    Column("webhook_secret", String(100), nullable=False),
    Column("previous_webhook_secret", String(100), nullable=True),
    Column("created_at", Float, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("account_id", String(40), ForeignKey("accounts.id"), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("prefix", String(20), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("rate_limit_per_hour", Integer, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("last_used_at", Float, nullable=True),
    Column("revoked_at", Float, nullable=True),
    # Columns added by later migrations come last, where the migration put them.
    Column("provider_preferences", JSON, nullable=True),
)

ledger = Table(
    "ledger",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", String(40), ForeignKey("accounts.id"), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("balance_after", BigInteger, nullable=False),
    Column("reference", String(120), nullable=False),
    Column("note", String(300), nullable=True),
    Column("created_at", Float, nullable=False),
    # What a charge paid for; its settlement and refund carry the same (store/ledger.py).
    Column("key_id", String(40), nullable=True),
    Column("model", String(120), nullable=True),
    Column("category", String(20), nullable=True),
    # Idempotency: one charge, one settlement and one refund per reference.
    UniqueConstraint("account_id", "reference", "kind"),
    Index("ix_ledger_account_id_id", "account_id", "id"),
    # Usage sums over a time range read this index alone (a covering index): no table rows.
    Index("ix_ledger_usage", "account_id", "created_at", "kind", "category", "model", "key_id", "amount"),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("account_id", String(40), ForeignKey("accounts.id"), nullable=False),
    Column("key_id", String(40), nullable=True),
    Column("model", String(120), nullable=False),
    Column("category", String(20), nullable=False),
    Column("type", String(20), nullable=False),
    Column("mode", String(10), nullable=False),
    Column("params", JSON, nullable=False),
    Column("status", String(20), nullable=False),
    Column("stage", String(20), nullable=False),
    Column("credits", BigInteger, nullable=False),
    Column("provider", String(60), nullable=True),
    Column("upstream_model", String(200), nullable=True),
    Column("handle", JSON, nullable=True),
    Column("outputs", JSON, nullable=True),
    Column("extra", JSON, nullable=True),
    Column("error", Text, nullable=True),
    Column("webhook_url", Text, nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("lease_owner", String(60), nullable=True),
    Column("lease_expires_at", Float, nullable=True),
    Column("next_poll_at", Float, nullable=True),
    Column("deadline_at", Float, nullable=False),
    Column("cancel_requested", Boolean, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("completed_at", Float, nullable=True),
    Index("ix_jobs_account_id_created_at", "account_id", "created_at"),
    Index("ix_jobs_status_next_poll_at", "status", "next_poll_at"),
    Index("ix_jobs_created_at", "created_at"),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(40), ForeignKey("jobs.id"), nullable=False, index=True),
    Column("account_id", String(40), nullable=False),
    Column("message_id", String(60), nullable=False),
    Column("url", Text, nullable=False),
    Column("payload", Text, nullable=False),
    Column("status", String(20), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", Float, nullable=True),
    Column("lease_expires_at", Float, nullable=True),
    Column("created_at", Float, nullable=False),
    Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
    Index("ix_webhook_deliveries_account_id_id", "account_id", "id"),
)

delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("delivery_id", Integer, ForeignKey("webhook_deliveries.id"), nullable=False, index=True),
    Column("attempt", Integer, nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("outcome", String(20), nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("error", Text, nullable=True),
    Column("created_at", Float, nullable=False),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("account_id", String(40), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("response", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    # The job the request creates, chosen with the claim: a retry that takes over a claim its
    # process abandoned finds that job, if it was made, instead of making and charging another.
    Column("job_id", String(40), nullable=True),
    # Who holds a claim in progress, and until when unless renewed: a claim left to lapse
    # belonged to a process that died, and a retry takes it over.
    Column("claimed_by", String(32), nullable=True),
    Column("claim_expires_at", Float, nullable=True),
)

stored_responses = Table(
    "stored_responses",
    metadata,
    Column("id", String(60), primary_key=True),
    Column("account_id", String(40), ForeignKey("accounts.id"), nullable=False, index=True),
    Column("body", Text, nullable=False),
    Column("created_at", Float, nullable=False, index=True),
)

console_sessions = Table(
    "console_sessions",
    metadata,
    # The SHA-256 of the cookie's token: the database never holds a usable session.
    Column("id", String(64), primary_key=True),
    Column("role", String(10), nullable=False),
    Column("account_id", String(40), nullable=True),
    Column("key_id", String(40), nullable=True, index=True),
    # Operator sessions remember which admin key opened them: another key in the settings ends them.
    Column("admin_key_hash", String(64), nullable=True),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False, index=True),
)
