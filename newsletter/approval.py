"""Approving an issue: one revision, confirmed by a person who saw it, tested.

Approving or scheduling pins the revision the person was shown: a confirmation naming an
older one is refused with what changed (`StaleRevision`, a 409 on the desk), and with
`NEWSLETTER_REQUIRE_TEST_COPY` a revision nobody test-sent cannot be approved.
`release_summary` is what the desk's confirmation page and the CLI's `[y/N]` show;
`send_test` sends and records the test copies (any address, any variant, rate-limited).
Starting the send itself, and its check that the content is still the pinned revision, is
`newsletter.release`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from newsletter import audit, revisions
from newsletter.db import session_scope
from newsletter.delivery import preview_plan, send_test_copy
from newsletter.desk import previews
from newsletter.errors import NewsletterError
from newsletter.issues import find_issue
from newsletter.models import Issue, IssueStatus, TestCopy
from newsletter.months import as_utc
from newsletter.rendering import EVERYTHING, issue_subject
from newsletter.settings import Settings
from newsletter.transports import get_transport
from newsletter.transports.base import Transport
from subscribers.models import utcnow

RELEASABLE = (IssueStatus.DRAFT, IssueStatus.APPROVED, IssueStatus.MISSED)
MAX_TEST_ADDRESSES = 5
MAX_TEST_VARIANTS = 10
TEST_COPIES_PER_HOUR = 20  # per editor: a test copy to any address must not be a bulk send


class StaleRevision(NewsletterError):
    """A confirmation named a revision the issue has moved on from."""

    def __init__(self, month: str, shown: int, current: int, changed: list[str]) -> None:
        self.shown, self.current, self.changed = shown, current, changed
        what = "; ".join(changed) or "its content changed"
        super().__init__(
            f"issue {month} changed since you looked at revision {shown}: it is at revision "
            f"{current} now ({what}); nothing was approved or sent, review it again"
        )


@dataclass(frozen=True)
class ReleaseSummary:
    """What a confirmation shows: the same on the desk and in the CLI."""

    month: str
    subject: str
    revision: int
    status: str
    recipients: int
    variants: int
    test_copy: TestCopy | None  # the newest test copy of this revision
    last_test_revision: int | None  # the newest test copy of any revision
    changed_since_test: list[str]
    approved_revision: int | None
    require_test_copy: bool

    @property
    def tested(self) -> bool:
        return self.test_copy is not None

    @property
    def may_approve(self) -> bool:
        return self.tested or not self.require_test_copy

    def lines(self) -> list[str]:
        out = [
            f"Issue {self.month}: {self.subject!r}, revision {self.revision} ({self.status})",
            f"Recipients: {self.recipients:,} in {self.variants} variant(s)",
        ]
        if self.test_copy is not None:
            when = self.test_copy.sent_at.strftime("%Y-%m-%d %H:%M")
            out.append(
                f"Test copy of revision {self.revision} sent {when} UTC to {self.test_copy.email}"
            )
        else:
            never = f"Revision {self.revision} was never test-sent"
            if self.last_test_revision is not None:
                never += f" (the last test copy showed revision {self.last_test_revision}"
                if self.changed_since_test:
                    never += "; since then: " + "; ".join(self.changed_since_test)
                never += ")"
            out.append(never)
        return out


def release_summary(session: Session, settings: Settings, month: str) -> ReleaseSummary:
    issue = find_issue(session, month)
    plan = preview_plan(session, issue)
    tested = revisions.last_test_copy(session, issue.id, issue.revision)  # type: ignore[arg-type]
    last = tested or revisions.last_test_copy(session, issue.id)  # type: ignore[arg-type]
    changed: list[str] = []
    if last is not None and last.revision != issue.revision:
        changed = changes_since(session, issue, last.revision)
    return ReleaseSummary(
        month=month,
        subject=issue_subject(issue, settings),
        revision=issue.revision,
        status=issue.status,
        recipients=plan.recipients,
        variants=len(plan.variants),
        test_copy=tested,
        last_test_revision=last.revision if last else None,
        changed_since_test=changed,
        approved_revision=issue.approved_revision,
        require_test_copy=settings.require_test_copy,
    )


def changes_since(session: Session, issue: Issue, shown: int) -> list[str]:
    """What changed after revision `shown`: from the two snapshots, or else from the reasons
    the revisions since then recorded (an issue from before snapshots were kept)."""
    before = revisions.get(session, issue.id, shown)  # type: ignore[arg-type]
    if before is not None:
        return revisions.changes(before.snapshot, revisions.snapshot(session, issue))
    since = [r for r in revisions.history(session, issue.id) if r.number > shown]  # type: ignore[arg-type]
    return [r.reason for r in reversed(since) if r.reason]


def locked_issue(session: Session, month: str) -> Issue:
    """The issue, its row locked until the transaction ends (PostgreSQL; SQLite serialises
    writers anyway): an edit, an approval and a release never interleave."""
    # populate_existing: an Issue this session read before the lock is re-read under it.
    locked = select(Issue).where(Issue.month == month).with_for_update()
    issue = session.exec(locked.execution_options(populate_existing=True)).first()
    return issue or find_issue(session, month)


def pin(
    session: Session,
    settings: Settings,
    month: str,
    revision: int,
    actor: str,
    *,
    when: datetime | None,
    now: datetime,
) -> Issue:
    """Approve revision `revision` (the one the person confirmed), to send at `when`."""
    issue = locked_issue(session, month)
    if issue.status not in RELEASABLE:
        raise NewsletterError(f"issue {month} is {issue.status}; only a draft can be approved")
    if revision != issue.revision:
        raise StaleRevision(
            month, revision, issue.revision, changes_since(session, issue, revision)
        )
    verdict = revisions.verify(session, issue, revision, actor)
    if not verdict.ok:
        raise StaleRevision(month, revision, issue.revision, [verdict.reason])
    if settings.require_test_copy and (
        revisions.last_test_copy(session, issue.id, revision) is None  # type: ignore[arg-type]
    ):
        raise NewsletterError(
            f"revision {revision} of {month} was never test-sent: send yourself a test copy of "
            "it first (NEWSLETTER_REQUIRE_TEST_COPY=true)"
        )
    issue.status = IssueStatus.APPROVED
    issue.approved_at = now
    issue.approved_revision = revision
    issue.approved_by = actor
    issue.status_reason = ""
    issue.scheduled_for = when
    session.add(issue)
    return issue


def schedule(
    session: Session,
    settings: Settings,
    month: str,
    when: datetime,
    revision: int,
    actor: str,
    *,
    now: datetime | None = None,
) -> Issue:
    """Approve revision `revision` for sending at `when` (UTC); the clock starts it then."""
    now = now or utcnow()
    when = as_utc(when).astimezone(UTC)
    if when < now - timedelta(minutes=1):
        raise NewsletterError(f"{when:%Y-%m-%d %H:%M} UTC is in the past; pick a later time")
    issue = pin(session, settings, month, revision, actor, when=max(when, now), now=now)
    audit.record(
        session,
        actor,
        "issue.schedule",
        month,
        f"revision {revision}, send at {issue.scheduled_for:%Y-%m-%d %H:%M} UTC",
    )
    return issue


def approve_now(
    session: Session, settings: Settings, month: str, revision: int, actor: str
) -> Issue:
    """The desk's "approve and send now": revision `revision`, due now; the clock starts it."""
    now = utcnow()
    issue = pin(session, settings, month, revision, actor, when=now, now=now)
    audit.record(session, actor, "issue.approve", month, f"revision {revision}, send now")
    return issue


