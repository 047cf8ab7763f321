"""random public subscriber ids for tokens; keyed hashes of erased suppressed addresses

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 21:30:00
"""

import secrets
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "suppressed_address",
        sa.Column("address_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("address_hash"),
    )
    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("public_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True)
        )
    # Existing subscribers get a random public id each. Links sent before this migration
    # named the row id and stop working; a new issue carries the new links.
    conn = op.get_bind()
    ids = [row[0] for row in conn.execute(sa.text("SELECT id FROM subscriber"))]
    if ids:
        conn.execute(
            sa.text("UPDATE subscriber SET public_id = :public_id WHERE id = :id"),
            [{"id": i, "public_id": secrets.token_urlsafe(12)} for i in ids],
        )
    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.alter_column(
            "public_id", existing_type=sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False
        )
        batch_op.create_index(batch_op.f("ix_subscriber_public_id"), ["public_id"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_subscriber_public_id"))
        batch_op.drop_column("public_id")
    op.drop_table("suppressed_address")
