"""issue: the editor's order of an issue's sections

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 21:10:00

Sections followed the taxonomy's order only; an editor may now drag a section above
another. `section_order` lists the sections in the editor's order (topic slugs); sections it
does not name follow in taxonomy order, so an empty list is the old behaviour.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("issue", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("section_order", sa.JSON(), nullable=False, server_default="[]")
        )


def downgrade() -> None:
    with op.batch_alter_table("issue", schema=None) as batch_op:
        batch_op.drop_column("section_order")
