"""Sending an issue: claim a batch of one variant, send it in one request, record, repeat.

`send_issue` is what `newsletter issue send` does; `drain` is one pass of `newsletter
worker`. Both run the same loop (`IssueRun`) on `send_concurrency` threads sharing one rate
limiter. The transport sees one rendered body per batch; per-recipient links travel as
substitutions. Outcomes: sent and failed are final; a refusal for now (429, 5xx) goes back
to pending with a not-before time; an unknown outcome is recorded and never resent unless
an operator asks (`--resend-unknown`).
"""

from __future__ import annotations

import html
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session

from newsletter.db import session_scope
from newsletter.delivery import claim as store
from newsletter.delivery.heap import quiet_gc
from newsletter.delivery.pacing import RateLimiter, RetryPolicy
from newsletter.delivery.plan import (
    PLANNING_REASON,
    PlanReport,
    begin_sending,
    plan_deliveries,
    preview_plan,
)
from newsletter.errors import NewsletterError
from newsletter.issues import load_issue_contents
from newsletter.models import DeliveryStatus, Issue, IssueStatus
from newsletter.rendering import (
    EVERYTHING,
    RecipientFields,
    RenderedEmail,
    list_headers,
    preview_substitutions,
    render_issue_variant,
)
from newsletter.settings import Settings
from newsletter.substitution import placeholder
from newsletter.transports import get_transport
from newsletter.transports.base import (
    Batch,
    Outcome,
    Recipient,
    RecipientResult,
    Transport,
    TransportUnavailable,
)
from subscribers.models import utcnow

log = logging.getLogger(__name__)

_STATUS_OF = {
    Outcome.SENT: str(DeliveryStatus.SENT),
    Outcome.FAILED: str(DeliveryStatus.FAILED),
    Outcome.UNKNOWN: str(DeliveryStatus.UNKNOWN),
    Outcome.RETRY: str(DeliveryStatus.PENDING),
}
_OUTCOME_OF = {status: outcome for outcome, status in _STATUS_OF.items()}
RETRY = Outcome.RETRY


@dataclass(frozen=True)
class SendProgress:
    total: int
    sent: int
    failed: int
    skipped: int
    unknown: int

    @property
    def done(self) -> int:
        return self.sent + self.failed + self.skipped + self.unknown

    @property
    def remaining(self) -> int:
        return max(0, self.total - self.done)


ProgressCallback = Callable[[SendProgress], None]


@dataclass
class RunTotals:
    """What one run did (this process only)."""

    sent: int = 0
    failed: int = 0
    skipped: int = 0
    unknown: int = 0
    retried: int = 0  # recipients put back for a later retry
    requests: int = 0  # batches handed to the transport
    paused_reason: str = ""

    @property
    def processed(self) -> int:
        return self.sent + self.failed + self.skipped + self.unknown


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


def _find_issue(session: Session, month: str) -> Issue:
    issue = session.execute(select(Issue).where(Issue.month == month)).scalar()
    if issue is None:
        raise NewsletterError(
            f"there is no issue for {month}: run `newsletter issue compose {month}` first"
        )
    return issue


def require_postal_address(settings: Settings) -> None:
    """Bulk mail must carry a postal address (CAN-SPAM): refuse before anything is sent."""
    if not settings.postal_address.strip():
        raise NewsletterError(
            "NEWSLETTER_POSTAL_ADDRESS is not set: bulk mail must show a postal address "
            "(CAN-SPAM); set it and send again"
        )


def require_public_sender(settings: Settings) -> None:
    """A public site must not mail from `@localhost`: receivers reject or junk it, and its
    Message-IDs name a host nobody owns. Refuse before anything is sent."""
    if not settings.base_url_is_loopback and settings.from_domain_is_local:
        raise NewsletterError(
            f"NEWSLETTER_FROM ({settings.from_}) uses the local domain "
            f"{settings.from_domain!r} while NEWSLETTER_BASE_URL is public "
            f"({settings.base_url}); set it to an address on a domain you own"
        )


class _ThreadState(threading.local):
    """What one sending thread carries from one batch to the next."""

    pending: dict[store.OutcomeKind, list[int]] | None = None  # outcomes not yet written
    variant: str | None = None  # of its last claim: tried first by the next one


