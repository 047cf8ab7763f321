"""The newsletter's tables: topics, papers, issues, deliveries and provider events.

Subscriber tables live in `subscribers.models`; importing this module registers both on
`SQLModel.metadata`, which Alembic compares against the migrations.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
    true,
)
from sqlmodel import Field, SQLModel

from subscribers.models import (  # noqa: F401  (registers the tables)
    ConsentRecord,
    Subscriber,
    SubscriberStatus,
    SubscriberTopic,
    SuppressedAddress,
    utcnow,
)


def _ts(nullable: bool = True) -> Column:  # type: ignore[type-arg]
    return Column(DateTime(timezone=True), nullable=nullable)


def _fk(target: str, *, nullable: bool = False, ondelete: str = "CASCADE", **kw: object) -> Column:  # type: ignore[type-arg]
    return Column(Integer, ForeignKey(target, ondelete=ondelete), nullable=nullable, **kw)


class Topic(SQLModel, table=True):
    slug: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=120)
    description: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    keywords: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    arxiv_categories: list[str] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    position: int = Field(default=0)  # taxonomy order, used to order issue sections


class Paper(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(max_length=500)
    normalized_title: str = Field(max_length=500, unique=True, index=True)
    summary: str = Field(sa_column=Column(Text, nullable=False))
    url: str = Field(default="", max_length=2000)  # empty: link to a title search instead
    authors: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    published: date
    month: str = Field(max_length=7, index=True)  # YYYY-MM of `published`
    arxiv_id: str | None = Field(default=None, max_length=32, unique=True)
    doi: str | None = Field(default=None, max_length=255, unique=True)
    abstract: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    journal_ref: str = Field(
        default="", sa_column=Column(String(1000), nullable=False, default="", server_default="")
    )
    # How sure the keyword tagger was of the paper's first topic (0-1); None: a person or
    # the source chose the topics. Low values and `general` are flagged for the desk.
    topic_confidence: float | None = Field(default=None)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_ts(False))


class PaperTopic(SQLModel, table=True):
    __tablename__ = "paper_topic"

    paper_id: int = Field(sa_column=_fk("paper.id", primary_key=True))
    topic_slug: str = Field(
        sa_column=Column(
            ForeignKey("topic.slug", ondelete="CASCADE"), primary_key=True, nullable=False
        )
    )


class IssueStatus(StrEnum):
    DRAFT = "draft"
    APPROVED = "approved"  # approval mode: an editor said it may go
    SENDING = "sending"  # deliveries planned; workers are draining them
    PAUSED = "paused"  # error budget exhausted or stopped by a person; see status_reason
    SENT = "sent"  # every delivery reached a final state
    MISSED = "missed"  # scheduled run came too late; waits for a person


class Issue(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    month: str = Field(max_length=7, unique=True)  # YYYY-MM
    status: str = Field(default=IssueStatus.DRAFT, max_length=20, index=True)
    status_reason: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    subject: str = Field(default="", max_length=300)
    # Bumped on every recompose so cached renders of an older draft are never reused.
    revision: int = Field(default=1)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(False))
    composed_at: datetime = Field(default_factory=utcnow, sa_column=_ts(False))
    approved_at: datetime | None = Field(default=None, sa_column=_ts())
    send_started_at: datetime | None = Field(default=None, sa_column=_ts())
    sent_at: datetime | None = Field(default=None, sa_column=_ts())
    # The editor's desk (issue 14): a note above the papers (Markdown), a lead paper shown
    # first, a time the clock releases it, and whether a person shaped the paper list (a
    # curated draft is not recomposed automatically, so an edit is never silently undone).
    editor_note: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    lead_paper_id: int | None = Field(
        default=None, sa_column=_fk("paper.id", nullable=True, ondelete="SET NULL")
    )
    scheduled_for: datetime | None = Field(default=None, sa_column=_ts())
    curated: bool = Field(default=False)
    # Issue 21: an approval (or schedule) pins the revision a person reviewed; any later
    # change to the content clears it, and the release path sends only this revision.
    approved_revision: int | None = Field(default=None)
    approved_by: str = Field(
        default="", sa_column=Column(Text, nullable=False, default="", server_default="")
    )
    # Issue 22: the editor's order of the sections (topic slugs); sections not named follow
    # in taxonomy order. Empty: taxonomy order.
    section_order: list[str] = Field(
        default_factory=list,
        sa_column=Column(JSON, nullable=False, default=list, server_default="[]"),
    )


class IssueRevision(SQLModel, table=True):
    """One revision of an issue's content, kept whole: what an approval or test copy showed."""

    __tablename__ = "issue_revision"
    __table_args__ = (UniqueConstraint("issue_id", "number"),)

    id: int | None = Field(default=None, primary_key=True)
    issue_id: int = Field(sa_column=_fk("issue.id"))
    number: int
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(False))
    actor: str = Field(default="", max_length=320)
    reason: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    digest: str = Field(max_length=64)  # SHA-256 of the snapshot's canonical JSON
    snapshot: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class TestCopy(SQLModel, table=True):
    """A test copy that went out: which revision and variant, to whom, asked by whom."""

    __tablename__ = "test_copy"
    __test__ = False  # not a pytest class

    id: int | None = Field(default=None, primary_key=True)
    issue_id: int = Field(sa_column=_fk("issue.id"))
    revision: int
    variant: str = Field(default="", max_length=1000)
    email: str = Field(max_length=320)
    actor: str = Field(max_length=320, index=True)
    sent_at: datetime = Field(default_factory=utcnow, sa_column=_ts(False))


