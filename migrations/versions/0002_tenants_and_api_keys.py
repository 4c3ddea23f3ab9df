"""tenants and API keys; files, jobs and models belong to a tenant

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 10:05:00.000000

Rows made before tenants existed are given to a tenant named "default".
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OWNED_TABLES = ("files", "jobs", "models")
LEGACY_TENANT_ID = "ten_000000000000000000000000"
# 0001 left the unique constraint on jobs.idempotency_key unnamed; this is what each database
# calls it (SQLite through the naming convention that batch mode reflects it with).
UNNAMED_UNIQUE = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def _idempotency_key_constraint() -> str:
    return (
        "uq_jobs_idempotency_key"
        if op.get_bind().dialect.name == "sqlite"
        else ("jobs_idempotency_key_key")
    )


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("prefix", sa.String(length=20), nullable=False),
        sa.Column("secret_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("secret_sha256"),
    )
    with op.batch_alter_table("api_keys") as batch_op:
        batch_op.create_index(batch_op.f("ix_api_keys_tenant_id"), ["tenant_id"], unique=False)

    connection = op.get_bind()
    has_rows = any(
        connection.execute(sa.text(f"SELECT 1 FROM {table} LIMIT 1")).first() is not None
        for table in OWNED_TABLES
    )
    if has_rows:
        connection.execute(
            sa.text("INSERT INTO tenants (id, name, created_at) VALUES (:id, 'default', :now)"),
            {"id": LEGACY_TENANT_ID, "now": datetime.now(UTC).replace(tzinfo=None)},
        )
    for table in OWNED_TABLES:
        with op.batch_alter_table(table) as batch_op:
            batch_op.add_column(sa.Column("tenant_id", sa.String(length=40), nullable=True))
        if has_rows:
            connection.execute(
                sa.text(f"UPDATE {table} SET tenant_id = :tenant"), {"tenant": LEGACY_TENANT_ID}
            )
        with op.batch_alter_table(table) as batch_op:
            batch_op.alter_column("tenant_id", existing_type=sa.String(length=40), nullable=False)
            batch_op.create_index(batch_op.f(f"ix_{table}_tenant_id"), ["tenant_id"], unique=False)
            batch_op.create_foreign_key(
                f"fk_{table}_tenant_id_tenants", "tenants", ["tenant_id"], ["id"]
            )

    # An Idempotency-Key is unique per tenant, not across tenants.
    with op.batch_alter_table("jobs", naming_convention=UNNAMED_UNIQUE) as batch_op:
        batch_op.drop_constraint(_idempotency_key_constraint(), type_="unique")
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.create_unique_constraint(
            "uq_jobs_tenant_idempotency_key", ["tenant_id", "idempotency_key"]
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.drop_constraint("uq_jobs_tenant_idempotency_key", type_="unique")
        batch_op.create_unique_constraint(_idempotency_key_constraint(), ["idempotency_key"])
    for table in reversed(OWNED_TABLES):
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_constraint(f"fk_{table}_tenant_id_tenants", type_="foreignkey")
            batch_op.drop_index(batch_op.f(f"ix_{table}_tenant_id"))
            batch_op.drop_column("tenant_id")
    with op.batch_alter_table("api_keys") as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_keys_tenant_id"))
    op.drop_table("api_keys")
    op.drop_table("tenants")
