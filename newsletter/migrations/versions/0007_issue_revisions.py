"""issue revisions, pinned approvals and test copies

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 20:45:00

An approval used to mean "this issue", whatever it said by the time the clock sent it. Now
every change to an issue's content keeps a snapshot (`issue_revision`), an approval pins the
revision a person reviewed (`issue.approved_revision`, `issue.approved_by`), and each test
copy records the revision and variant it showed (`test_copy`), so "never test-sent" and
"changed since the last test copy" can be told.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def _str(length: int) -> sa.types.TypeEngine:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    with op.batch_alter_table("issue", schema=None) as batch_op:
        batch_op.add_column(sa.Column("approved_revision", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("approved_by", sa.Text(), nullable=False, server_default=""))
    op.create_table(
        "issue_revision",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("issue_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", _str(320), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("digest", _str(64), nullable=False),
        sa.Column("snapshot", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["issue_id"], ["issue.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("issue_id", "number"),
    )
    op.create_table(
        "test_copy",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("issue_id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("variant", _str(1000), nullable=False),
        sa.Column("email", _str(320), nullable=False),
        sa.Column("actor", _str(320), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["issue_id"], ["issue.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("test_copy", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_test_copy_actor"), ["actor"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("test_copy", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_test_copy_actor"))
    op.drop_table("test_copy")
    op.drop_table("issue_revision")
    with op.batch_alter_table("issue", schema=None) as batch_op:
        batch_op.drop_column("approved_by")
        batch_op.drop_column("approved_revision")
