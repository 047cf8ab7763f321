"""The live progress of a send, as the desk's issue page and its JSON poll show it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Engine

from newsletter.db import session_scope
from newsletter.delivery.claim import delivery_counts
from newsletter.issues import find_issue
from newsletter.models import DeliveryStatus
from newsletter.months import as_utc
from subscribers.models import utcnow


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
    waiting: str = ""  # before a send starts: what it waits for, instead of "0 of 0"

    def as_dict(self) -> dict[str, object]:
        data = dict(self.__dict__)
        data["scheduled_for"] = self.scheduled_for.isoformat() if self.scheduled_for else None
        data["rate"] = round(self.rate, 1)
        return data


def _waiting(status: str, scheduled_for: datetime | None, check_seconds: float) -> str:
    if scheduled_for is None or status not in ("draft", "approved", "missed", "paused"):
        return ""
    when = as_utc(scheduled_for)
    if when > utcnow():
        return f"scheduled for {when:%Y-%m-%d %H:%M} UTC; the clock starts the send then"
    return f"waiting for the clock (next check within {check_seconds:g} s)"


def progress(engine: Engine, month: str, check_seconds: float = 30.0) -> Progress:
    """`check_seconds`: how often the clock looks for due sends (what "waiting" promises)."""
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
        end = as_utc(issue.sent_at) if issue.sent_at else utcnow()
        seconds = (end - as_utc(issue.send_started_at)).total_seconds()
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
        waiting=_waiting(issue.status, issue.scheduled_for, check_seconds),
    )
