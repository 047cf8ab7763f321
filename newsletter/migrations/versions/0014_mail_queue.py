"""issue 25: transactional mail queued in the request's transaction, sent by another process

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 23:40:00

Confirmation and "email me my link" mails were built and written by the web process after
its answer (about 9 ms of CPU each, a sign-up burst's bottleneck) and were lost if the
process died before sending. Each is now a `mail_queue` row committed with the sign-up and
sent by `newsletter serve`'s mail process; a row names the subscriber (not the address) and
goes with them when they are erased.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mail_queue",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "subscriber_id",
            sa.Integer(),
            sa.ForeignKey("subscriber.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("replaces_earlier", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=False),
    )
    op.create_index("ix_mail_queue_subscriber_id", "mail_queue", ["subscriber_id"])


def downgrade() -> None:
    op.drop_index("ix_mail_queue_subscriber_id", table_name="mail_queue")
    op.drop_table("mail_queue")
