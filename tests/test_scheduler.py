"""The monthly job and the clock: composed and sent once, on time or not at all by itself."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from sqlmodel import Session, func, select

from newsletter.delivery import send_issue
from newsletter.models import Delivery, Issue, JobRun
from newsletter.monthly import run_monthly_job
from newsletter.months import previous_month
from newsletter.papers.store import import_paths
from newsletter.release import approve_issue
from newsletter.scheduler import build_clock, catch_up, last_fire_time
from newsletter.testing.fake_sendgrid import FakeSendgrid
from newsletter.testing.sample_send import issue_topics, seed_issue, seed_subscribers, topic_sets

SAMPLE = Path(__file__).resolve().parent.parent / "newsletter" / "data" / "sample_papers.yaml"
READERS = 40


@pytest.fixture
def sample(engine, session: Session) -> None:
    reports = import_paths(engine, [SAMPLE])
    assert all(r.ok for r in reports), reports
    seed_subscribers(session, READERS, topic_sets(issue_topics(session), 6))


def _outbox(settings) -> list[Path]:
    return sorted(Path(settings.outbox_dir).glob("delivery-*.eml"))


def _deliveries(session: Session, month: str) -> Counter[str]:
    session.expire_all()
    rows = session.exec(
        select(Delivery.status)
        .join(Issue, Issue.id == Delivery.issue_id)
        .where(Issue.month == month)
    ).all()
    session.rollback()
    return Counter(rows)


def test_previous_month() -> None:
    assert previous_month(datetime(2026, 1, 1, 9, tzinfo=UTC)) == "2025-12"
    assert previous_month(datetime(2026, 3, 31, 23, tzinfo=UTC)) == "2026-02"


def test_last_fire_time_of_monthly_and_minutely_crons() -> None:
    now = datetime(2026, 11, 29, 4, 30, 15, tzinfo=UTC)
    monthly = CronTrigger.from_crontab("0 9 1 * *", timezone="UTC")
    assert last_fire_time(monthly, now) == datetime(2026, 11, 1, 9, tzinfo=UTC)
    minutely = CronTrigger.from_crontab("* * * * *", timezone="UTC")
    assert last_fire_time(minutely, now) == datetime(2026, 11, 29, 4, 30, tzinfo=UTC)


def test_job_composes_and_sends_once(engine, session, settings, sample) -> None:
    first = run_monthly_job(engine, settings, month="2026-04", deliver_here=True)
    assert first.outcome == "sent", first
    assert _deliveries(session, "2026-04") == {"sent": READERS}
    assert len(_outbox(settings)) == READERS
    again = run_monthly_job(engine, settings, month="2026-04", deliver_here=True)
    assert again.outcome == "already-started" and "already sent" in again.message
    assert len(_outbox(settings)) == READERS
    runs = session.exec(select(JobRun.outcome).where(JobRun.month == "2026-04")).all()
    assert runs == ["sent", "already-started"]


def test_with_postgresql_the_clock_plans_and_workers_send(engine, session, settings, sample):
    from newsletter.delivery import drain

    outcome = run_monthly_job(engine, settings, month="2026-04", deliver_here=False)
    assert outcome.outcome == "sending" and "worker" in outcome.message
    assert _deliveries(session, "2026-04") == {"pending": READERS}
    assert drain(engine, settings, worker_id="w1", stop=threading.Event()) == READERS
    assert _deliveries(session, "2026-04") == {"sent": READERS}
    assert session.exec(select(Issue.status).where(Issue.month == "2026-04")).one() == "sent"


def test_empty_month_is_reported_not_silent(engine, session, settings, sample) -> None:
    outcome = run_monthly_job(engine, settings, month="2026-01")
    assert outcome.outcome == "empty" and not outcome.ok
    assert "2026-01" in outcome.message
    assert session.exec(select(Issue).where(Issue.month == "2026-01")).first() is None
    assert session.exec(select(JobRun.outcome).where(JobRun.month == "2026-01")).one() == "empty"
    assert not _outbox(settings)


def test_run_30_hours_late_composes_but_does_not_send(engine, session, settings, sample) -> None:
    now = datetime(2026, 5, 2, 15, tzinfo=UTC)
    outcome = run_monthly_job(engine, settings, scheduled_for=now - timedelta(hours=30), now=now)
    assert outcome.month == "2026-04" and outcome.outcome == "missed"
    assert "newsletter issue send 2026-04" in outcome.message
    assert session.exec(select(Issue.status).where(Issue.month == "2026-04")).one() == "draft"
    assert _deliveries(session, "2026-04") == {}
    report = send_issue(engine, settings, "2026-04")  # a person decides to send it
    assert report.issue_status == "sent"
    assert len(_outbox(settings)) == READERS


def test_catch_up_only_counts_runs_after_the_first_clock_start(
    engine, session, settings, sample
) -> None:
    trigger = CronTrigger.from_crontab("0 9 1 * *", timezone="UTC")
    # A fresh install missed nothing, even though 1 May 09:00 is in the past.
    assert catch_up(engine, settings, trigger, now=datetime(2026, 5, 1, 20, tzinfo=UTC)) is None
    # The clock was down over 1 June 09:00 and is back 4 hours later: run now.
    late = catch_up(
        engine, settings, trigger, now=datetime(2026, 6, 1, 13, tzinfo=UTC), deliver_here=True
    )
    assert late is not None and late.month == "2026-05" and late.outcome == "sent"
    # Down over 1 July 09:00 and back 3 days later: record missed, once, and send nothing.
    missed = catch_up(engine, settings, trigger, now=datetime(2026, 7, 4, 9, tzinfo=UTC))
    assert missed is not None and missed.outcome == "missed"
    assert catch_up(engine, settings, trigger, now=datetime(2026, 7, 4, 10, tzinfo=UTC)) is None
    assert _deliveries(session, "2026-06") == {}


def test_approval_mode_waits_for_an_editor(engine, session, settings, sample) -> None:
    strict = settings.model_copy(update={"require_approval": True, "editors": "ed@example.org"})
    waiting = run_monthly_job(engine, strict, month="2026-04")
    assert waiting.outcome == "awaiting-approval" and "ed@example.org" in waiting.message
    copies = list(Path(settings.outbox_dir).glob("*.eml"))
    assert len(copies) == 1 and b"[TEST r1]" in copies[0].read_bytes()
    assert _deliveries(session, "2026-04") == {}
    assert run_monthly_job(engine, strict, month="2026-04").outcome == "awaiting-approval"
    # The editors' copies are test copies of revision 1: an editor may approve it.
    approved = approve_issue(engine, strict, "2026-04", 1, "ed@example.org", deliver_here=True)
    assert approved.outcome == "sent"
    assert _deliveries(session, "2026-04") == {"sent": READERS}


def test_two_clocks_firing_together_send_once(engine, session, settings) -> None:
    month = previous_month(datetime.now(UTC))
    seed_issue(session, month, issue_topics(session))
    seed_subscribers(session, READERS, topic_sets(issue_topics(session), 6))
    fire_at = datetime.now(UTC) + timedelta(seconds=1.5)
    stop = threading.Event()
    clocks = [
        build_clock(engine, settings, stop, trigger=DateTrigger(run_date=fire_at)) for _ in range(2)
    ]
    threads = [threading.Thread(target=c.start, daemon=True) for c in clocks]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        session.expire_all()
        done = session.exec(
            select(func.count()).select_from(JobRun).where(JobRun.finished_at.is_not(None))
        ).one()
        session.rollback()
        if done >= 2:
            break
        time.sleep(0.1)
    for c in clocks:
        c.shutdown(wait=True)
    outcomes = sorted(session.exec(select(JobRun.outcome).where(JobRun.month == month)).all())
    winner = "sent" if settings.is_sqlite else "sending"  # PostgreSQL: workers send
    assert outcomes[0] in {"already-started", "busy"} and outcomes[1] == winner, outcomes
    if not settings.is_sqlite:
        from newsletter.delivery import drain

        drain(engine, settings, worker_id="w1", stop=threading.Event())
    assert _deliveries(session, month) == {"sent": READERS}
    assert len(_outbox(settings)) == READERS


def test_two_monthly_processes_at_once_send_once(
    engine, session, settings, sample, cli_env
) -> None:
    cmd = [sys.executable, "-m", "newsletter", "monthly", "--month", "2026-04"]
    procs = [
        subprocess.Popen(
            cmd, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert _deliveries(session, "2026-04") == {"sent": READERS}
    assert len(_outbox(settings)) == READERS


def test_sigterm_mid_send_then_restart_misses_and_duplicates_nobody(
    engine, session, settings, tmp_path, cli_env
) -> None:
    """The clock catches up on a just-missed fire time and starts sending; SIGTERM lands
    mid-send (on PostgreSQL the clock only plans and a worker sends, so the worker gets it)."""
    now = datetime.now(UTC)
    month = previous_month(now)
    topics = issue_topics(session)
    seed_issue(session, month, topics)
    readers = 600
    seed_subscribers(session, readers, topic_sets(topics, 6))
    session.add(
        JobRun(job="clock", month=month, outcome="started", started_at=now - timedelta(days=2))
    )
    session.commit()
    key = "SG.clock-test"
    with FakeSendgrid(key, latency=0.15) as fake:
        env = cli_env(
            NEWSLETTER_MAIL_BACKEND="sendgrid",
            SENDGRID_API_KEY=key,
            NEWSLETTER_SENDGRID_HOST=fake.url,
            NEWSLETTER_SCHEDULE="* * * * *",
            NEWSLETTER_BATCH_SIZE="25",
            NEWSLETTER_SEND_CONCURRENCY="1",
        )
        nl = [sys.executable, "-m", "newsletter"]
        procs = [
            subprocess.Popen(
                [*nl, "clock"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
        ]
        if not settings.is_sqlite:
            procs.append(
                subprocess.Popen(
                    [*nl, "worker", "--poll", "0.2"],
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            )
        deadline = time.monotonic() + 60
        while fake.requests < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert fake.requests >= 4, [p.poll() for p in procs]
        for p in procs:
            p.send_signal(signal.SIGTERM)
        logs = [p.communicate(timeout=60)[0] for p in procs]
        assert all(p.returncode is not None for p in procs), logs
        assert "next run" in logs[0], logs[0]
        interrupted = len(fake.accepted_emails)
        assert 0 < interrupted < readers, logs
        finish = subprocess.run(
            [*nl, "issue", "send", month, "--yes"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert finish.returncode == 0, finish.stderr
        accepted = Counter(fake.accepted_emails)
    assert len(accepted) == readers and max(accepted.values()) == 1
    assert _deliveries(session, month) == {"sent": readers}


def test_status_shows_missed_and_empty_runs(engine, session, settings, sample, cli_env) -> None:
    now = datetime(2026, 5, 3, 9, tzinfo=UTC)
    run_monthly_job(engine, settings, scheduled_for=now - timedelta(hours=48), now=now)
    run_monthly_job(engine, settings, month="2026-01")
    status = [sys.executable, "-m", "newsletter", "issue", "status"]
    env = cli_env()
    missed = subprocess.run([*status, "2026-04"], env=env, capture_output=True, text=True)
    assert missed.returncode == 0, missed.stderr
    assert "Issue 2026-04: draft" in missed.stdout and "missed: scheduled for" in missed.stdout
    empty = subprocess.run([*status, "2026-01"], env=env, capture_output=True, text=True)
    assert empty.returncode == 0, empty.stderr
    assert "There is no issue for 2026-01" in empty.stdout and "empty: nothing sent" in empty.stdout
    nothing = subprocess.run([*status, "2025-01"], env=env, capture_output=True, text=True)
    assert nothing.returncode == 1 and "no issue" in nothing.stderr
