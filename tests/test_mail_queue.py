"""The transactional mail queue (`mail_queue`, `audience.deliver_queued`) against real parts:
SQLite and PostgreSQL, the outbox, the fake SendGrid API and an aiosmtpd sink.

Concurrent claimers must take disjoint rows and mail everyone exactly once; a transient
refusal keeps the row for a later try and drops it after MAX_ATTEMPTS; a provider that
refuses to send at all puts the batch back; a person erased or suppressed before the mail
goes gets nothing; a lease left by a dead sender runs out and the row goes again.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlmodel import Session

from newsletter import audience, mail_queue
from newsletter.db import session_scope
from newsletter.models import QueuedMail, utcnow
from newsletter.testing.fake_sendgrid import FakeSendgrid
from newsletter.testing.smtp_sink import SmtpSink
from subscribers import lifecycle

KEY = "SG.queue-test-key"
TOPICS = ["optimization", "transformers"]


def outbox_recipients(settings) -> Counter[str]:
    """address -> how many mails the outbox holds for it."""
    counts: Counter[str] = Counter()
    for path in Path(settings.outbox_dir).glob("*.eml"):
        with path.open("rb") as fh:
            counts[str(BytesParser(policy=policy.default).parse(fh)["To"])] += 1
    return counts


def queue_rows(engine) -> list[QueuedMail]:
    with Session(engine) as session:
        return list(session.execute(select(QueuedMail).order_by(QueuedMail.id)).scalars())


def naive_utc(value: datetime) -> datetime:
    """SQLite gives back naive UTC times, PostgreSQL aware ones: compare them as naive UTC."""
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def sign_up(engine, settings, email: str) -> int:
    """A sign-up committed with its confirmation queued; the queued row's id."""
    result, queued = audience.record_subscription(engine, settings, email, TOPICS)
    assert result.send_confirmation and queued is not None
    return queued


def make_due(engine) -> None:
    """Every row due now (instead of waiting out the retry delay)."""
    with session_scope(engine) as session:
        session.execute(update(QueuedMail).values(due_at=utcnow() - timedelta(seconds=1)))


@pytest.fixture
def sendgrid_settings(settings):
    with FakeSendgrid(KEY) as fake:
        yield (
            fake,
            settings.model_copy(
                update={
                    "mail_backend": "sendgrid",
                    "sendgrid_api_key": KEY,
                    "sendgrid_host": fake.url,
                }
            ),
        )


def test_a_sign_up_commits_its_confirmation_and_one_pass_sends_it(settings, engine) -> None:
    queued = sign_up(engine, settings, "ada@example.org")
    [row] = queue_rows(engine)
    assert (row.id, row.kind, row.attempts, row.claimed_until) == (queued, "confirmation", 0, None)
    assert outbox_recipients(settings) == {}  # queued, not sent: nothing went yet
    assert audience.deliver_queued(engine, settings) == 1
    assert outbox_recipients(settings) == {"ada@example.org": 1}
    assert queue_rows(engine) == []
    assert audience.deliver_queued(engine, settings) == 0  # nothing left: nothing resent
    assert outbox_recipients(settings) == {"ada@example.org": 1}


