"""models.size_bytes: the stored bytes of a model's folder, for usage and quotas

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: models of older versions have no size recorded (usage counts them as 0).
    with op.batch_alter_table("models") as batch:
        batch.add_column(sa.Column("size_bytes", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.drop_column("size_bytes")
