"""batch predictions: jobs of a second kind, with a result and an output file

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 11:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column("kind", sa.String(length=16), nullable=False, server_default="train")
        )
        batch.add_column(sa.Column("result", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("output_file_id", sa.String(length=40), nullable=True))
    op.create_index("ix_jobs_tenant_kind_created", "jobs", ["tenant_id", "kind", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_tenant_kind_created", "jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("output_file_id")
        batch.drop_column("result")
        batch.drop_column("kind")
