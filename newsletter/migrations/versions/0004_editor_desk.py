"""editor's desk: issue note, lead paper, schedule, curated flag; audit log, sign-in, sessions

Revision ID: 0004
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0004"
down_revision: str | None = "0002"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def _str(length: int) -> sa.types.TypeEngine:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    with op.batch_alter_table("issue", schema=None) as batch_op:
        batch_op.add_column(sa.Column("editor_note", sa.Text(), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("lead_paper_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("curated", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.create_foreign_key(
            "fk_issue_lead_paper_id_paper", "paper", ["lead_paper_id"], ["id"], ondelete="SET NULL"
        )
    op.create_table(
        "audit_entry",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", _str(320), nullable=False),
        sa.Column("action", _str(64), nullable=False),
        sa.Column("target", _str(200), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audit_entry", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_entry_action"), ["action"], unique=False)
    for table in ("editor_sign_in", "editor_session"):
        last = (
            sa.Column("used_at", sa.DateTime(timezone=True), nullable=True)
            if table == "editor_sign_in"
            else sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True)
        )
        op.create_table(
            table,
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("token_hash", _str(64), nullable=False),
            sa.Column("email", _str(320), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
            last,
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("token_hash"),
        )


def downgrade() -> None:
    op.drop_table("editor_session")
    op.drop_table("editor_sign_in")
    with op.batch_alter_table("audit_entry", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_entry_action"))
    op.drop_table("audit_entry")
    with op.batch_alter_table("issue", schema=None) as batch_op:
        batch_op.drop_constraint("fk_issue_lead_paper_id_paper", type_="foreignkey")
        batch_op.drop_column("curated")
        batch_op.drop_column("scheduled_for")
        batch_op.drop_column("lead_paper_id")
        batch_op.drop_column("editor_note")
