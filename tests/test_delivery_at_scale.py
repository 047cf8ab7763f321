"""What keeps delivery near the physical limit, on SQLite and PostgreSQL: planning in the
database, set-based outcomes, whole batches under faults, one bad address failing alone,
leases that outlive a slow request."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

import pytest
from sqlalchemy import event, select
from sqlmodel import Session

from newsletter.delivery import RetryPolicy, begin_sending, plan_deliveries, send_issue
from newsletter.delivery import claim as store
from newsletter.issues import load_issue_contents
from newsletter.models import Delivery, Issue
from newsletter.rendering import (
    RecipientFields,
    issue_topic_slugs,
    recipient_headers,
    recipient_substitutions,
    variant_for,
)
from newsletter.testing.fake_sendgrid import FakeSendgrid
from newsletter.testing.sample_send import issue_topics, seed_issue, seed_subscribers, topic_sets
from newsletter.transports.base import Batch, Outcome, Recipient
from newsletter.transports.sendgrid import SendgridTransport
from subscribers.models import Subscriber, SubscriberTopic
from subscribers.tokens import read_token

KEY = "SG.scale-key"
MONTH = "2026-04"
FAST = RetryPolicy(base_delay=0.05, max_delay=0.2)


def _outcomes(session: Session) -> dict[str, tuple[str, str]]:
    """email -> (delivery status, error)."""
    rows = session.execute(
        select(Subscriber.email, Delivery.status, Delivery.error).join(
            Delivery, Delivery.subscriber_id == Subscriber.id
        )
    ).all()
    session.rollback()  # on SQLite an open read holds the write lock the engine needs
    return {email: (status, error) for email, status, error in rows}


def test_the_database_picks_each_subscribers_variant_as_variant_for_does(session, settings) -> None:
    topics = issue_topics(session, 6)
    issue = seed_issue(session, MONTH, topics[:4])  # two topics people chose are not in it
    rng = random.Random(13)
    sets = [(), (topics[4],), (topics[4], topics[5])]
    sets += [tuple(rng.sample(topics, rng.randint(1, 5))) for _ in range(40)]
    seed_subscribers(session, len(sets), sets)
    assert begin_sending(session, issue)
    report = plan_deliveries(session, issue, settings)
    in_issue = issue_topic_slugs(load_issue_contents(session, issue).entries)
    chosen: dict[int, list[str]] = {}
    for sid, slug in session.execute(
        select(SubscriberTopic.subscriber_id, SubscriberTopic.topic_slug)
    ):
        chosen.setdefault(sid, []).append(slug)
    planned = dict(session.execute(select(Delivery.subscriber_id, Delivery.variant)).all())
    assert len(planned) == len(sets) == report.planned
    assert planned == {sid: variant_for(chosen.get(sid, ()), in_issue) for sid in planned}
    assert {"", "-"} <= set(planned.values())  # everything, and nothing matched
    assert report.variants == dict(Counter(planned.values()))
    again = plan_deliveries(session, issue, settings)
    assert (again.planned, again.already_planned) == (0, len(sets))


def test_recipient_fields_match_the_one_at_a_time_helpers(session, settings) -> None:
    topics = issue_topics(session)
    issue = seed_issue(session, MONTH, topics)
    [sid] = seed_subscribers(session, 1, [(topics[0],)], prefix="o'brien+<x>")
    sub = session.get(Subscriber, sid)
    fields = RecipientFields(settings, issue, topics[0])
    substitutions, headers = fields(sub.public_id, sub.token_version, sub.email)
    slow_subs = recipient_substitutions(settings, sub, issue, topics[0])
    assert substitutions.keys() == slow_subs.keys()
    for key, value in substitutions.items():  # equal but for the tokens' time stamps
        assert value.rsplit("/", 1)[0] == slow_subs[key].rsplit("/", 1)[0]
    assert headers.keys() == recipient_headers(settings, sub).keys()
    unsubscribe = headers["List-Unsubscribe"].strip("<>")
    assert unsubscribe in substitutions.values()
    claims = read_token(settings.secret, "unsubscribe", unsubscribe.rsplit("/", 1)[1])
    assert (claims.public_id, claims.token_version) == (sub.public_id, sub.token_version)


def test_outcomes_are_written_with_one_statement_per_kind(engine, session, settings) -> None:
    topics = issue_topics(session)
    issue = seed_issue(session, MONTH, topics)
    seed_subscribers(session, 300, [()])
    assert begin_sending(session, issue)
    plan_deliveries(session, issue, settings)
    batch = store.claim_batch(engine, issue.id, "w:1:x", 300)
    assert batch is not None and len(batch.deliveries) == 300
    ids = [d.id for d in batch.deliveries]
    later = store.utcnow()
    outcomes = {
        store.OutcomeKind("sent", "msg-1"): ids[:250],
        store.OutcomeKind("pending", "", "SendGrid 503", later): ids[250:290],
    }
    outcomes.update({store.OutcomeKind("failed", "", f"bad {i}"): [i] for i in ids[290:]})
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("UPDATE"):
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        store.record_outcomes(engine, "w:1:x", outcomes)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    # sent + retry as one UPDATE each; ten distinct errors as one executemany
    assert len(statements) == 3, statements
    statuses = Counter(
        session.execute(select(Delivery.status).where(Delivery.issue_id == issue.id)).scalars()
    )
    session.rollback()
    assert statuses == {"sent": 250, "pending": 40, "failed": 10}


def test_faults_keep_batches_whole_and_everyone_gets_one_copy(engine, session, settings) -> None:
    """20 % of requests refused with 429/500/503: a refused batch comes back as one request,
    so accepted requests stay within 1.25x of a fault-free send."""
    topics = issue_topics(session)
    seed_issue(session, MONTH, topics)
    sets = topic_sets(topics, 4)
    seed_subscribers(session, 1200, sets)
    fast = settings.model_copy(update={"batch_size": 100, "send_concurrency": 2})
    fault_free = 4 * 3  # four variants of 300, batches of 100
    with FakeSendgrid(KEY, latency=0.01, fault_rate=0.2, rate_limit_reset=1, seed=5) as fake:
        report = send_issue(
            engine, fast, MONTH, transport=SendgridTransport(KEY, fake.url), policy=FAST
        )
        accepted = Counter(fake.accepted_emails)
        answers = fake.state.answers
    refused = answers[429] + answers[500] + answers[503]
    assert refused >= 2, answers  # the faults did happen
    assert report.issue_status == "sent" and report.totals == {"sent": 1200}
    assert len(accepted) == 1200 and max(accepted.values()) == 1  # exactly once
    assert answers[202] <= 1.25 * fault_free, answers
    sizes = Counter(len(b["personalizations"]) for b in fake.state.bodies)
    assert sizes == {100: answers[202]}, sizes  # every accepted request a whole batch


def test_one_refused_address_in_a_batch_of_1000_fails_alone(engine, session, settings) -> None:
    topics = issue_topics(session)
    seed_issue(session, MONTH, topics)
    seed_subscribers(session, 1000, [()])
    bad = "reader000617@example.org"
    # One sending thread, so the 1,000 go out as one batch: threads claiming at the same
    # moment may split it (SKIP LOCKED, by design), and then the count below is of two.
    one_batch = settings.model_copy(update={"send_concurrency": 1})
    with FakeSendgrid(KEY) as fake:
        fake.refused_addresses.add(bad)
        transport = SendgridTransport(KEY, fake.url)
        report = send_issue(engine, one_batch, MONTH, transport=transport)
        accepted = Counter(fake.accepted_emails)
        answers = fake.state.answers
    assert report.totals == {"sent": 999, "failed": 1} and report.issue_status == "sent"
    assert len(accepted) == 999 and max(accepted.values()) == 1 and bad not in accepted
    # halves of halves: one refused and one accepted request per level (log2 1000 ~ 10)
    assert answers[400] <= 11 and transport.requests <= 21, (answers, transport.requests)
    outcomes = _outcomes(session)
    status, error = outcomes[bad]
    assert status == "failed" and error == "SendGrid 400: Does not contain a valid address."


def test_a_batch_wide_400_is_not_split(engine, session, settings) -> None:
    """A refusal that blames no recipient (here: the sender) fails the batch in one request."""
    with FakeSendgrid(KEY) as fake:
        transport = SendgridTransport(KEY, fake.url)
        batch = Batch(
            subject="s",
            html="<p>x</p>",
            text="x",
            recipients=[Recipient(f"r{i}@example.org", delivery_id=i) for i in range(8)],
            from_addr="ML Foundations <>",
        )
        results = transport.send_batch(batch)
    assert {r.outcome for r in results} == {Outcome.FAILED} and transport.requests == 1
    assert "from object" in results[0].error


def test_a_lease_outlives_a_slow_request(engine, session, settings) -> None:
    """With a 1 s lease and a provider that takes 2.5 s, another worker looking for abandoned
    batches the whole time finds none: the lease is renewed while the batch is in flight."""
    topics = issue_topics(session)
    seed_issue(session, MONTH, topics)
    seed_subscribers(session, 20, [()])
    short = settings.model_copy(
        update={"batch_size": 20, "send_concurrency": 1, "send_lease_seconds": 1.0}
    )
    issue_id = session.execute(select(Issue.id).where(Issue.month == MONTH)).scalar_one()
    session.rollback()
    recovered: list[int] = []
    done = threading.Event()

    def other_worker() -> None:
        while not done.is_set():
            recovered.append(store.recover_abandoned(engine, issue_id))
            time.sleep(0.1)

    with FakeSendgrid(KEY, latency=2.5) as fake:
        watcher = threading.Thread(target=other_worker)
        watcher.start()
        try:
            report = send_issue(engine, short, MONTH, transport=SendgridTransport(KEY, fake.url))
        finally:
            done.set()
            watcher.join()
    assert len(recovered) > 10 and sum(recovered) == 0
    assert report.totals == {"sent": 20} and report.issue_status == "sent"


def test_a_lease_that_is_not_renewed_ends_unknown(engine, session, settings) -> None:
    """The other side: a sender that stops renewing (it died) leaves its batch `unknown`."""
    topics = issue_topics(session)
    issue = seed_issue(session, MONTH, topics)
    seed_subscribers(session, 10, [()])
    assert begin_sending(session, issue)
    plan_deliveries(session, issue, settings)
    held = store.claim_batch(engine, issue.id, "elsewhere:1:x", 10, lease_seconds=-1)
    assert held is not None  # its lease has already run out ...
    assert store.renew_leases(engine, issue.id, "elsewhere:1:x", 60) == 10
    assert store.recover_abandoned(engine, issue.id) == 0  # ... but it was renewed in time
    store.renew_leases(engine, issue.id, "elsewhere:1:x", -1)  # the last beat, then silence
    assert store.recover_abandoned(engine, issue.id) == 10
    assert {s for s, _ in _outcomes(session).values()} == {"unknown"}


@pytest.mark.parametrize("n", [1])
def test_claims_hand_back_plain_rows(engine, session, settings, n) -> None:
    topics = issue_topics(session)
    issue = seed_issue(session, MONTH, topics)
    [sid] = seed_subscribers(session, n, [()])
    assert begin_sending(session, issue)
    plan_deliveries(session, issue, settings)
    batch = store.claim_batch(engine, issue.id, "w:1:x", 10)
    assert batch is not None
    [row] = batch.deliveries
    assert isinstance(row, tuple)
    public_id = session.get(Subscriber, sid).public_id
    assert (row.public_id, row.email, row.token_version, row.attempts) == (
        public_id,
        "reader000000@example.org",
        1,
        0,
    )
