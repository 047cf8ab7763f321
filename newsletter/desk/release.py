"""Releasing an issue from the desk: test copy, approve now, schedule, cancel, pause, resume,
and the live progress of a send.

The web process never sends an issue itself. Approving or scheduling sets
`Issue.scheduled_for`; the clock's scheduled-send check (`send_due_issues`, every
`NEWSLETTER_SCHEDULE_CHECK_SECONDS`) starts the send through the same `start_send` as the
monthly job, so the once-only transition, planning and workers are the ones already tested.
A schedule missed by more than `NEWSLETTER_SEND_CUTOFF_HOURS` (clock down) is not sent late.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, or_, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from newsletter.db import session_scope
from newsletter.delivery import send_test_copy
from newsletter.delivery.claim import delivery_counts
from newsletter.desk import audit
from newsletter.desk.editing import find_issue
from newsletter.errors import NewsletterError
from newsletter.models import DeliveryStatus, Issue, IssueStatus, JobRun
from newsletter.settings import Settings
from newsletter.transports.base import Transport
from subscribers.models import utcnow

SCHEDULED_JOB = "scheduled-send"
RELEASABLE = (IssueStatus.DRAFT, IssueStatus.APPROVED, IssueStatus.MISSED)
PAUSED_BY_EDITOR = "paused by an editor"


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def send_test(engine: Engine, settings: Settings, month: str, email: str, actor: str) -> str:
    """A test copy to an editor address; returns the address it went to."""
    if email not in settings.editor_emails:
        raise NewsletterError(f"{email!r} is not an editor address (NEWSLETTER_EDITORS)")
    send_test_copy(engine, settings, month, email)
    with session_scope(engine) as session:
        audit.record(session, actor, "issue.test", month, f"test copy to {email}")
    return email


def schedule(
    session: Session, month: str, when: datetime, actor: str, *, now: datetime | None = None
) -> Issue:
    """Approve the issue for sending at `when` (UTC); the clock starts it then."""
    now = now or utcnow()
    issue = find_issue(session, month)
    if issue.status not in RELEASABLE:
        raise NewsletterError(f"issue {month} is {issue.status}; only a draft can be scheduled")
    when = _aware(when).astimezone(UTC)
    if when < now - timedelta(minutes=1):
        raise NewsletterError(f"{when:%Y-%m-%d %H:%M} UTC is in the past; pick a later time")
    issue.scheduled_for = max(when, now)
    issue.status = IssueStatus.APPROVED
    issue.approved_at = now
    session.add(issue)
    audit.record(
        session, actor, "issue.schedule", month, f"send at {issue.scheduled_for:%Y-%m-%d %H:%M} UTC"
    )
    return issue


def approve_now(session: Session, month: str, actor: str) -> Issue:
    issue = schedule(session, month, utcnow(), actor)
    audit.record(session, actor, "issue.approve", month, "send now")
    return issue


def cancel_schedule(session: Session, month: str, actor: str) -> Issue:
    issue = find_issue(session, month)
    if issue.scheduled_for is None or issue.status not in RELEASABLE:
        raise NewsletterError(f"issue {month} has no schedule to cancel (it is {issue.status})")
    issue.scheduled_for = None
    if issue.status == IssueStatus.APPROVED:
        issue.status = IssueStatus.DRAFT
        issue.approved_at = None
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


@dataclass(frozen=True)
class Progress:
    month: str
    status: str
    reason: str
    total: int
    sent: int
    failed: int
    unknown: int
    skipped: int
    left: int
    rate: float  # recipients per second since the send started
    scheduled_for: datetime | None

    def as_dict(self) -> dict[str, object]:
        data = dict(self.__dict__)
        data["scheduled_for"] = self.scheduled_for.isoformat() if self.scheduled_for else None
        data["rate"] = round(self.rate, 1)
        return data


def progress(engine: Engine, month: str) -> Progress:
    with session_scope(engine) as session:
        issue = find_issue(session, month)
        session.expunge(issue)
    counts = delivery_counts(engine, issue.id)  # type: ignore[arg-type]
    done = sum(
        counts[str(s)]
        for s in (
            DeliveryStatus.SENT,
            DeliveryStatus.FAILED,
            DeliveryStatus.UNKNOWN,
            DeliveryStatus.SKIPPED,
        )
    )
    total = sum(counts.values())
    rate = 0.0
    if issue.send_started_at is not None:
        end = _aware(issue.sent_at) if issue.sent_at else utcnow()
        seconds = (end - _aware(issue.send_started_at)).total_seconds()
        rate = done / seconds if seconds > 0 else 0.0
    return Progress(
        month=issue.month,
        status=issue.status,
        reason=issue.status_reason,
        total=total,
        sent=counts[str(DeliveryStatus.SENT)],
        failed=counts[str(DeliveryStatus.FAILED)],
        unknown=counts[str(DeliveryStatus.UNKNOWN)],
        skipped=counts[str(DeliveryStatus.SKIPPED)],
        left=total - done,
        rate=rate,
        scheduled_for=issue.scheduled_for,
    )


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
    from newsletter.scheduler import start_send

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
        when = _aware(when)
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
            except NewsletterError as exc:
                outcome, message = "failed", str(exc)
        run.outcome, run.message, run.finished_at = outcome, message, utcnow()
        with session_scope(engine) as session:
            session.add(run)
        outcomes.append(f"{month}: {outcome}")
    return outcomes
