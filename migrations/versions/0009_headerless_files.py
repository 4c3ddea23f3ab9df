"""files.header: false for a CSV or TSV file with no header line

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25 12:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Files uploaded before have a header line.
    with op.batch_alter_table("files") as batch:
        batch.add_column(
            sa.Column("header", sa.Boolean(), nullable=False, server_default=sa.true())
        )


def downgrade() -> None:
    with op.batch_alter_table("files") as batch:
        batch.drop_column("header")