class IssuePaper(SQLModel, table=True):
    __tablename__ = "issue_paper"

    issue_id: int = Field(sa_column=_fk("issue.id", primary_key=True))
    paper_id: int = Field(sa_column=_fk("paper.id", primary_key=True))
    topic_slug: str = Field(max_length=64)  # the section it is listed under
    position: int = Field(default=0)
    late: bool = Field(default=False)  # published in an earlier month, arrived after its issue
    # Issue 15: caps keep the email readable; papers past them appear on the web version only.
    in_email: bool = Field(
        default=True, sa_column=Column(Boolean, nullable=False, server_default=true())
    )
    score: int = Field(  # how strongly it matched its topics' keywords (the ranking)
        default=0, sa_column=Column(Integer, nullable=False, server_default="0")
    )


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    CLAIMED = "claimed"  # leased by a worker (claimed_by, lease_until)
    SENT = "sent"
    FAILED = "failed"  # provider refused it; error says why
    UNKNOWN = "unknown"  # request outcome unknown; resent only on an operator's request
    SKIPPED = "skipped"  # recipient left (unsubscribed, paused, suppressed) before sending


class Delivery(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("issue_id", "subscriber_id"),
        # What a send looks for: ready rows by variant, held rows by holder (migration 0006).
        Index(
            "ix_delivery_ready",
            "issue_id",
            "variant",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        Index(
            "ix_delivery_held",
            "issue_id",
            "claimed_by",
            postgresql_where=text("status = 'claimed'"),
            sqlite_where=text("status = 'claimed'"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    issue_id: int = Field(sa_column=_fk("issue.id"))
    subscriber_id: int = Field(sa_column=_fk("subscriber.id"))
    status: str = Field(default=DeliveryStatus.PENDING, max_length=20)
    variant: str = Field(default="", max_length=1000)  # sorted topic slugs joined by ","
    attempts: int = Field(default=0)
    claimed_by: str = Field(default="", max_length=100)
    lease_until: datetime | None = Field(default=None, sa_column=_ts())
    provider_message_id: str = Field(default="", max_length=200)
    error: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    sent_at: datetime | None = Field(default=None, sa_column=_ts())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_ts(False))


class ProviderEvent(SQLModel, table=True):
    """A mail provider's event (bounce, drop, spam report); unique id makes webhooks idempotent."""

    __tablename__ = "provider_event"
    __table_args__ = (UniqueConstraint("provider", "provider_event_id"),)

    id: int | None = Field(default=None, primary_key=True)
    provider: str = Field(max_length=32)
    provider_event_id: str = Field(max_length=200)
    event: str = Field(max_length=32, index=True)
    email: str = Field(default="", max_length=320)
    delivery_id: int | None = Field(
        default=None, sa_column=_fk("delivery.id", nullable=True, ondelete="SET NULL")
    )
    payload: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    received_at: datetime = Field(default_factory=utcnow, sa_column=_ts(False))


class JobRun(SQLModel, table=True):
    """One run of the monthly job, so missed, empty and failed runs are visible, never silent."""

    __tablename__ = "job_run"

    id: int | None = Field(default=None, primary_key=True)
    job: str = Field(max_length=64)
    month: str = Field(max_length=7, index=True)
    scheduled_for: datetime | None = Field(default=None, sa_column=_ts())
    started_at: datetime = Field(default_factory=utcnow, sa_column=_ts(False))
    finished_at: datetime | None = Field(default=None, sa_column=_ts())
    outcome: str = Field(default="running", max_length=32)  # sent, empty, missed, failed, ...
    message: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))


class AuditEntry(SQLModel, table=True):
    """One editor action: who, when, what (the desk's audit log)."""

    __tablename__ = "audit_entry"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_column=_ts(False))
    actor: str = Field(max_length=320)
    action: str = Field(max_length=64, index=True)
    target: str = Field(default="", max_length=200)
    detail: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))


