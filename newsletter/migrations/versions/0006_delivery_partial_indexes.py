"""delivery: partial indexes for the rows a send looks for (ready and held)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 23:45:00

`ix_delivery_claim` indexed every delivery by (issue, status, variant), so each of the two
updates a delivery gets (claimed, then its outcome) added an entry to it, and the claim
searched past the entries of rows long sent. A send looks up only two kinds of rows: the
ready ones (`pending`, by variant) and the held ones (`claimed`, by holder). Partial indexes
on exactly those hold a shrinking few rows and take no entry for a sent, failed, skipped or
unknown delivery.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

PENDING = sa.text("status = 'pending'")
CLAIMED = sa.text("status = 'claimed'")


def upgrade() -> None:
    op.drop_index("ix_delivery_claim", table_name="delivery")
    op.create_index(
        "ix_delivery_ready",
        "delivery",
        ["issue_id", "variant"],
        postgresql_where=PENDING,
        sqlite_where=PENDING,
    )
    op.create_index(
        "ix_delivery_held",
        "delivery",
        ["issue_id", "claimed_by"],
        postgresql_where=CLAIMED,
        sqlite_where=CLAIMED,
    )


def downgrade() -> None:
    op.drop_index("ix_delivery_held", table_name="delivery")
    op.drop_index("ix_delivery_ready", table_name="delivery")
    op.create_index("ix_delivery_claim", "delivery", ["issue_id", "status", "variant"])
