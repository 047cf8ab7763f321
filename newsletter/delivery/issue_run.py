"""One process's share of sending one issue: claim a batch of one variant, send it in one
request, record, repeat, on `send_concurrency` threads sharing one rate limiter.

The transport sees one rendered body per batch; per-recipient links travel as substitutions.
A thread's outcomes ride with its next claim (one commit per batch); a heartbeat keeps the
leases of batches in flight alive, so only a dead sender's batch is ever declared unknown.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import update
from sqlalchemy.engine import Engine

from newsletter.db import session_scope
from newsletter.delivery import claim as store
from newsletter.delivery.heap import quiet_gc
from newsletter.delivery.outcomes import ErrorBudget, RunTotals, sort_outcomes
from newsletter.delivery.pacing import RateLimiter, RetryPolicy
from newsletter.models import DeliveryStatus, Issue, IssueStatus
from newsletter.rendering import RecipientFields, RenderedEmail, list_headers, render_issue_variant
from newsletter.settings import Settings
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
        self._budget = ErrorBudget(policy)
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
        outcomes = sort_outcomes(batch.deliveries, results, self.policy)
        self._thread.pending = outcomes.groups  # written by this thread's next claim or flush
        if outcomes.retry_after:
            self.limiter.hold(outcomes.retry_after)
        tally = outcomes.tally
        with self._lock:
            self.totals.add(tally)
            reason = self._budget.observe(self.totals, tally, outcomes.last_error)
        self._count(
            {
                str(DeliveryStatus.SENT): tally[Outcome.SENT],
                str(DeliveryStatus.FAILED): tally[Outcome.FAILED],
                str(DeliveryStatus.UNKNOWN): tally[Outcome.UNKNOWN],
            }
        )
        if reason:
            self._pause(reason)

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
