"""Fault injection at scale, on SQLite and PostgreSQL: provider errors, kill -9, unsubscribes.

Every test checks the promise from the recipient's side (what the fake SendGrid accepted):
nobody twice, nobody missed, and at most the in-flight batches of a killed sender unknown.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
from sqlalchemy import select
from sqlmodel import Session

from newsletter.delivery import RetryPolicy, send_issue
from newsletter.models import Delivery, Issue
from newsletter.testing.fake_sendgrid import FakeSendgrid
from newsletter.testing.sample_send import issue_topics, seed_issue, seed_subscribers, topic_sets
from newsletter.transports.sendgrid import SendgridTransport
from subscribers import lifecycle
from subscribers.models import Subscriber

pytestmark = pytest.mark.slow

KEY = "SG.fault-key"
MONTH = "2026-04"
SUBSCRIBERS = 2000
BATCH = 100


@pytest.fixture
def big_audience(session: Session) -> list[str]:
    topics = issue_topics(session)
    seed_issue(session, MONTH, topics)
    seed_subscribers(session, SUBSCRIBERS, topic_sets(topics, 8))
    emails = list(session.execute(select(Subscriber.email)).scalars())
    session.rollback()
    return emails


def _outcomes(session: Session) -> dict[str, str]:
    """email -> delivery status."""
    rows = session.execute(
        select(Subscriber.email, Delivery.status).join(
            Delivery, Delivery.subscriber_id == Subscriber.id
        )
    ).all()
    session.rollback()
    return dict(rows)


def test_injected_429_500_503_and_unsubscribes_every_subscriber_exactly_once(
    engine, session, settings, big_audience
) -> None:
    fast = settings.model_copy(update={"batch_size": BATCH, "send_concurrency": 2})
    left: list[str] = []
    with FakeSendgrid(KEY, latency=0.1, fault_rate=0.2, rate_limit_reset=1, seed=3) as fake:
        # each kind of refusal at least once, whatever the random draws of this run (how
        # many requests there are depends on timing); then 20 % at random
        fake.script.extend([429, 202, 500, 202, 503])

        def unsubscribe_some_mid_send() -> None:
            deadline = time.monotonic() + 30
            while fake.requests < 2 and time.monotonic() < deadline:
                time.sleep(0.005)
            with Session(engine) as s:
                pending = s.execute(
                    select(Subscriber)
                    .join(Delivery, Delivery.subscriber_id == Subscriber.id)
                    .where(Delivery.status == "pending")
                    .limit(200)
                ).scalars()
                for sub in pending.all():
                    lifecycle.unsubscribe(s, sub, source="test")
                    s.commit()  # each click is its own request
                    left.append(sub.email)

        clicker = threading.Thread(target=unsubscribe_some_mid_send)
        clicker.start()
        report = send_issue(
            engine,
            fast,
            MONTH,
            transport=SendgridTransport(KEY, fake.url),
            policy=RetryPolicy(base_delay=0.05, max_delay=0.5),
        )
        clicker.join()
        accepted = Counter(fake.accepted_emails)
        answers = fake.state.answers
    assert answers[429] and answers[500] and answers[503], answers  # faults did happen
    assert report.issue_status == "sent", report.status_reason
    assert max(accepted.values()) == 1  # nobody twice
    outcomes = _outcomes(session)
    assert len(outcomes) == SUBSCRIBERS
    statuses = Counter(outcomes.values())
    assert set(statuses) <= {"sent", "skipped"}, statuses
    assert {e for e, s in outcomes.items() if s == "sent"} == set(accepted)  # nobody missed
    skipped = {e for e, s in outcomes.items() if s == "skipped"}
    assert skipped and skipped <= set(left)  # unsubscribes mid-send were honoured
    assert not skipped & set(accepted)
    assert report.run.retried > 0


def _sendgrid_env(cli_env, fake: FakeSendgrid) -> dict[str, str]:
    return cli_env(
        NEWSLETTER_MAIL_BACKEND="sendgrid",
        SENDGRID_API_KEY=KEY,
        NEWSLETTER_SENDGRID_HOST=fake.url,
        NEWSLETTER_BATCH_SIZE=str(BATCH),
        NEWSLETTER_SEND_CONCURRENCY="2",
    )


def _newsletter(*args: str) -> list[str]:
    return [sys.executable, "-m", "newsletter", *args]


def test_kill_9_mid_send_then_send_again(
    engine, session, settings, big_audience, tmp_path, cli_env
):
    rng = random.Random(int(os.environ.get("FAULT_SEED", "5")))
    kill_after = sorted(rng.sample(range(2, 18), 3))  # requests seen by the fake
    kills = 0
    with FakeSendgrid(KEY, latency=0.2) as fake:
        env = _sendgrid_env(cli_env, fake)
        for threshold in kill_after:
            proc = subprocess.Popen(
                _newsletter("issue", "send", MONTH, "--yes"),
                env=env,
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            deadline = time.monotonic() + 60
            while fake.requests < threshold and proc.poll() is None:
                assert time.monotonic() < deadline, "the sender made no progress"
                time.sleep(0.002)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.communicate(timeout=30)
        final = subprocess.run(
            _newsletter("issue", "send", MONTH, "--yes"),
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        accepted = Counter(fake.accepted_emails)
    assert final.returncode == 0, final.stderr
    assert kills >= 2
    outcomes = _outcomes(session)
    unknown = {e for e, s in outcomes.items() if s == "unknown"}
    assert max(accepted.values()) == 1  # nobody twice
    assert set(accepted) | unknown == set(big_audience)  # nobody missed
    assert {e for e, s in outcomes.items() if s == "sent"} <= set(accepted)
    assert set(Counter(outcomes.values())) <= {"sent", "unknown"}
    # at most the batches in flight when each kill landed (2 threads x one batch each)
    assert 0 < len(unknown) <= kills * 2 * BATCH
    assert "unknown" in final.stderr + final.stdout  # and the rerun said so
    issue = session.execute(select(Issue).where(Issue.month == MONTH)).scalar_one()
    assert issue.status == "sent"
    session.rollback()
    status = subprocess.run(
        _newsletter("issue", "status", MONTH),
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 0, status.stderr
    assert f"Issue {MONTH}: sent" in status.stdout
    for line in ("sent", "unknown"):
        assert line in status.stdout
    again = subprocess.run(
        _newsletter("issue", "send", MONTH, "--yes"),
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 0 and "already sent" in again.stdout


def test_two_worker_processes_share_an_issue_exactly_once(
    engine, session, settings, big_audience, tmp_path, cli_env
):
    from newsletter.delivery import begin_sending, plan_deliveries

    issue = session.execute(select(Issue).where(Issue.month == MONTH)).scalar_one()
    assert begin_sending(session, issue)
    plan_deliveries(session, issue, settings)
    session.rollback()
    # 429s only: their reset time (1 s) sets the wait, where 5xx back off from 2 s upwards.
    faults = {"fault_rate": 0.1, "faults": (429,), "rate_limit_reset": 1, "seed": 11}
    with FakeSendgrid(KEY, latency=0.05, **faults) as fake:
        env = _sendgrid_env(cli_env, fake)
        workers = [
            subprocess.Popen(
                _newsletter("worker", "--once"),
                env=env,
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        outputs = [w.communicate(timeout=120) for w in workers]
        accepted = Counter(fake.accepted_emails)
        answers = fake.state.answers
    assert [w.returncode for w in workers] == [0, 0], outputs
    assert answers[429] > 0
    processed = [int(o.split("Processed ")[1].split()[0]) for o, _ in outputs if "Processed" in o]
    assert sum(processed) == SUBSCRIBERS and len(processed) == 2  # both took a share
    assert max(accepted.values()) == 1 and set(accepted) == set(big_audience)
    assert Counter(_outcomes(session).values()) == {"sent": SUBSCRIBERS}
    session.refresh(issue)
    assert issue.status == "sent"
    session.rollback()