@pytest.mark.parametrize("threads", [4])
def test_concurrent_claimers_take_disjoint_rows(settings, engine, threads) -> None:
    ids = {sign_up(engine, settings, f"c{i:03d}@example.org") for i in range(300)}
    start = threading.Barrier(threads)
    taken: list[list[int]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []

    def claimer(n: int) -> None:
        try:
            start.wait()
            while rows := mail_queue.claim(engine, limit=7):
                taken[n].extend(r.id for r in rows)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    workers = [threading.Thread(target=claimer, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert not errors, errors
    every = [i for part in taken for i in part]
    assert len(every) == len(set(every)) == 300  # no row claimed twice
    assert set(every) == ids
    assert sum(1 for part in taken if part) >= 2, [len(p) for p in taken]  # they did share
    # All are leased now: another claimer gets none of them.
    assert mail_queue.claim(engine) == []
    assert {r.attempts for r in queue_rows(engine)} == {1}


def test_concurrent_senders_mail_everyone_exactly_once(settings, engine) -> None:
    emails = [f"s{i:03d}@example.org" for i in range(240)]
    for email in emails:
        sign_up(engine, settings, email)
    start = threading.Barrier(3)
    claimed: list[int] = []
    errors: list[BaseException] = []

    def sender() -> None:
        try:
            start.wait()
            while n := audience.deliver_queued(engine, settings, limit=20):
                claimed.append(n)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    workers = [threading.Thread(target=sender) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert not errors, errors
    assert sum(claimed) == len(emails)
    assert outbox_recipients(settings) == Counter(emails)  # one confirmation each, no more
    assert queue_rows(engine) == []


def test_a_lease_of_a_dead_sender_runs_out_and_the_row_goes_again(settings, engine) -> None:
    sign_up(engine, settings, "lease@example.org")
    [held] = mail_queue.claim(engine)  # a sender claimed it, then died before sending
    assert audience.deliver_queued(engine, settings) == 0  # leased: nobody else takes it
    assert outbox_recipients(settings) == {}
    with session_scope(engine) as session:  # the lease runs out
        session.execute(update(QueuedMail).values(claimed_until=utcnow() - timedelta(seconds=1)))
    assert audience.deliver_queued(engine, settings) == 1
    assert outbox_recipients(settings) == {"lease@example.org": 1}
    assert queue_rows(engine) == [] and held.attempts == 1


def test_a_transient_refusal_keeps_the_row_until_max_attempts(engine, sendgrid_settings) -> None:
    fake, settings = sendgrid_settings
    sign_up(engine, settings, "busy@example.org")
    fake.script.append(429)
    before = naive_utc(utcnow())
    assert audience.deliver_queued(engine, settings) == 1
    [row] = queue_rows(engine)
    assert row.attempts == 1 and row.claimed_until is None
    assert "too many requests" in row.last_error
    delay = timedelta(seconds=mail_queue.RETRY_DELAYS[0])
    assert before + delay <= naive_utc(row.due_at) <= naive_utc(utcnow()) + delay
    assert fake.accepted_emails == []
    assert audience.deliver_queued(engine, settings) == 0  # not due yet: not tried again
    assert fake.requests == 1
    # Refused every time: after MAX_ATTEMPTS tries it is dropped, never sent.
    for attempt in range(2, mail_queue.MAX_ATTEMPTS + 1):
        fake.script.append(503 if attempt % 2 else 500)
        make_due(engine)
        assert audience.deliver_queued(engine, settings) == 1
        rows = queue_rows(engine)
        if attempt < mail_queue.MAX_ATTEMPTS:
            assert [r.attempts for r in rows] == [attempt]
            assert rows[0].last_error
    assert queue_rows(engine) == []
    assert fake.requests == mail_queue.MAX_ATTEMPTS and fake.accepted_emails == []


def test_a_refusal_in_a_batch_keeps_only_that_row(engine, sendgrid_settings) -> None:
    fake, settings = sendgrid_settings
    emails = ["b1@example.org", "b2@example.org", "b3@example.org"]
    for email in emails:
        sign_up(engine, settings, email)
    fake.script.extend([202, 503, 202])  # one request per mail, oldest first
    assert audience.deliver_queued(engine, settings) == 3
    [row] = queue_rows(engine)
    assert row.attempts == 1 and "service unavailable" in row.last_error
    assert sorted(fake.accepted_emails) == ["b1@example.org", "b3@example.org"]
    make_due(engine)
    assert audience.deliver_queued(engine, settings) == 1
    assert sorted(fake.accepted_emails) == sorted(emails)  # b2 once, the others not again
    assert queue_rows(engine) == []


def test_an_unauthorised_provider_puts_the_whole_batch_back(engine, settings) -> None:
    with FakeSendgrid("SG.another-key") as fake:  # our key is refused: 401 on every request
        refused = settings.model_copy(
            update={"mail_backend": "sendgrid", "sendgrid_api_key": KEY, "sendgrid_host": fake.url}
        )
        for i in range(3):
            sign_up(engine, refused, f"u{i}@example.org")
        assert audience.deliver_queued(engine, refused) == 3
        rows = queue_rows(engine)
        assert fake.state.answers[401] == 1  # it stopped at the first refusal
        assert fake.accepted_emails == []
    assert len(rows) == 3  # nothing dropped
    assert {r.attempts for r in rows} == {0}  # the fault is ours, not the people's: not counted
    assert all("SENDGRID_API_KEY" in r.last_error and r.claimed_until is None for r in rows)
    held = timedelta(seconds=mail_queue.HELD_SECONDS - 5)
    assert all(naive_utc(r.due_at) > naive_utc(utcnow()) + held for r in rows)
    # The key is fixed: the next pass sends each one once.
    with FakeSendgrid(KEY) as fake:
        fixed = refused.model_copy(update={"sendgrid_host": fake.url})
        make_due(engine)
        assert audience.deliver_queued(engine, fixed) == 3
        assert sorted(fake.accepted_emails) == [f"u{i}@example.org" for i in range(3)]
    assert queue_rows(engine) == []


def test_an_smtp_4xx_keeps_the_row_and_the_next_pass_sends_it_once(settings, engine) -> None:
    with SmtpSink() as sink:
        smtp = settings.model_copy(update={"mail_backend": "smtp", "smtp_url": sink.url})
        sign_up(engine, smtp, "greylisted@example.org")
        sink.tempfail.add("greylisted@example.org")
        assert audience.deliver_queued(engine, smtp) == 1
        [row] = queue_rows(engine)
        assert row.attempts == 1 and "451" in row.last_error
        assert sink.messages == []
        sink.tempfail.clear()
        make_due(engine)
        assert audience.deliver_queued(engine, smtp) == 1
        assert [m.rcpt_tos for m in sink.messages] == [("greylisted@example.org",)]
    assert queue_rows(engine) == []


def test_a_permanent_refusal_is_not_retried(settings, engine) -> None:
    with SmtpSink() as sink:
        smtp = settings.model_copy(update={"mail_backend": "smtp", "smtp_url": sink.url})
        sign_up(engine, smtp, "nobody@example.org")
        sink.reject.add("nobody@example.org")
        assert audience.deliver_queued(engine, smtp) == 1
        assert queue_rows(engine) == [] and sink.messages == []


def test_a_person_erased_before_sending_gets_nothing(settings, engine, cli) -> None:
    sign_up(engine, settings, "erase-me@example.org")
    keep = sign_up(engine, settings, "keep@example.org")
    result = cli("subscribers", "remove", "erase-me@example.org")
    assert result.exit_code == 0, result.output
    # The row went with the person (ON DELETE CASCADE), before any sender looked.
    assert [r.id for r in queue_rows(engine)] == [keep]
    assert audience.deliver_queued(engine, settings) == 1
    assert outbox_recipients(settings) == {"keep@example.org": 1}
    assert queue_rows(engine) == []


def test_a_person_suppressed_before_sending_gets_nothing(settings, engine) -> None:
    sign_up(engine, settings, "bounced@example.org")
    with session_scope(engine) as session:
        assert lifecycle.suppress(session, "bounced@example.org", "hard bounce")
    assert audience.deliver_queued(engine, settings) == 1  # claimed, then skipped
    assert outbox_recipients(settings) == {}
    assert queue_rows(engine) == []


def test_a_link_request_is_queued_and_sent_with_the_current_link(settings, engine) -> None:
    sign_up(engine, settings, "links@example.org")
    audience.deliver_queued(engine, settings)
    assert audience.record_link_request(engine, "unknown@example.org") is None
    queued = audience.record_link_request(engine, "links@example.org")
    assert queued is not None
    [row] = queue_rows(engine)
    assert (row.id, row.kind) == (queued, "link")
    with Session(engine) as session:
        sub = lifecycle.get_by_email(session, "links@example.org")
        expected = audience.links_for(settings, sub).preferences
    assert audience.deliver_queued(engine, settings) == 1
    texts = []
    for path in Path(settings.outbox_dir).glob("*.eml"):
        with path.open("rb") as fh:
            texts.append(BytesParser(policy=policy.default).parse(fh).get_body(("plain",)))
    assert sum(expected in t.get_content() for t in texts) == 1
    assert queue_rows(engine) == []


def test_an_unauthorised_answer_mid_batch_resends_nothing_already_sent(
    engine, sendgrid_settings
) -> None:
    fake, settings = sendgrid_settings
    emails = ["m1@example.org", "m2@example.org", "m3@example.org"]
    for email in emails:
        sign_up(engine, settings, email)
    fake.script.extend([202, 401])  # the key is revoked after the first mail went
    assert audience.deliver_queued(engine, settings) == 3
    assert fake.accepted_emails == ["m1@example.org"]
    rows = queue_rows(engine)
    assert len(rows) == 2 and {r.attempts for r in rows} == {0}
    make_due(engine)
    assert audience.deliver_queued(engine, settings) == 2
    assert sorted(fake.accepted_emails) == emails  # m1 once, not again
    assert queue_rows(engine) == []


def test_a_failure_of_our_own_keeps_the_row_with_the_error(settings, engine, tmp_path) -> None:
    """The outbox cannot be written (a file where its directory should be): the row stays,
    naming the error, and goes once the directory is back."""
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    broken = settings.model_copy(update={"outbox_dir": blocked})
    sign_up(engine, broken, "disk@example.org")
    assert audience.deliver_queued(engine, broken) == 1
    [row] = queue_rows(engine)
    assert row.attempts == 1 and row.claimed_until is None
    assert row.last_error.startswith("FileExistsError") and str(blocked) in row.last_error
    make_due(engine)
    assert audience.deliver_queued(engine, settings) == 1
    assert outbox_recipients(settings) == {"disk@example.org": 1}
    assert queue_rows(engine) == []


def test_queued_mails_are_built_when_they_go(settings, engine) -> None:
    """Two requests before any mail went: both confirmations carry the current topics and
    the same working link; the second says it replaces the first."""
    sign_up(engine, settings, "twice@example.org")
    result, again = audience.record_subscription(
        engine, settings, "twice@example.org", ["optimization"]
    )
    assert result.reason == "pending" and again is not None
    rows = queue_rows(engine)
    assert [(r.kind, r.replaces_earlier) for r in rows] == [
        ("confirmation", False),
        ("confirmation", True),
    ]
    assert audience.deliver_queued(engine, settings) == 2
    texts = []
    for path in Path(settings.outbox_dir).glob("*.eml"):
        with path.open("rb") as fh:
            texts.append(BytesParser(policy=policy.default).parse(fh).get_body(("plain",)))
    bodies = [t.get_content() for t in texts]
    assert len(bodies) == 2
    for body in bodies:
        assert "Optimization" in body and "Transformers" not in body  # current topics
    assert sum("replace those of the earlier request" in b for b in bodies) == 1
    links = {line for b in bodies for line in b.split() if "/confirm/" in line}
    assert len(links) == 1  # one token, current for both
    assert queue_rows(engine) == []


def test_a_key_refused_for_hours_drops_nobody(engine, settings) -> None:
    """A revoked key is the operator's to fix: however many passes meet the 401, every
    queued mail is still there, and goes once the key works."""
    with FakeSendgrid("SG.another-key") as fake:
        refused = settings.model_copy(
            update={"mail_backend": "sendgrid", "sendgrid_api_key": KEY, "sendgrid_host": fake.url}
        )
        sign_up(engine, refused, "patient@example.org")
        for _ in range(mail_queue.MAX_ATTEMPTS + 3):
            make_due(engine)
            assert audience.deliver_queued(engine, refused) == 1
        assert fake.state.answers[401] == mail_queue.MAX_ATTEMPTS + 3
    [row] = queue_rows(engine)
    assert row.attempts == 0
    with FakeSendgrid(KEY) as fake:
        make_due(engine)
        fixed = refused.model_copy(update={"sendgrid_host": fake.url})
        assert audience.deliver_queued(engine, fixed) == 1
        assert fake.accepted_emails == ["patient@example.org"]
    assert queue_rows(engine) == []


def test_a_rate_limit_reset_later_than_the_back_off_is_honoured(engine, sendgrid_settings) -> None:
    """SendGrid's 429 says when the limit resets (X-RateLimit-Reset, an epoch time); the row
    is not tried again before then, even when the back-off alone would be sooner."""
    fake, settings = sendgrid_settings
    fake.rate_limit_reset = 600
    sign_up(engine, settings, "later@example.org")
    fake.script.append(429)
    before = naive_utc(utcnow())
    assert audience.deliver_queued(engine, settings) == 1
    [row] = queue_rows(engine)
    assert row.attempts == 1
    assert naive_utc(row.due_at) >= before + timedelta(seconds=590)  # not the 10 s back-off
