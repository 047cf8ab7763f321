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

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from newsletter import audit, revisions
from newsletter.approval import RELEASABLE, locked_issue, pin
from newsletter.db import session_scope
from newsletter.delivery import (
    SendReport,
    begin_sending,
    plan_deliveries,
    require_postal_address,
    require_public_sender,
    send_issue,
)
from newsletter.delivery.issue_run import ProgressCallback
from newsletter.doctor.preflight import domain_preflight, refuse_send
from newsletter.errors import NewsletterError
from newsletter.issues import find_issue
from newsletter.models import Issue, IssueStatus, JobRun
from newsletter.months import as_utc
from newsletter.settings import Settings
from newsletter.transports.base import Transport
from subscribers.models import utcnow

SCHEDULED_JOB = "scheduled-send"
PAUSED_BY_EDITOR = "paused by an editor"


class ReleaseRefused(NewsletterError):
    """The release path would not send: nothing approved, or not what was approved."""


@dataclass(frozen=True)
class JobOutcome:
    month: str
    # sent, sending, empty, missed, awaiting-approval, scheduled, already-started, busy,
    # failed, source-failed (a source kept failing: the draft waits for a person),
    # preflight-failed (the sending domain's DNS fails a check: the draft waits)
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
        issue = locked_issue(session, month)
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
            issue = locked_issue(session, month)
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
        pin(session, settings, month, revision, actor, when=None, now=utcnow())
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
        elif (dns := domain_preflight(settings)).failures:
            who = f"The send scheduled for {when:%Y-%m-%d %H:%M} UTC (schedule cleared)"
            outcome, message = "preflight-failed", refuse_send(settings, month, dns.failures, who)
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