def cancel_schedule(session: Session, month: str, actor: str) -> Issue:
    issue = locked_issue(session, month)
    if issue.scheduled_for is None or issue.status not in RELEASABLE:
        raise NewsletterError(f"issue {month} has no schedule to cancel (it is {issue.status})")
    issue.scheduled_for = None
    if issue.status == IssueStatus.APPROVED:
        issue.status = IssueStatus.DRAFT
        issue.approved_at = None
        issue.approved_revision = None
        issue.approved_by = ""
    session.add(issue)
    audit.record(session, actor, "issue.cancel_schedule", month, "")
    return issue


def _addresses(raw: str | list[str]) -> list[str]:
    parts = raw if isinstance(raw, list) else re.split(r"[\s,;]+", raw)
    addresses = list(dict.fromkeys(p.strip() for p in parts if p.strip()))
    if not addresses:
        raise NewsletterError("type at least one address for the test copy")
    if len(addresses) > MAX_TEST_ADDRESSES:
        raise NewsletterError(
            f"{len(addresses)} addresses; a test copy goes to at most {MAX_TEST_ADDRESSES} at once"
        )
    return addresses


def send_test(
    engine: Engine,
    settings: Settings,
    month: str,
    addresses: str | list[str],
    actor: str,
    *,
    topics: list[str] | None = None,
    each_variant: bool = False,
    transport: Transport | None = None,
) -> list[str]:
    """Test copies of the current revision to up to five addresses, for one topic set (none:
    everything) or one of each variant the audience gets (up to ten); each is recorded
    with its revision and audited. Returns what went, as "address (variant)" lines."""
    emails = _addresses(addresses)
    now = utcnow()
    with session_scope(engine) as session:
        issue = find_issue(session, month)
        if each_variant:
            audience = previews.audience_by_variant(session, issue)
            variants = sorted(audience, key=lambda v: (-audience[v], v))[:MAX_TEST_VARIANTS]
            variants = variants or [EVERYTHING]
        else:
            variants = [previews.variant_of(session, issue, topics or [])]
        count = len(emails) * len(variants)
        if actor != audit.CLOCK:
            recent = revisions.test_copies_since(session, actor, now - timedelta(hours=1))
            if recent + count > TEST_COPIES_PER_HOUR:
                raise NewsletterError(
                    f"test copies are limited to {TEST_COPIES_PER_HOUR} an hour per editor; you "
                    f"sent {recent} in the last hour and asked for {count} more"
                )
        revision, issue_id = issue.revision, issue.id
    sent = []
    own_transport = transport is None  # one connection for all the copies, not one each
    transport = transport or get_transport(settings)
    try:
        for variant in variants:
            for email in emails:
                sent.append(
                    _send_one_test(
                        engine,
                        settings,
                        month,
                        email,
                        variant,
                        revision,
                        issue_id,
                        actor,
                        transport,
                    )
                )
    finally:
        if own_transport:
            transport.close()
    return sent


def _send_one_test(
    engine: Engine,
    settings: Settings,
    month: str,
    email: str,
    variant: str,
    revision: int,
    issue_id: int | None,
    actor: str,
    transport: Transport,
) -> str:
    """One test copy, then its record and audit entry; returns "address (variant)"."""
    result = send_test_copy(engine, settings, month, email, transport=transport, variant=variant)
    with session_scope(engine) as session:
        session.add(
            TestCopy(
                issue_id=issue_id,  # type: ignore[arg-type]
                revision=revision,
                variant=variant,
                email=result.email,
                actor=actor,
            )
        )
        line = f"{result.email} ({previews.variant_label(variant, {})})"
        audit.record(session, actor, "issue.test", month, f"revision {revision}: {line}")
    return line
