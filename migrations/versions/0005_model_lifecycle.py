"""model lifecycle: best epoch, early stopping, kept epoch checkpoints, models per epoch

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 11:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NAMES = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("summary", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("best_epoch", sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column("stopped_early", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_table(
        "job_checkpoints",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(length=512), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job_id", "epoch", name="uq_job_checkpoints_job_epoch"),
    )
    op.create_index("ix_job_checkpoints_job_id", "job_checkpoints", ["job_id"])
    # A job may register several models now (its best epoch, and any kept checkpoint): one
    # per (job, epoch) instead of one per job.
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint("models_job_id_key", "models", type_="unique")
        with op.batch_alter_table("models") as batch:
            batch.add_column(sa.Column("epoch", sa.Integer(), nullable=True))
    else:
        with op.batch_alter_table("models", naming_convention=_NAMES, recreate="always") as batch:
            batch.drop_constraint("uq_models_job_id", type_="unique")
            batch.add_column(sa.Column("epoch", sa.Integer(), nullable=True))
    op.create_index("ix_models_job_id", "models", ["job_id"])
    op.create_index("uq_models_job_epoch", "models", ["job_id", "epoch"], unique=True)


def downgrade() -> None:
    raise NotImplementedError("0005 is not reversible")
