"""Idempotency claims expire unless renewed, so a dead process's claims are taken over within seconds.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("idempotency_keys", sa.Column("claimed_by", sa.String(32), nullable=True))
    op.add_column("idempotency_keys", sa.Column("claim_expires_at", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.drop_column("claim_expires_at")
        batch.drop_column("claimed_by")
