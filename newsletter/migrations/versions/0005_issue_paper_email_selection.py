"""issue_paper: which listed papers the email shows, and their ranking score

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 21:10:00

Big months list more papers than an email should carry; the rest appear only on the web
version. `in_email` records that choice per listed paper, `score` how strongly the paper
matched its topics' keywords (the ranking that made the choice).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("issue_paper", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("in_email", sa.Boolean(), nullable=False, server_default=sa.true())
        )
        batch_op.add_column(sa.Column("score", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("issue_paper", schema=None) as batch_op:
        batch_op.drop_column("score")
        batch_op.drop_column("in_email")