class IssueRun:
    """One process's share of sending one issue, on `settings.send_concurrency` threads."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        issue: Issue,
        *,
        worker_id: str,
        transport: Transport,
        stop: threading.Event,
        limiter: RateLimiter,
        policy: RetryPolicy,
        progress: ProgressCallback | None = None,
        wait_for_others: bool = False,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.issue = issue
        self.worker_id = worker_id
        self.transport = transport
        self.stop = stop
        self.limiter = limiter
        self.policy = policy
        self.progress = progress
        self.wait_for_others = wait_for_others
        self.totals = RunTotals()
        self.halt = threading.Event()  # paused or failed: every thread of this run stops
        self._lock = threading.Lock()
        self._thread = _ThreadState()
        self._renders: dict[str, tuple[RenderedEmail, RecipientFields]] = {}
        self._render_lock = threading.Lock()
        self._in_flight_done = threading.Event()
        self._consecutive_failures = 0
        self._pause_decided = False  # the error budget pauses a run once
        self._counts: Counter[str] = Counter()
        self._total = 0
        self._errors: list[BaseException] = []
        self._shared_headers = list_headers(settings)

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> RunTotals:
        counts = store.delivery_counts(self.engine, self.issue.id)  # type: ignore[arg-type]
        self._total = sum(counts.values())
        self._counts = counts
        self._report()
        # Compile every variant up front, so a claimed batch is in flight at once: a claim
        # is what a crash turns into `unknown`, so the claim-to-request gap stays short.
        for variant in store.pending_variants(self.engine, self.issue.id):  # type: ignore[arg-type]
            self._rendered(variant)
        with quiet_gc():
            self._run_threads()
        if self._errors:
            raise self._errors[0]
        return self.totals

    def _run_threads(self) -> None:
        threads = [
            threading.Thread(target=self._worker, name=f"send-{i}", daemon=True)
            for i in range(self.settings.send_concurrency)
        ]
        heartbeat = threading.Thread(target=self._renew_leases, name="lease", daemon=True)
        heartbeat.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self._in_flight_done.set()
        heartbeat.join()

    def _renew_leases(self) -> None:
        """Keep the leases of this run's batches in flight alive: a slow request must not
        look abandoned to another worker (which would record it `unknown`)."""
        lease = self.settings.send_lease_seconds
        while not self._in_flight_done.wait(lease / 3):
            try:
                store.renew_leases(self.engine, self.issue.id, self.worker_id, lease)  # type: ignore[arg-type]
            except Exception:  # noqa: BLE001 - try again next beat; the lease still runs
                log.exception("could not renew the leases of %s", self.worker_id)

    def _worker(self) -> None:
        try:
            try:
                while not (self.stop.is_set() or self.halt.is_set()):
                    if not self._one_batch():
                        break
            finally:
                self._flush_outcomes()
        except BaseException as exc:  # surfaced by run(); siblings stop too
            self.halt.set()
            with self._lock:
                self._errors.append(exc)

    def _flush_outcomes(self) -> None:
        """Write this thread's last outcomes now (they wait to ride with its next claim)."""
        outcomes = self._thread.pending
        if outcomes:
            store.record_outcomes(self.engine, self.worker_id, outcomes)
        self._thread.pending = None

    def _one_batch(self) -> bool:
        """Claim and send one batch; False when there is nothing more for this thread.

        The previous batch's outcomes are recorded by the claim of the next (one commit
        per batch), unless the rate limiter is about to make this thread wait: an outcome
        never waits in memory longer than it takes to claim.
        """
        size = self.settings.batch_size
        if self.limiter.would_wait():
            self._flush_outcomes()
        self.limiter.acquire(size, self.stop)
        if self.stop.is_set() or self.halt.is_set():
            self.limiter.refund(size)
            return False
        batch = store.claim_batch(
            self.engine,
            self.issue.id,  # type: ignore[arg-type]
            self.worker_id,
            size,
            lease_seconds=self.settings.send_lease_seconds,
            outcomes=self._thread.pending,
            prefer=self._thread.variant,
        )
        self._thread.pending = None
        self._thread.variant = batch.variant if batch else None
        if batch is None:
            self.limiter.refund(size)
            return self._wait_for_work()
        self.limiter.refund(size - len(batch.deliveries))
        if batch.skipped:
            self._count({str(DeliveryStatus.SKIPPED): batch.skipped})
            with self._lock:
                self.totals.skipped += batch.skipped
        if batch.deliveries:
            self._send(batch)
        return True

    def _wait_for_work(self) -> bool:
        """Nothing claimable now: wait for back-offs and in-flight batches, or finish."""
        left = store.backlog(self.engine, self.issue.id, self.worker_id)  # type: ignore[arg-type]
        if left.issue_status != str(IssueStatus.SENDING):
            return False
        if left.ready:
            return True
        waits = left.later is not None or left.claimed_by_me > 0
        if self.wait_for_others and left.claimed_by_others:
            store.recover_abandoned(self.engine, self.issue.id)  # type: ignore[arg-type]
            waits = True
        if not waits:
            return False
        pause = 0.2
        if left.later is not None:
            pause = max(0.01, min(1.0, (left.later - utcnow()).total_seconds()))
        self.stop.wait(pause)
        return True

    # -- one batch -----------------------------------------------------------------------
    def _rendered(self, variant: str) -> tuple[RenderedEmail, RecipientFields]:
        with self._render_lock:  # compile each variant once, even with many threads
            hit = self._renders.get(variant)
            if hit is None:
                with session_scope(self.engine) as session:
                    rendered = render_issue_variant(session, self.issue, variant, self.settings)
                hit = (rendered, RecipientFields(self.settings, self.issue, variant))
                self._renders[variant] = hit
            return hit

    def _send(self, batch: store.ClaimedBatch) -> None:
        rendered, fields = self._rendered(batch.variant)
        recipients = []
        for d in batch.deliveries:
            substitutions, headers = fields(d.public_id, d.token_version, d.email)
            recipients.append(Recipient(d.email, substitutions, headers, d.id))
        message = Batch(
            subject=rendered.subject,
            html=rendered.html,
            text=rendered.text,
            recipients=recipients,
            from_addr=self.settings.from_,
            reply_to=self.settings.reply_to,
            headers=self._shared_headers,
            categories=(self.issue.month,),
        )
        ids = [d.id for d in batch.deliveries]
        with self._lock:
            self.totals.requests += 1
        try:
            results = self.transport.send_batch(message)
        except TransportUnavailable as exc:
            store.release(self.engine, self.worker_id, ids)
            self._pause(str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - a transport bug: outcome unknown, never resend
            log.exception("transport %s raised", self.transport.name)
            results = [
                RecipientResult(r.email, Outcome.UNKNOWN, error=f"transport error: {exc!r}")
                for r in recipients
            ]
        self._record(batch, results)

    def _record(self, batch: store.ClaimedBatch, results: list[RecipientResult]) -> None:
        deliveries = batch.deliveries
        # Transports answer in batch order; match by delivery id only if one did not.
        in_order = len(results) == len(deliveries) and all(
            r.delivery_id in (None, d.id) for d, r in zip(deliveries, results, strict=True)
        )
        if not in_order:
            by_id = {r.delivery_id: r for r in results if r.delivery_id is not None}
            results = [by_id.get(d.id, r) for d, r in zip(deliveries, results, strict=False)]
        retried = [(d, r) for d, r in zip(deliveries, results, strict=False) if r.outcome is RETRY]
        retry_after: float | None = None
        not_before = None
        if retried:
            # One not-before time for the whole refused batch (jitter per batch, not per
            # recipient), so it becomes claimable at once and goes out again as one request.
            hints = [r.retry_after for _, r in retried if r.retry_after is not None]
            retry_after = max(hints) if hints else None
            attempt = max(d.attempts for d, _ in retried) + 1
            not_before = utcnow() + timedelta(seconds=self.policy.delay(attempt, retry_after))
        # Recipients sharing an outcome (a request has one message id, one error) are
        # recorded together: one UPDATE per kind, not one per recipient.
        groups: dict[store.OutcomeKind, list[int]] = {}
        tally: Counter[str] = Counter()
        last_error = ""
        for d, r in zip(deliveries, results, strict=False):
            kind = store.OutcomeKind(
                _STATUS_OF[r.outcome],
                r.message_id,
                r.error,
                not_before if r.outcome is RETRY else None,
            )
            ids = groups.get(kind)
            if ids is None:
                groups[kind] = ids = []
                if r.error:
                    last_error = r.error
            ids.append(d.id)
        for kind, ids in groups.items():
            tally[_OUTCOME_OF[kind.status]] += len(ids)
        short = deliveries[len(results) :]  # a transport that answered short
        if short:
            unknown = store.OutcomeKind(
                str(DeliveryStatus.UNKNOWN), error="no result from transport"
            )
            groups.setdefault(unknown, []).extend(d.id for d in short)
            tally[Outcome.UNKNOWN] += len(short)
        self._thread.pending = groups  # written by this thread's next claim or flush
        if retry_after:
            self.limiter.hold(retry_after)
        with self._lock:
            t = self.totals
            t.sent += tally[Outcome.SENT]
            t.failed += tally[Outcome.FAILED]
            t.unknown += tally[Outcome.UNKNOWN]
            t.retried += tally[Outcome.RETRY]
            if tally[Outcome.SENT]:
                self._consecutive_failures = 0
            elif tally[Outcome.RETRY]:
                self._consecutive_failures += 1
            failures = self._consecutive_failures
            attempted = t.sent + t.failed + t.unknown
            failed = t.failed
            # Decided under the lock, once: with several requests in flight, the first to
            # cross the budget names the pause (the others that fail meanwhile change nothing).
            reason = ""
            if not self._pause_decided:
                reason = self._over_budget(failures, failed, attempted, last_error)
            self._pause_decided = self._pause_decided or bool(reason)
        self._count(
            {
                str(DeliveryStatus.SENT): tally[Outcome.SENT],
                str(DeliveryStatus.FAILED): tally[Outcome.FAILED],
                str(DeliveryStatus.UNKNOWN): tally[Outcome.UNKNOWN],
            }
        )
        if reason:
            self._pause(reason)

    def _over_budget(self, failures: int, failed: int, attempted: int, last_error: str) -> str:
        """Why the error budget pauses the send now ("" while within it)."""
        p = self.policy
        if failures >= p.max_consecutive_failures:
            return (
                f"the provider refused {failures} requests in a row (last: {last_error}); "
                "resume with `newsletter issue send` once it recovers"
            )
        if failed >= p.min_failed_to_pause and failed > p.max_failed_fraction * attempted:
            return (
                f"{failed} of {attempted} recipients refused (last: {last_error}); see "
                "`newsletter issue status`, then resume with `newsletter issue send`"
            )
        return ""

    def _pause(self, reason: str) -> None:
        with session_scope(self.engine) as session:
            session.execute(
                update(Issue)
                .where(Issue.id == self.issue.id, Issue.status == str(IssueStatus.SENDING))
                .values(status=str(IssueStatus.PAUSED), status_reason=reason[:2000])
                .execution_options(synchronize_session=False)
            )
        with self._lock:
            self.totals.paused_reason = self.totals.paused_reason or reason
        self.halt.set()

    def _count(self, delta: dict[str, int]) -> None:
        with self._lock:
            self._counts.update(delta)
            self._counts[store.PENDING] -= sum(delta.values())
        self._report()

    def _report(self) -> None:
        if self.progress is None:
            return
        with self._lock:
            c = self._counts
            snapshot = SendProgress(
                total=self._total,
                sent=c[str(DeliveryStatus.SENT)],
                failed=c[str(DeliveryStatus.FAILED)],
                skipped=c[str(DeliveryStatus.SKIPPED)],
                unknown=c[str(DeliveryStatus.UNKNOWN)],
            )
            self.progress(snapshot)


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
) -> SendReport:
    """Plan and deliver the month's issue until nothing is left; safe to run again.

    A second run finishes what a crash or a pause left; an issue already sent sends nothing.
    """
    require_postal_address(settings)
    require_public_sender(settings)
    started = time.monotonic()
    stop = stop or threading.Event()
    # SQLite allows one writer: never open a second connection while this session is open.
    with session_scope(engine) as session:
        issue = _find_issue(session, month)
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
        begin_sending(session, issue, resume=True)
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


