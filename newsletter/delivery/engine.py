"""Sending an issue to the end: plan, run the batch loop, mark it sent once nothing is left.

`send_issue` is what `newsletter issue send` does; `drain` is one pass of `newsletter
worker`. Both run the same loop (`delivery.issue_run.IssueRun`) after the same pre-flight
checks (`delivery.preflight`); what each answer means is `delivery.outcomes`. Outcomes:
sent and failed are final; a refusal for now (429, 5xx) goes back to pending with a
not-before time; an unknown outcome is recorded and never resent unless an operator asks
(`--resend-unknown`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine

from newsletter.db import session_scope
from newsletter.delivery import claim as store
from newsletter.delivery.issue_run import IssueRun, ProgressCallback
from newsletter.delivery.outcomes import RunTotals
from newsletter.delivery.pacing import RateLimiter, RetryPolicy
from newsletter.delivery.plan import (
    PLANNING_REASON,
    PlanReport,
    begin_sending,
    plan_deliveries,
    preview_plan,
)
from newsletter.delivery.preflight import require_postal_address, require_public_sender
from newsletter.errors import NewsletterError
from newsletter.issues import find_issue, load_issue_contents
from newsletter.models import DeliveryStatus, Issue, IssueStatus
from newsletter.rendering import render_issue_variant
from newsletter.settings import Settings
from newsletter.transports import get_transport
from newsletter.transports.base import Transport
from subscribers.models import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SendReport:
    month: str
    issue_status: str
    status_reason: str = ""
    plan: PlanReport | None = None
    run: RunTotals = field(default_factory=RunTotals)
    totals: dict[str, int] = field(default_factory=dict)  # every delivery, by status
    recovered_unknown: int = 0  # claims of a dead sender declared unknown by this run
    reopened_unknown: int = 0  # unknown deliveries sent again on request
    already_sent: bool = False
    dry_run: bool = False
    stopped: bool = False  # interrupted; run again to finish
    elapsed: float = 0.0

    @property
    def paused(self) -> bool:
        return self.issue_status == str(IssueStatus.PAUSED)


def _report_without_sending(engine: Engine, issue: Issue, *, already_sent: bool) -> SendReport:
    totals = dict(store.delivery_counts(engine, issue.id))  # type: ignore[arg-type]
    return SendReport(
        issue.month, issue.status, issue.status_reason, totals=totals, already_sent=already_sent
    )


def finish_if_done(engine: Engine, issue_id: int) -> bool:
    """Mark the issue `sent` once every delivery is final; True if this call did it."""
    with session_scope(engine) as session:
        counts = Counter(
            dict(
                session.execute(
                    select(store._D.c.status, func.count())
                    .where(store._D.c.issue_id == issue_id)
                    .group_by(store._D.c.status)
                ).all()
            )
        )
        if counts[store.PENDING] or counts[store.CLAIMED]:
            return False
        notes = [
            f"{counts[s]} {s}"
            for s in (str(DeliveryStatus.FAILED), str(DeliveryStatus.UNKNOWN))
            if counts[s]
        ]
        reason = ("; ".join(notes) + " (see `newsletter issue status`)") if notes else ""
        result = session.execute(
            update(Issue)
            .where(
                Issue.id == issue_id,
                Issue.status == str(IssueStatus.SENDING),
                Issue.status_reason != PLANNING_REASON,
            )
            .values(status=str(IssueStatus.SENT), status_reason=reason, sent_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1


def send_issue(
    engine: Engine,
    settings: Settings,
    month: str,
    *,
    dry_run: bool = False,
    resend_unknown: bool = False,
    progress: ProgressCallback | None = None,
    stop: threading.Event | None = None,
    transport: Transport | None = None,
    policy: RetryPolicy | None = None,
    revision: int | None = None,
) -> SendReport:
    """Plan and deliver the month's issue until nothing is left; safe to run again.

    A second run finishes what a crash or a pause left; an issue already sent sends nothing.
    With `revision` (the release path's check), a draft starts only while still at it.
    """
    require_postal_address(settings)
    require_public_sender(settings)
    started = time.monotonic()
    stop = stop or threading.Event()
    # SQLite allows one writer: never open a second connection while this session is open.
    with session_scope(engine) as session:
        issue = find_issue(session, month)
        has_papers = bool(load_issue_contents(session, issue).entries)
        session.expunge(issue)
    if issue.status == str(IssueStatus.SENT) and not resend_unknown:
        return _report_without_sending(engine, issue, already_sent=True)
    if issue.status in (IssueStatus.DRAFT, IssueStatus.APPROVED) and not has_papers:
        raise NewsletterError(
            f"issue {month} lists no papers: import papers for {month} and run "
            f"`newsletter issue compose {month}` first"
        )
    if dry_run:
        with session_scope(engine) as session:
            plan = preview_plan(session, issue)
            for variant in plan.variants:
                render_issue_variant(session, issue, variant, settings)
        return SendReport(month, issue.status, issue.status_reason, plan=plan, dry_run=True)
    reopened = 0
    if resend_unknown:
        reopened = store.reopen_unknown(engine, issue.id)  # type: ignore[arg-type]
        if reopened:
            with session_scope(engine) as session:
                session.execute(
                    update(Issue)
                    .where(Issue.id == issue.id, Issue.status == str(IssueStatus.SENT))
                    .values(status=str(IssueStatus.SENDING), status_reason="")
                    .execution_options(synchronize_session=False)
                )
    with session_scope(engine) as session:
        issue = session.get(Issue, issue.id)
        assert issue is not None
        begin_sending(session, issue, resume=True, revision=revision)
        if revision is not None and issue.status in (IssueStatus.DRAFT, IssueStatus.APPROVED):
            raise NewsletterError(
                f"issue {month} changed while the send was starting (now revision "
                f"{issue.revision}, not {revision}): nothing was sent"
            )
        if issue.status == str(IssueStatus.SENDING):
            plan = plan_deliveries(session, issue, settings)
        session.expunge(issue)
    if issue.status != str(IssueStatus.SENDING):
        return _report_without_sending(
            engine, issue, already_sent=issue.status == str(IssueStatus.SENT)
        )
    recovered = store.recover_abandoned(engine, issue.id)  # type: ignore[arg-type]
    own_transport = transport is None
    transport = transport or get_transport(settings)
    _begin_send(transport)
    try:
        run = IssueRun(
            engine,
            settings,
            issue,
            worker_id=store.new_worker_id(),
            transport=transport,
            stop=stop,
            limiter=RateLimiter(settings.send_rate),
            policy=policy or RetryPolicy(),
            progress=progress,
            wait_for_others=True,
        ).run()
    finally:
        if own_transport:
            transport.close()
    finish_if_done(engine, issue.id)  # type: ignore[arg-type]
    with session_scope(engine) as session:
        issue = session.get(Issue, issue.id)
        assert issue is not None
        status, reason = issue.status, issue.status_reason
    return SendReport(
        month,
        status,
        reason,
        plan=plan,
        run=run,
        totals=dict(store.delivery_counts(engine, issue.id)),  # type: ignore[arg-type]
        recovered_unknown=recovered,
        reopened_unknown=reopened,
        stopped=stop.is_set() and status == str(IssueStatus.SENDING),
        elapsed=time.monotonic() - started,
    )


def _begin_send(transport: Transport) -> None:
    """A transport that keeps files (the outbox) tidies what a killed sender left."""
    begin = getattr(transport, "begin_send", None)
    if callable(begin):
        begin()


def drain(
    engine: Engine,
    settings: Settings,
    *,
    worker_id: str,
    stop: threading.Event,
    transport: Transport | None = None,
    policy: RetryPolicy | None = None,
) -> int:
    """One pass over every issue that is `sending`; returns deliveries processed."""
    require_postal_address(settings)
    require_public_sender(settings)
    with session_scope(engine) as session:
        issues = (
            session.execute(
                select(Issue).where(Issue.status == str(IssueStatus.SENDING)).order_by(Issue.id)
            )
            .scalars()
            .all()
        )
        session.expunge_all()
    if not issues:
        return 0
    own_transport = transport is None
    transport = transport or get_transport(settings)
    _begin_send(transport)
    limiter = RateLimiter(settings.send_rate)
    processed = 0
    try:
        for issue in issues:
            if stop.is_set():
                break
            store.recover_abandoned(engine, issue.id)  # type: ignore[arg-type]
            totals = IssueRun(
                engine,
                settings,
                issue,
                worker_id=worker_id,
                transport=transport,
                stop=stop,
                limiter=limiter,
                policy=policy or RetryPolicy(),
            ).run()
            processed += totals.processed
            finish_if_done(engine, issue.id)  # type: ignore[arg-type]
    finally:
        if own_transport:
            transport.close()
    return processed
