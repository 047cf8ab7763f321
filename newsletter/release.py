"""Releasing an issue: the one path from an approved draft to a send, whoever asks.

The desk, the CLI (`issue send`, `issue approve`) and the clock all come here, so a rule
about what may go out is written once. Starting a send runs the pre-flight checks,
moves the issue to `sending` (`begin_sending`: exactly one caller wins), plans, and either
delivers in this process (the embedded SQLite default) or leaves the rows to `newsletter
worker`. The web process never sends itself: approving or scheduling on the desk sets
`Issue.scheduled_for`, and the clock's due-schedule check (`send_due_issues`, every
`NEWSLETTER_SCHEDULE_CHECK_SECONDS`) starts it through `start_send` like the monthly job. A
schedule missed by more than `NEWSLETTER_SEND_CUTOFF_HOURS` (clock down) is not sent late.

Approved means one revision (`newsletter.revisions`): approving or scheduling pins the
revision a person was shown (a stale one is refused with what changed), needs a test copy
of it (`NEWSLETTER_REQUIRE_TEST_COPY`), and whatever starts the send checks, under the
issue's row lock, that the content is still exactly that revision's snapshot; a mismatch
withdraws the approval, is recorded, and mails nobody.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, or_, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from newsletter import audit, revisions
from newsletter.db import session_scope
from newsletter.delivery import (
    SendReport,
    begin_sending,
    plan_deliveries,
    preview_plan,
    require_postal_address,
    require_public_sender,
    send_issue,
    send_test_copy,
)
from newsletter.delivery.issue_run import ProgressCallback
from newsletter.desk import previews
from newsletter.errors import NewsletterError
from newsletter.issues import find_issue
from newsletter.models import Issue, IssueStatus, JobRun, TestCopy
from newsletter.months import as_utc
from newsletter.rendering import EVERYTHING
from newsletter.settings import Settings
from newsletter.transports.base import Transport
from subscribers.models import utcnow

SCHEDULED_JOB = "scheduled-send"
RELEASABLE = (IssueStatus.DRAFT, IssueStatus.APPROVED, IssueStatus.MISSED)
PAUSED_BY_EDITOR = "paused by an editor"
MAX_TEST_ADDRESSES = 5
MAX_TEST_VARIANTS = 10
TEST_COPIES_PER_HOUR = 20  # per editor: a test copy to any address must not be a bulk send


class ReleaseRefused(NewsletterError):
    """The release path would not send: nothing approved, or not what was approved."""


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
        before = revisions.get(session, issue.id, last.revision)  # type: ignore[arg-type]
        if before is not None:
            changed = revisions.changes(before.snapshot, revisions.snapshot(session, issue))
    return ReleaseSummary(
        month=month,
        subject=issue.subject,
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


def _locked(session: Session, month: str) -> Issue:
    """The issue, its row locked until the transaction ends (PostgreSQL; SQLite serialises
    writers anyway): an edit, an approval and a release never interleave."""
    issue = session.exec(select(Issue).where(Issue.month == month).with_for_update()).first()
    return issue or find_issue(session, month)


def _pin(
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
    issue = _locked(session, month)
    if issue.status not in RELEASABLE:
        raise NewsletterError(f"issue {month} is {issue.status}; only a draft can be approved")
    if revision != issue.revision:
        shown = revisions.get(session, issue.id, revision)  # type: ignore[arg-type]
        changed = (
            revisions.changes(shown.snapshot, revisions.snapshot(session, issue)) if shown else []
        )
        raise StaleRevision(month, revision, issue.revision, changed)
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


@dataclass(frozen=True)
class JobOutcome:
    month: str
    # sent, sending, empty, missed, awaiting-approval, scheduled, already-started, busy,
    # failed, source-failed (a source kept failing: the draft waits for a person)
    outcome: str
    message: str

    @property
    def ok(self) -> bool:
        return self.outcome in {
            "sent",
            "sending",
            "awaiting-approval",
            "scheduled",
            "already-started",
            "busy",
        }


def start_send(
    engine: Engine,
    settings: Settings,
    month: str,
    *,
    transport: Transport | None = None,
    stop: threading.Event | None = None,
    deliver_here: bool | None = None,
    resume: bool = False,
    revision: int | None = None,
    actor: str = audit.CLOCK,
) -> JobOutcome | None:
    """Move the issue to `sending` (exactly one caller wins), plan, and deliver if no worker will.

    Only one revision goes: `revision` when the caller is the approver (the monthly job
    without approval mode, an operator's confirmed `issue send`), else the approved one;
    `ReleaseRefused` when there is none or the content is no longer exactly it.
    Returns None when another process already started this issue. With the embedded SQLite
    default no separate worker runs, so the caller delivers; with PostgreSQL, workers drain.
    `resume` also restarts a paused or missed issue (a person asked for it).
    """
    require_postal_address(settings)
    require_public_sender(settings)
    if deliver_here is None:
        deliver_here = settings.is_sqlite
    with session_scope(engine) as session:
        issue = _locked(session, month)
        pinned = check_release(session, issue, revision, actor)
        if not begin_sending(session, issue, resume=resume, revision=pinned):
            return None
        if not deliver_here:
            plan = plan_deliveries(session, issue, settings)
            return JobOutcome(
                month,
                "sending",
                f"{plan.recipients} deliveries planned over {len(plan.variants)} variant(s); "
                "`newsletter worker` processes deliver them",
            )
    # send_issue plans (idempotently) and delivers in this process.
    report = send_issue(engine, settings, month, transport=transport, stop=stop)
    counts = ", ".join(f"{n} {status}" for status, n in sorted(report.totals.items()) if n)
    if report.issue_status == IssueStatus.SENT:
        if not counts:
            return JobOutcome(month, "sent", "no active subscribers yet: archived, nobody mailed")
        return JobOutcome(month, "sent", f"deliveries: {counts}")
    if report.paused:
        return JobOutcome(month, "failed", f"paused: {report.status_reason} ({counts})")
    return JobOutcome(
        month,
        "sending",
        f"interrupted ({counts}); `newsletter issue send {month}` finishes it",
    )


def check_release(session: Session, issue: Issue, revision: int | None, actor: str) -> int | None:
    """The revision that may go (None: a send already started, its content locked).

    Refusing commits what it found (a withdrawn approval, the audit entry) before raising,
    so the reason outlives the refusal.
    """
    if issue.status not in (IssueStatus.DRAFT, IssueStatus.APPROVED):
        return None
    pinned = revision if revision is not None else issue.approved_revision
    if pinned is None:
        reason = f"issue {issue.month} has no approved revision: approve it first"
        if issue.status == IssueStatus.APPROVED:  # approved before revisions were pinned
            revisions.withdraw(session, issue, actor, "approved before revisions were kept")
        session.commit()
        raise ReleaseRefused(reason)
    verdict = revisions.verify(session, issue, pinned, actor)
    if verdict.ok:
        return pinned
    revisions.withdraw(session, issue, actor, verdict.reason)
    audit.record(session, actor, "issue.release_refused", issue.month, verdict.reason)
    session.commit()
    raise ReleaseRefused(f"{issue.month} not sent: {verdict.reason}")


def send_by_hand(
    engine: Engine,
    settings: Settings,
    month: str,
    *,
    revision: int | None = None,
    force: bool = False,
    actor: str = audit.SYSTEM,
    dry_run: bool = False,
    resend_unknown: bool = False,
    progress: ProgressCallback | None = None,
    stop: threading.Event | None = None,
    transport: Transport | None = None,
) -> SendReport:
    """`newsletter issue send`: an operator's go, delivered in this process with progress.

    `revision` is the one the operator confirmed (the current one when None). In approval
    mode only the approved revision goes, unless `force`, which is audited. It also finishes
    what a crash, a pause or a missed schedule left (nobody twice), and resends unknown
    outcomes only when asked.
    """
    if not dry_run:
        with session_scope(engine) as session:
            issue = _locked(session, month)
            if issue.status in (IssueStatus.DRAFT, IssueStatus.APPROVED):
                shown = issue.revision if revision is None else revision
                approved = issue.approved_revision
                if settings.require_approval and approved != shown:
                    if not force:
                        raise ReleaseRefused(
                            f"issue {month} revision {shown} is not approved (approval mode): "
                            f"approve it first (`newsletter issue approve {month}`), or pass "
                            "--force to send it unapproved"
                        )
                    audit.record(
                        session, actor, "issue.send_forced", month, f"revision {shown} unapproved"
                    )
                check_release(session, issue, shown, actor)
                audit.record(session, actor, "issue.send", month, f"revision {shown}")
            elif resend_unknown:
                audit.record(session, actor, "issue.resend_unknown", month, "")
            revision = issue.revision
    return send_issue(
        engine,
        settings,
        month,
        revision=None if dry_run else revision,
        dry_run=dry_run,
        resend_unknown=resend_unknown,
        progress=progress,
        stop=stop,
        transport=transport,
    )


def approve_issue(
    engine: Engine,
    settings: Settings,
    month: str,
    revision: int,
    actor: str,
    *,
    transport: Transport | None = None,
    stop: threading.Event | None = None,
    deliver_here: bool | None = None,
) -> JobOutcome:
    """An editor's go-ahead from the CLI in approval mode: approve `revision`, send now."""
    with session_scope(engine) as session:
        _pin(session, settings, month, revision, actor, when=None, now=utcnow())
        audit.record(session, actor, "issue.approve", month, f"revision {revision}, send now")
    outcome = start_send(
        engine,
        settings,
        month,
        transport=transport,
        stop=stop,
        deliver_here=deliver_here,
        actor=actor,
    )
    if outcome is None:
        return JobOutcome(month, "already-started", f"another process started {month}")
    return outcome


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
    for variant in variants:
        for email in emails:
            result = send_test_copy(
                engine, settings, month, email, transport=transport, variant=variant
            )
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
            sent.append(line)
    return sent


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
    issue = _pin(session, settings, month, revision, actor, when=max(when, now), now=now)
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
    issue = _pin(session, settings, month, revision, actor, when=now, now=now)
    audit.record(session, actor, "issue.approve", month, f"revision {revision}, send now")
    return issue


def cancel_schedule(session: Session, month: str, actor: str) -> Issue:
    issue = _locked(session, month)
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


def pause(session: Session, month: str, actor: str) -> Issue:
    """Stop a send between batches (workers see it at their next claim); nobody gets it twice."""
    issue = find_issue(session, month)
    result = session.execute(
        update(Issue)
        .where(Issue.id == issue.id, Issue.status == str(IssueStatus.SENDING))
        .values(
            status=str(IssueStatus.PAUSED),
            status_reason=f"{PAUSED_BY_EDITOR} ({actor})",
            scheduled_for=None,
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        raise NewsletterError(
            f"issue {month} is {issue.status}; only a send in progress can be paused"
        )
    audit.record(session, actor, "issue.pause", month, "")
    session.flush()
    session.refresh(issue)
    return issue


def resume(session: Session, month: str, actor: str) -> Issue:
    """Hand a paused send back to the clock, which finishes what is left."""
    issue = find_issue(session, month)
    if issue.status != IssueStatus.PAUSED:
        raise NewsletterError(f"issue {month} is {issue.status}; only a paused send can resume")
    issue.scheduled_for = utcnow()
    session.add(issue)
    audit.record(session, actor, "issue.resume", month, issue.status_reason[:200])
    return issue


def send_due_issues(
    engine: Engine,
    settings: Settings,
    *,
    now: datetime | None = None,
    stop: threading.Event | None = None,
    transport: Transport | None = None,
    deliver_here: bool | None = None,
) -> list[str]:
    """The clock's check: start every issue whose scheduled time has come; returns outcomes.

    Each due schedule is taken by one conditional UPDATE, so two clocks never both start it
    (and `begin_sending` decides once more). Every attempt leaves a `JobRun`.
    """
    now = now or utcnow()
    with session_scope(engine) as session:
        due = session.exec(
            select(Issue.id, Issue.month, Issue.status, Issue.scheduled_for).where(
                Issue.scheduled_for.is_not(None),
                Issue.scheduled_for <= now,
                or_(
                    Issue.status.in_([str(s) for s in RELEASABLE]),
                    # A paused send resumes only on a time set after it started (an editor's
                    # resume), never on a schedule that predates it (sent by hand since).
                    and_(
                        Issue.status == str(IssueStatus.PAUSED),
                        Issue.scheduled_for > Issue.send_started_at,
                    ),
                ),
            )
        ).all()
    outcomes = []
    for issue_id, month, status, when in due:
        with session_scope(engine) as session:
            taken = session.execute(
                update(Issue)
                .where(Issue.id == issue_id, Issue.scheduled_for == when)
                .values(scheduled_for=None)
                .execution_options(synchronize_session=False)
            ).rowcount
        if taken != 1:
            continue
        when = as_utc(when)
        run = JobRun(job=SCHEDULED_JOB, month=month, scheduled_for=when, started_at=now)
        late = now - when
        if late > timedelta(hours=settings.send_cutoff_hours):
            outcome, message = (
                "missed",
                (
                    f"scheduled for {when:%Y-%m-%d %H:%M} UTC, {late.total_seconds() / 3600:.0f} h "
                    "late: not sent late; schedule it again from the desk"
                ),
            )
        else:
            try:
                result = start_send(
                    engine,
                    settings,
                    month,
                    transport=transport,
                    stop=stop,
                    deliver_here=deliver_here,
                    resume=status in (IssueStatus.PAUSED, IssueStatus.MISSED),
                )
                if result is None:
                    outcome, message = "already-started", f"another process started {month}"
                else:
                    outcome, message = result.outcome, result.message
            except ReleaseRefused as exc:
                outcome, message = "refused", str(exc)
            except NewsletterError as exc:
                outcome, message = "failed", str(exc)
        run.outcome, run.message, run.finished_at = outcome, message, utcnow()
        with session_scope(engine) as session:
            session.add(run)
        outcomes.append(f"{month}: {outcome}")
    return outcomes
