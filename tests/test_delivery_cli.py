"""`newsletter issue send|status` and `newsletter worker` as an operator runs them."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from sqlalchemy import select
from sqlmodel import Session

from newsletter.delivery import begin_sending, plan_deliveries
from newsletter.models import AuditEntry, Delivery, Issue
from newsletter.testing.fake_sendgrid import FakeSendgrid
from newsletter.testing.sample_send import issue_topics, seed_issue, seed_subscribers, topic_sets

MONTH = "2026-04"
KEY = "SG.cli-key"


@pytest.fixture
def seeded(session: Session) -> Issue:
    topics = issue_topics(session)
    issue = seed_issue(session, MONTH, topics)
    seed_subscribers(session, 40, topic_sets(topics, 4))
    session.rollback()
    return issue


def _run(env, tmp_path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "newsletter", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _statuses(session: Session) -> Counter[str]:
    counts = Counter(session.execute(select(Delivery.status)).scalars())
    session.rollback()
    return counts


def test_send_dry_run_test_copy_send_status_and_resend(
    settings, cli_env, session, seeded, tmp_path
):
    env = cli_env(NEWSLETTER_BATCH_SIZE="10")
    dry = _run(env, tmp_path, "issue", "send", MONTH, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "Dry run of 2026-04: 40 recipient(s) in 4 variant(s)" in dry.stdout
    assert "nothing sent" in dry.stdout and _statuses(session) == {}

    test = _run(env, tmp_path, "issue", "send", MONTH, "--test", "editor@example.org")
    assert test.returncode == 0, test.stderr
    assert "Test copy of 2026-04 sent to editor@example.org" in test.stdout
    eml = list((tmp_path / "var" / "outbox").glob("*.eml"))
    assert len(eml) == 1 and "Subject: [TEST r1] " in eml[0].read_text()

    # Without a terminal to ask on, nothing goes unless --yes says so; the summary still prints.
    unasked = _run(env, tmp_path, "issue", "send", MONTH)
    assert unasked.returncode == 1 and "--yes" in unasked.stderr, unasked.stderr
    assert "Recipients: 40 in 4 variant(s)" in unasked.stdout
    assert "Test copy of revision 1 sent" in unasked.stdout
    assert _statuses(session) == {}

    sent = _run(env, tmp_path, "issue", "send", MONTH, "--yes")
    assert sent.returncode == 0, sent.stderr
    assert "this run sent 40" in sent.stdout and "Issue 2026-04 is sent." in sent.stdout
    assert len(list((tmp_path / "var" / "outbox").glob("*.eml"))) == 41

    again = _run(env, tmp_path, "issue", "send", MONTH, "--yes")
    assert again.returncode == 0 and "already sent (40 sent); nothing to send" in again.stdout

    status = _run(env, tmp_path, "issue", "status", MONTH)
    assert status.returncode == 0, status.stderr
    assert "Issue 2026-04: sent" in status.stdout
    assert [line.split()[1:] for line in status.stdout.splitlines() if "│ sent" in line] == [
        ["sent", "│", "40", "│"]
    ]
    # The hand send and the test copy are in the desk's audit log, named as the CLI.
    session.expire_all()
    logged = session.scalars(select(AuditEntry).where(AuditEntry.target == MONTH)).all()
    assert {(e.action, e.actor.startswith("cli:")) for e in logged} >= {
        ("issue.test", True),
        ("issue.send", True),
    }
    assert next(e for e in logged if e.action == "issue.send").detail == "revision 1"


def test_send_fails_cleanly_on_bad_input(settings, cli_env, seeded, tmp_path):
    env = cli_env(NEWSLETTER_BATCH_SIZE="10", NEWSLETTER_POSTAL_ADDRESS="")
    no_address = _run(env, tmp_path, "issue", "send", MONTH, "--yes")
    assert no_address.returncode == 1
    assert "NEWSLETTER_POSTAL_ADDRESS" in no_address.stderr
    assert "Traceback" not in no_address.stderr and len(no_address.stderr.splitlines()) <= 2
    env = cli_env(NEWSLETTER_BATCH_SIZE="10")
    assert _run(env, tmp_path, "issue", "send", "April").returncode == 2
    missing = _run(env, tmp_path, "issue", "status", "2031-01")
    assert missing.returncode == 1 and "no issue for 2031-01" in missing.stderr
    bad = _run(env, tmp_path, "issue", "send", MONTH, "--test", "not-an-address")
    assert bad.returncode == 1 and "not a valid email" in bad.stderr


def test_paused_send_exits_1_with_the_reason(settings, cli_env, session, seeded, tmp_path):
    with FakeSendgrid(KEY) as fake:
        env = cli_env(
            NEWSLETTER_BATCH_SIZE="10",
            NEWSLETTER_MAIL_BACKEND="sendgrid",
            SENDGRID_API_KEY="SG.wrong-key",
            NEWSLETTER_SENDGRID_HOST=fake.url,
        )
        result = _run(env, tmp_path, "issue", "send", MONTH, "--yes")
    assert result.returncode == 1
    assert "paused" in result.stderr and "SENDGRID_API_KEY" in result.stderr
    assert _statuses(session) == {"pending": 40}


def test_worker_once_drains_and_sigterm_finishes_the_batch(
    settings, cli_env, session, seeded, tmp_path
):
    begin_sending(session, seeded)
    plan_deliveries(session, seeded, settings)
    session.rollback()
    with FakeSendgrid(KEY, latency=0.3) as fake:
        env = cli_env(
            NEWSLETTER_BATCH_SIZE="10",
            NEWSLETTER_MAIL_BACKEND="sendgrid",
            SENDGRID_API_KEY=KEY,
            NEWSLETTER_SENDGRID_HOST=fake.url,
            NEWSLETTER_SEND_CONCURRENCY="1",
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "newsletter", "worker", "--poll", "0.2"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while fake.requests < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)  # mid-request: the batch must finish and be recorded
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        first = _statuses(session)
        assert first["claimed"] == 0 and first["sent"] == len(fake.accepted_emails) >= 10
        assert first["pending"] > 0  # it stopped instead of draining everything
        once = _run(env, tmp_path, "worker", "--once")
        assert once.returncode == 0, once.stderr
        emails = fake.accepted_emails
    assert _statuses(session) == {"sent": 40}
    assert len(emails) == len(set(emails)) == 40
    issue = session.get(Issue, seeded.id)
    session.refresh(issue)
    assert issue.status == "sent"
    session.rollback()