class EditorSignIn(SQLModel, table=True):
    """A mailed single-use sign-in link; only the SHA-256 of its secret is kept."""

    __tablename__ = "editor_sign_in"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True)
    email: str = Field(max_length=320)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(False))
    expires_at: datetime = Field(sa_column=_ts(False))
    used_at: datetime | None = Field(default=None, sa_column=_ts())


class EditorSession(SQLModel, table=True):
    """A signed-in editor's session; the cookie holds its secret, the table its hash."""

    __tablename__ = "editor_session"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True)
    email: str = Field(max_length=320)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(False))
    expires_at: datetime = Field(sa_column=_ts(False))
    revoked_at: datetime | None = Field(default=None, sa_column=_ts())


class DraftStatus(StrEnum):
    DRAFTED = "drafted"  # the model's text, waiting for an editor (review mode)
    AUTO = "auto"  # the model's text, made the paper's summary unreviewed (auto mode)
    ACCEPTED = "accepted"  # an editor accepted it (as written or edited): the paper's summary
    FAILED = "failed"  # no usable answer (refused output, endpoint down); asked again next run


class SummaryDraft(SQLModel, table=True):
    """A language model's draft of a paper's summary, with its provenance (issue 27).

    One row per (paper, prompt version, model, abstract hash): the cache that keeps a paper
    from being asked twice until its abstract changes or an editor asks for a redraft.
    """

    __tablename__ = "summary_draft"
    __table_args__ = (UniqueConstraint("paper_id", "prompt_version", "model", "abstract_hash"),)

    id: int | None = Field(default=None, primary_key=True)
    paper_id: int = Field(sa_column=_fk("paper.id", index=True))
    model: str = Field(max_length=200)
    prompt_version: str = Field(max_length=32)
    abstract_hash: str = Field(max_length=64)  # SHA-256 of the title and abstract sent
    status: str = Field(default=DraftStatus.DRAFTED, max_length=20, index=True)
    summary: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    topics: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    relevance: float | None = Field(default=None)  # 0..1: squarely ML foundations?
    error: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    prompt_tokens: int = Field(default=0)
    completion_tokens: int = Field(default=0)
    drafted_at: datetime = Field(default_factory=utcnow, sa_column=_ts(False))
    reviewed_by: str = Field(default="", max_length=320)
    reviewed_at: datetime | None = Field(default=None, sa_column=_ts())


class StartHereItem(SQLModel, table=True):
    """One paper of the editors' "start here" reading list (issue 26): the classics a new
    reader wants before the news, in the editors' order, each with a one-line why."""

    __tablename__ = "start_here_item"

    id: int | None = Field(default=None, primary_key=True)
    paper_id: int = Field(sa_column=_fk("paper.id", unique=True))
    position: int = Field(default=0)
    why: str = Field(default="", max_length=300)
    added_by: str = Field(default="", max_length=320)
    added_at: datetime = Field(default_factory=utcnow, sa_column=_ts(False))


class MailKind(StrEnum):
    CONFIRMATION = "confirmation"  # double opt-in step one
    LINK = "link"  # "email me my link": the preferences link


class QueuedMail(SQLModel, table=True):
    """A transactional mail owed to a person, written in the same transaction as what caused
    it (a sign-up, a link request) and sent by another process (`mail_sender`).

    It names the subscriber, not the address: the mail is built when it goes (current
    token, current topics), and erasing the person deletes the row with them.
    """

    __tablename__ = "mail_queue"

    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(sa_column=_fk("subscriber.id", index=True))
    kind: str = Field(max_length=20)
    replaces_earlier: bool = Field(default=False)  # a confirmation for an address still pending
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(False))
    due_at: datetime = Field(default_factory=utcnow, sa_column=_ts(False))
    claimed_until: datetime | None = Field(default=None, sa_column=_ts())  # a sender's lease
    attempts: int = Field(default=0)
    last_error: str = Field(default="", max_length=500)
