"""summaries drafted by a language model

Revision ID: 0011
Revises: 0008
Create Date: 2026-12-01 21:00:00

Papers from feeds and arXiv bring only an abstract. A language model drafts the promised
plain-language summary (`summary_draft`): one row per paper, prompt version, model and
abstract hash, which is also the cache that keeps a paper from being asked twice. The
provenance (model, prompt version, when, tokens) and the editor's review stay with it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0011"
down_revision: str | None = "0008"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def _str(length: int) -> sa.types.TypeEngine:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    op.create_table(
        "summary_draft",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("paper_id", sa.Integer(), nullable=False),
        sa.Column("model", _str(200), nullable=False),
        sa.Column("prompt_version", _str(32), nullable=False),
        sa.Column("abstract_hash", _str(64), nullable=False),
        sa.Column("status", _str(20), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("topics", sa.JSON(), nullable=False),
        sa.Column("relevance", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("drafted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reviewed_by", _str(320), nullable=False),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["paper_id"], ["paper.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("paper_id", "prompt_version", "model", "abstract_hash"),
    )
    with op.batch_alter_table("summary_draft", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_summary_draft_paper_id"), ["paper_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_summary_draft_status"), ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("summary_draft", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_summary_draft_status"))
        batch_op.drop_index(batch_op.f("ix_summary_draft_paper_id"))
    op.drop_table("summary_draft")
