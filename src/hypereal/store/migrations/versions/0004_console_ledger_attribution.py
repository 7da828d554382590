"""Console: ledger rows say which key, model and category they paid for; a covering usage index.

Rows written before this revision are attributed where the database still knows: a job's
charge, settlement and refund by the job (its reference), a chat call by its charge note
(`chat <model>`). Chat keys were never recorded and stay unknown.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

USAGE_COLUMNS = ["account_id", "created_at", "kind", "category", "model", "key_id", "amount"]


def upgrade() -> None:
    op.add_column("ledger", sa.Column("key_id", sa.String(40), nullable=True))
    op.add_column("ledger", sa.Column("model", sa.String(120), nullable=True))
    op.add_column("ledger", sa.Column("category", sa.String(20), nullable=True))
    op.execute(
        """
        UPDATE ledger SET
            key_id = (SELECT jobs.key_id FROM jobs WHERE jobs.id = ledger.reference),
            model = (SELECT jobs.model FROM jobs WHERE jobs.id = ledger.reference),
            category = (SELECT jobs.category FROM jobs WHERE jobs.id = ledger.reference)
        WHERE EXISTS (SELECT 1 FROM jobs WHERE jobs.id = ledger.reference AND jobs.account_id = ledger.account_id)
        """
    )
    op.execute(
        """
        UPDATE ledger SET
            model = (SELECT substr(charged.note, 6) FROM ledger AS charged
                     WHERE charged.account_id = ledger.account_id AND charged.reference = ledger.reference
                       AND charged.kind = 'charge'),
            category = 'llm'
        WHERE reference LIKE 'chat%' AND EXISTS (
            SELECT 1 FROM ledger AS charged
            WHERE charged.account_id = ledger.account_id AND charged.reference = ledger.reference
              AND charged.kind = 'charge' AND charged.note LIKE 'chat %')
        """
    )
    op.create_index("ix_ledger_usage", "ledger", USAGE_COLUMNS)


def downgrade() -> None:
    op.drop_index("ix_ledger_usage", "ledger")
    with op.batch_alter_table("ledger") as batch:
        batch.drop_column("category")
        batch.drop_column("model")
        batch.drop_column("key_id")
