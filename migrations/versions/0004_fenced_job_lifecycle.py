"""fenced job lifecycle: failures, finished_by, last complete checkpoint, broker instance

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 11:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("failures", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("finished_by", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("checkpoint", sa.String(length=512), nullable=True))
        batch.add_column(sa.Column("enqueued_broker", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("enqueued_broker")
        batch.drop_column("checkpoint")
        batch.drop_column("finished_by")
        batch.drop_column("failures")
