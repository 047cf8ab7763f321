"""paper: journal reference and the tagger's confidence

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 20:45:00

arXiv's listing feeds and API answers give a journal reference for published papers; it was
read and dropped. `topic_confidence` is how sure keyword tagging was of a paper's first topic
(NULL when a person or the source chose the topics), so the desk and `papers list` can flag
papers in General and close calls.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("paper") as batch:
        batch.add_column(
            sa.Column("journal_ref", sa.String(1000), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("topic_confidence", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("paper") as batch:
        batch.drop_column("topic_confidence")
        batch.drop_column("journal_ref")