def send_test_copy(
    engine: Engine,
    settings: Settings,
    month: str,
    email: str,
    transport: Transport | None = None,
) -> RecipientResult:
    """One copy of the full issue to `email`, subject marked "[TEST]"; no Delivery row.

    Its links are the preview's (clearly fake tokens): a test copy unsubscribes nobody.
    """
    require_public_sender(settings)
    try:
        email = validate_email(email, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise NewsletterError(f"--test {email!r}: not a valid email address ({exc})") from None
    with session_scope(engine) as session:
        issue = _find_issue(session, month)
        if not load_issue_contents(session, issue).entries:
            raise NewsletterError(f"issue {month} lists no papers: nothing to send a test of")
        rendered = render_issue_variant(session, issue, EVERYTHING, settings)
    substitutions = preview_substitutions(settings, issue, EVERYTHING)
    substitutions[placeholder("email")] = html.escape(email, quote=True)
    batch = Batch(
        subject=f"[TEST] {rendered.subject}",
        html=rendered.html,
        text=rendered.text,
        recipients=[Recipient(email=email, substitutions=substitutions)],
        from_addr=settings.from_,
        reply_to=settings.reply_to,
        headers={**list_headers(settings), "X-Newsletter-Test": "yes"},
        categories=(issue.month, "test"),
    )
    own_transport = transport is None
    transport = transport or get_transport(settings)
    try:
        try:
            result = transport.send_batch(batch)[0]
        except TransportUnavailable as exc:
            raise NewsletterError(f"test copy not sent: {exc}") from None
    finally:
        if own_transport:
            transport.close()
    if result.outcome is not Outcome.SENT:
        raise NewsletterError(f"test copy to {email} was not sent: {result.error}")
    return result
