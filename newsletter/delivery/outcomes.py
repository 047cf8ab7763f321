"""What a batch's answer means: outcomes grouped for recording, the retry time, and the
error budget that pauses a send the provider keeps refusing.

Pure bookkeeping: the sending threads (`delivery.issue_run`) hand in the transport's answer
and write what comes out with their next claim (`claim.record_outcomes`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from newsletter.delivery import claim as store
from newsletter.delivery.pacing import RetryPolicy
from newsletter.models import DeliveryStatus
from newsletter.transports.base import Outcome, RecipientResult
from subscribers.models import utcnow

STATUS_OF = {
    Outcome.SENT: str(DeliveryStatus.SENT),
    Outcome.FAILED: str(DeliveryStatus.FAILED),
    Outcome.UNKNOWN: str(DeliveryStatus.UNKNOWN),
    Outcome.RETRY: str(DeliveryStatus.PENDING),
}
_OUTCOME_OF = {status: outcome for outcome, status in STATUS_OF.items()}
RETRY = Outcome.RETRY


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

    def add(self, tally: Counter[Outcome]) -> None:
        self.sent += tally[Outcome.SENT]
        self.failed += tally[Outcome.FAILED]
        self.unknown += tally[Outcome.UNKNOWN]
        self.retried += tally[Outcome.RETRY]


@dataclass(frozen=True)
class BatchOutcomes:
    groups: dict[store.OutcomeKind, list[int]]  # delivery ids per outcome, one UPDATE each
    tally: Counter[Outcome]
    retry_after: float | None  # the provider's hint, seconds: the rate limiter holds off
    last_error: str


def sort_outcomes(
    deliveries: Sequence[store.ClaimedDelivery],
    results: list[RecipientResult],
    policy: RetryPolicy,
) -> BatchOutcomes:
    """Match results to deliveries and group recipients that share an outcome (a request has
    one message id, one error), so recording costs one UPDATE per kind, not per recipient."""
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
        not_before = utcnow() + timedelta(seconds=policy.delay(attempt, retry_after))
    groups: dict[store.OutcomeKind, list[int]] = {}
    tally: Counter[Outcome] = Counter()
    last_error = ""
    for d, r in zip(deliveries, results, strict=False):
        kind = store.OutcomeKind(
            STATUS_OF[r.outcome],
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
        unknown = store.OutcomeKind(str(DeliveryStatus.UNKNOWN), error="no result from transport")
        groups.setdefault(unknown, []).extend(d.id for d in short)
        tally[Outcome.UNKNOWN] += len(short)
    return BatchOutcomes(groups, tally, retry_after, last_error)


class ErrorBudget:
    """Pauses a send once the provider refuses too much: requests in a row, or a share of
    recipients. Called under the run's lock; with several requests in flight, the first to
    cross the budget names the pause (the others that fail meanwhile change nothing)."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self._consecutive_failures = 0
        self._decided = False

    def observe(self, totals: RunTotals, tally: Counter[Outcome], last_error: str) -> str:
        """Count one batch's answer (already added to `totals`); the pause reason, or ""."""
        if tally[Outcome.SENT]:
            self._consecutive_failures = 0
        elif tally[Outcome.RETRY]:
            self._consecutive_failures += 1
        if self._decided:
            return ""
        reason = self._over_budget(totals, last_error)
        self._decided = bool(reason)
        return reason

    def _over_budget(self, totals: RunTotals, last_error: str) -> str:
        p = self.policy
        failures = self._consecutive_failures
        attempted = totals.sent + totals.failed + totals.unknown
        failed = totals.failed
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
