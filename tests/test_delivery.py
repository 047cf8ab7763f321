"""The delivery engine on SQLite and PostgreSQL: planning, claiming, outcomes, resuming."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from sqlalchemy import func, select, update
from sqlmodel import Session

from newsletter.delivery import (
    RetryPolicy,
    begin_sending,
    drain,
    issue_status,
    new_worker_id,
    plan_deliveries,
    send_issue,
    send_test_copy,
)
from newsletter.errors import NewsletterError
from newsletter.models import Delivery, Issue
from newsletter.settings import load_settings
from newsletter.testing.fake_sendgrid import FakeSendgrid
from newsletter.testing.sample_send import issue_topics, seed_issue, seed_subscribers, topic_sets
from newsletter.transports.base import Batch, RecipientResult
from newsletter.transports.outbox import OutboxTransport
from newsletter.transports.sendgrid import SendgridTransport
from subscribers import lifecycle
from subscribers.models import Subscriber, SubscriberStatus

KEY = "SG.test-key"
MONTH = "2026-04"
FAST = RetryPolicy(base_delay=0.02, max_delay=0.1)


@pytest.fixture
def small_settings(settings):
    return settings.model_copy(update={"batch_size": 10, "send_concurrency": 2})


@pytest.fixture
def audience(session: Session):
    """An issue with five topic sections and 60 active subscribers over six variants."""
    topics = issue_topics(session)
    issue = seed_issue(session, MONTH, topics)
    ids = seed_subscribers(session, 60, topic_sets(topics, 6))
    return issue, ids


def _statuses(session: Session, issue: Issue) -> Counter[str]:
    session.expire_all()
    counts = Counter(
        session.execute(select(Delivery.status).where(Delivery.issue_id == issue.id)).scalars()
    )
    session.rollback()  # on SQLite an open read holds the write lock the engine needs
    return counts


def test_plan_is_idempotent_and_skips_inactive(session, small_settings, audience) -> None:
    issue, _ = audience
    seed_subscribers(session, 1, [()], status=SubscriberStatus.PAUSED, prefix="paused")
    seed_subscribers(session, 1, [()], status=SubscriberStatus.UNSUBSCRIBED, prefix="gone")
    seed_subscribers(session, 1, [()], status=SubscriberStatus.SUPPRESSED, prefix="bounced")
    seed_subscribers(session, 1, [()], status=SubscriberStatus.PENDING, prefix="unconfirmed")
    assert begin_sending(session, issue) is True
    first = plan_deliveries(session, issue, small_settings)
    assert (first.planned, first.already_planned, first.inactive) == (60, 0, 4)
    assert len(first.variants) == 6 and sum(first.variants.values()) == 60
    second = plan_deliveries(session, issue, small_settings)
    assert (second.planned, second.already_planned) == (0, 60)
    assert _statuses(session, issue) == {"pending": 60}
    assert issue.status_reason == ""  # planning finished


def test_only_one_caller_starts_a_send(session, audience) -> None:
    issue, _ = audience
    assert begin_sending(session, issue) is True
    assert begin_sending(session, issue) is False
    assert begin_sending(session, issue, resume=True) is False  # already sending
    assert issue.status == "sending" and issue.send_started_at is not None


def test_send_writes_each_recipient_once_and_a_second_send_does_nothing(
    engine, session, small_settings, audience, tmp_path
) -> None:
    issue, _ = audience
    outbox = OutboxTransport(tmp_path / "outbox")
    report = send_issue(engine, small_settings, MONTH, transport=outbox)
    assert report.issue_status == "sent"
    assert report.run.sent == 60 and report.totals == {"sent": 60}
    assert report.run.requests == 6 * 1 + sum(1 for n in report.plan.variants.values() if n > 10)
    files = list((tmp_path / "outbox").glob("*.eml"))
    assert len(files) == 60
    again = send_issue(engine, small_settings, MONTH, transport=outbox)
    assert again.already_sent and again.run.requests == 0
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 60
    text = files[0].read_text()
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in text
    assert "__NL_" not in text  # every placeholder was filled


def test_send_refuses_without_postal_address(engine, small_settings, audience) -> None:
    bare = small_settings.model_copy(update={"postal_address": ""})
    with pytest.raises(NewsletterError, match="NEWSLETTER_POSTAL_ADDRESS"):
        send_issue(engine, bare, MONTH)


def test_send_refuses_an_issue_without_papers(engine, session, small_settings) -> None:
    session.add(Issue(month="2026-05"))
    session.commit()
    with pytest.raises(NewsletterError, match="no papers"):
        send_issue(engine, small_settings, "2026-05")
    with pytest.raises(NewsletterError, match="no issue for 2026-06"):
        send_issue(engine, small_settings, "2026-06")


def test_dry_run_plans_and_renders_without_writing(
    engine, session, small_settings, audience
) -> None:
    issue, _ = audience
    report = send_issue(engine, small_settings, MONTH, dry_run=True)
    assert report.dry_run and report.plan.planned == 60 and len(report.plan.variants) == 6
    session.refresh(issue)
    session.rollback()
    assert issue.status == "draft" and _statuses(session, issue) == {}


def test_variants_get_their_own_rendering(engine, small_settings, audience) -> None:
    with FakeSendgrid(KEY) as fake:
        send_issue(engine, small_settings, MONTH, transport=SendgridTransport(KEY, fake.url))
        bodies = fake.state.bodies
    # one variant per request, never mixed, with every placeholder left to substitutions
    htmls_per_variant = Counter(b["content"][1]["value"] for b in bodies)
    assert len(htmls_per_variant) == 6
    for body in bodies:
        assert body["categories"] == [MONTH]
        assert len(body["personalizations"]) <= 10
        for p in body["personalizations"]:
            assert p["substitutions"] and p["headers"]["List-Unsubscribe"].startswith("<http")
            assert p["custom_args"]["delivery_id"].isdigit()


def test_unknown_outcome_is_not_resent_until_asked(
    engine, session, small_settings, audience
) -> None:
    issue, _ = audience
    with FakeSendgrid(KEY, hang_seconds=1.5) as fake:
        fake.script.append("hang")  # the first request goes out but is never answered
        transport = SendgridTransport(KEY, fake.url, timeout=0.4)
        report = send_issue(engine, small_settings, MONTH, transport=transport)
        assert report.issue_status == "sent"
        assert report.totals == {"sent": 50, "unknown": 10}
        assert "10 unknown" in report.status_reason
        status = issue_status(session, MONTH)
        assert status.counts["unknown"] == 10 and len(status.problems) == 10
        assert "after the request was sent" in status.problems[0].error
        session.rollback()
        assert send_issue(engine, small_settings, MONTH, transport=transport).already_sent
        assert len(fake.accepted_emails) == 60  # the unknown ones did arrive
        report = send_issue(engine, small_settings, MONTH, transport=transport, resend_unknown=True)
        assert report.reopened_unknown == 10 and report.run.sent == 10
        assert report.totals == {"sent": 60} and report.issue_status == "sent"


def test_error_budget_pauses_then_resume_finishes(engine, session, small_settings, audience):
    issue, _ = audience
    with FakeSendgrid(KEY, fault_rate=1.0, faults=(503,)) as fake:
        transport = SendgridTransport(KEY, fake.url)
        policy = RetryPolicy(base_delay=0.01, max_delay=0.02, max_consecutive_failures=4)
        report = send_issue(engine, small_settings, MONTH, transport=transport, policy=policy)
        assert report.paused and "refused 4 requests in a row" in report.status_reason
        assert "503" in report.status_reason
        assert report.totals == {"pending": 60} and fake.accepted_emails == []
        fake.fault_rate = 0.0
        report = send_issue(engine, small_settings, MONTH, transport=transport, policy=policy)
        assert report.issue_status == "sent" and report.totals == {"sent": 60}
        assert sorted(fake.accepted_emails) == sorted(set(fake.accepted_emails))
        assert len(fake.accepted_emails) == 60


def test_bad_credentials_pause_at_once_and_send_nothing(engine, small_settings, audience):
    with FakeSendgrid(KEY) as fake:
        report = send_issue(
            engine, small_settings, MONTH, transport=SendgridTransport("SG.wrong", fake.url)
        )
        assert report.paused and "SENDGRID_API_KEY" in report.status_reason
        assert report.totals == {"pending": 60}


class UnsubscribingTransport:
    """Wraps a real transport; after its first batch, people leave (as if they clicked)."""

    name = "unsubscribing"

    def __init__(self, inner, engine, emails: list[str]) -> None:
        self.inner, self.engine, self.emails, self.batches = inner, engine, emails, 0

    def send_batch(self, batch: Batch) -> list[RecipientResult]:
        results = self.inner.send_batch(batch)
        self.batches += 1
        if self.batches == 1:
            with Session(self.engine) as s:
                for email in self.emails:
                    lifecycle.unsubscribe(s, lifecycle.get_by_email(s, email))
                s.commit()
        return results

    def close(self) -> None:
        self.inner.close()


def test_unsubscribe_mid_send_is_honoured(engine, session, small_settings, audience, tmp_path):
    issue, _ = audience
    leaving = [f"reader{i:06d}@example.org" for i in range(60)]
    one = small_settings.model_copy(update={"send_concurrency": 1})
    transport = UnsubscribingTransport(OutboxTransport(tmp_path / "o"), engine, leaving)
    report = send_issue(engine, one, MONTH, transport=transport)
    assert report.run.sent == 10 and report.run.skipped == 50
    assert report.totals == {"sent": 10, "skipped": 50} and report.issue_status == "sent"
    assert len(list((tmp_path / "o").glob("*.eml"))) == 10


def test_two_workers_drain_an_issue_exactly_once(engine, session, small_settings, audience):
    issue, _ = audience
    assert begin_sending(session, issue)
    plan_deliveries(session, issue, small_settings)
    with FakeSendgrid(KEY, latency=0.01, fault_rate=0.3, seed=7) as fake:
        transport = SendgridTransport(KEY, fake.url)
        stop = threading.Event()
        done: list[int] = []

        def work() -> None:
            done.append(
                drain(
                    engine,
                    small_settings,
                    worker_id=new_worker_id(),
                    stop=stop,
                    transport=transport,
                    policy=FAST,
                )
            )

        workers = [threading.Thread(target=work) for _ in range(2)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(60)
        emails = fake.accepted_emails
    assert sum(done) == 60
    assert len(emails) == len(set(emails)) == 60
    session.refresh(issue)
    assert issue.status == "sent"
    session.rollback()
    assert drain(engine, small_settings, worker_id="w", stop=stop, transport=transport) == 0


def test_claims_skip_rows_held_by_another_worker(engine, session, small_settings, audience):
    from newsletter.delivery.claim import claim_batch

    issue, _ = audience
    begin_sending(session, issue)
    plan_deliveries(session, issue, small_settings)
    first = claim_batch(engine, issue.id, "a:1:x", 10)
    second = claim_batch(engine, issue.id, "b:2:y", 10)
    assert first and second
    assert not {d.id for d in first.deliveries} & {d.id for d in second.deliveries}
    assert len(first.deliveries) == 10 and len(second.deliveries) == 10


def test_a_claim_records_the_previous_batch_in_the_same_commit(
    engine, session, small_settings, audience
):
    """The next claim writes the last batch's outcomes first, in its own transaction; when
    nothing is left to claim, the outcomes are still written."""
    from newsletter.delivery.claim import OutcomeKind, claim_batch

    issue, _ = audience
    begin_sending(session, issue)
    plan_deliveries(session, issue, small_settings)
    worker, issue_id = "a:1:x", issue.id  # read before the session expires it
    batch = claim_batch(engine, issue_id, worker, 10)
    assert batch is not None and _statuses(session, issue) == {"pending": 50, "claimed": 10}
    for _ in range(6):
        outcomes = {OutcomeKind("sent", "msg-1"): [d.id for d in batch.deliveries]}
        batch = claim_batch(engine, issue_id, worker, 10, outcomes=outcomes)
        if batch is None:
            break
        counts = _statuses(session, issue)
        assert counts["claimed"] == 10  # one batch held at a time
    assert batch is None
    assert _statuses(session, issue) == {"sent": 60}
    session.expire_all()
    rows = session.execute(select(Delivery).where(Delivery.issue_id == issue_id)).scalars()
    assert {(d.provider_message_id, d.claimed_by, d.attempts) for d in rows} == {("msg-1", "", 1)}
    session.rollback()


def test_outcomes_are_written_before_a_rate_limited_wait(engine, session, small_settings, audience):
    """With a send rate, a thread waits between batches: its last outcomes are written
    before it waits, not held in memory until its next claim."""
    from newsletter.db import reader

    issue, _ = audience
    issue_id = issue.id
    slow = small_settings.model_copy(update={"send_rate": 20.0, "send_concurrency": 1})
    seen: list[dict[str, int]] = []
    timers: list[threading.Timer] = []

    def look() -> None:  # halfway through the half-second wait before the next batch
        with reader(engine).connect() as conn:
            rows = conn.execute(
                select(Delivery.status, func.count())
                .where(Delivery.issue_id == issue_id)
                .group_by(Delivery.status)
            )
            seen.append(dict(rows.all()))

    class Watching(OutboxTransport):
        def send_batch(self, batch: Batch) -> list[RecipientResult]:
            results = super().send_batch(batch)
            timers.append(threading.Timer(0.25, look))
            timers[-1].start()
            return results

    report = send_issue(engine, slow, MONTH, transport=Watching(slow.outbox_dir))
    for t in timers:
        t.join()
    assert report.totals == {"sent": 60}
    assert [s.get("sent", 0) for s in seen] == [10 * i for i in range(1, 7)], seen
    assert not any(s.get("claimed") for s in seen), seen


def test_expired_lease_of_a_dead_sender_becomes_unknown(engine, session, small_settings, audience):
    from newsletter.delivery.claim import claim_batch, recover_abandoned

    issue, _ = audience
    begin_sending(session, issue)
    plan_deliveries(session, issue, small_settings)
    held = claim_batch(engine, issue.id, "elsewhere:1:x", 10, lease_seconds=-1)
    assert held is not None
    assert recover_abandoned(engine, issue.id) == 10
    assert _statuses(session, issue) == {"pending": 50, "unknown": 10}


def test_test_copy_is_marked_and_leaves_no_delivery(engine, session, small_settings, audience):
    issue, _ = audience
    with FakeSendgrid(KEY) as fake:
        result = send_test_copy(
            engine, small_settings, MONTH, "editor@example.org", SendgridTransport(KEY, fake.url)
        )
        assert result.outcome == "sent"
        accepted = fake.state.accepted
    assert [a.email for a in accepted] == ["editor@example.org"]
    assert accepted[0].subject.startswith("[TEST r1] ")
    assert _statuses(session, issue) == {}
    with pytest.raises(NewsletterError, match="not a valid email"):
        send_test_copy(engine, small_settings, MONTH, "nope")


def test_status_report_counts_and_reasons(engine, session, small_settings, audience):
    issue, ids = audience
    with FakeSendgrid(KEY) as fake:
        transport = SendgridTransport(KEY, fake.url)
        send_issue(engine, small_settings, MONTH, transport=transport)
    session.execute(
        update(Delivery)
        .where(Delivery.subscriber_id == ids[0])
        .values(status="failed", error="SendGrid 400: bad address")
    )
    session.commit()
    report = issue_status(session, MONTH)
    assert report.issue_status == "sent" and report.total == 60
    assert report.counts["sent"] == 59 and report.counts["failed"] == 1
    assert report.reasons == {("failed", "SendGrid 400: bad address"): 1}
    assert report.problems[0].email == session.get(Subscriber, ids[0]).email


def test_settings_from_environment_pick_the_sendgrid_transport(settings) -> None:
    from newsletter.transports import get_transport

    s = load_settings(
        mail_backend="sendgrid",
        sendgrid_api_key=KEY,
        sendgrid_host="http://127.0.0.1:9",
        database_url=settings.database_url,
        secret_key="x" * 32,
        _env_file=None,
    )
    transport = get_transport(s)
    assert isinstance(transport, SendgridTransport) and transport.host == "http://127.0.0.1:9"


def test_smtp_transport_end_to_end_records_refusals(engine, session, small_settings, audience):
    from newsletter.testing.smtp_sink import SmtpSink
    from newsletter.transports.smtp import SmtpTransport

    issue, _ = audience
    with SmtpSink() as sink:
        sink.reject.add("reader000007@example.org")
        transport = SmtpTransport(sink.url, timeout=5)
        try:
            report = send_issue(engine, small_settings, MONTH, transport=transport)
        finally:
            transport.close()
        received = sorted(r for m in sink.messages for r in m.rcpt_tos)
    assert report.totals == {"sent": 59, "failed": 1} and report.issue_status == "sent"
    assert "1 failed" in report.status_reason
    assert len(received) == len(set(received)) == 59
    status = issue_status(session, MONTH)
    assert [(p.email, p.status) for p in status.problems] == [
        ("reader000007@example.org", "failed")
    ]
    assert "550" in status.problems[0].error
    session.rollback()


def test_retry_delay_honours_the_provider_and_backs_off() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0)
    for _ in range(50):
        assert 3.0 <= policy.delay(1, retry_after=3.0) <= 3.3  # the provider's reset, plus jitter
        assert 0.5 <= policy.delay(1, None) <= 1.0
        assert 2.0 <= policy.delay(3, None) <= 4.0
        assert 4.0 <= policy.delay(10, None) <= 8.0  # capped
