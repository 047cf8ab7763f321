"""The monthly job: fetch the sources, compose the month's draft, then approval or release.

What the clock runs on its schedule and `newsletter monthly` runs by hand. APScheduler 3 keeps
its jobs in memory per process, so it cannot stop two clocks from both firing: the once-only
guarantee lives in the database, a PostgreSQL advisory lock around the job where available,
and everywhere the atomic issue transition to `sending` (`delivery.begin_sending`), which
exactly one process wins. Every run leaves a `JobRun` row, so an empty, missed or failed month
is visible in `newsletter issue status`, never silent.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from newsletter import audit, revisions
from newsletter.approval import send_test
from newsletter.db import is_postgres, session_scope
from newsletter.doctor.preflight import domain_preflight, refuse_send
from newsletter.errors import NewsletterError
from newsletter.issues import EmptyMonthError, compose_issue
from newsletter.models import Issue, IssuePaper, IssueStatus, JobRun
from newsletter.months import as_utc, previous_month
from newsletter.papers.drafting import JOB as DRAFT_JOB
from newsletter.papers.drafting import draft_papers, record_run
from newsletter.papers.fetching import FetchAttempt, FetchOptions, fetch_with_retries
from newsletter.papers.sources_file import load_sources_file
from newsletter.release import JobOutcome, ReleaseRefused, start_send
from newsletter.settings import Settings
from newsletter.transports.base import Transport

log = logging.getLogger("newsletter.clock")

MONTHLY_JOB_ID = "monthly-issue"
FETCH_JOB_ID = "fetch-sources"
FINAL_OR_RUNNING = {IssueStatus.SENDING, IssueStatus.SENT, IssueStatus.PAUSED}


@contextmanager
def _job_lock(engine: Engine, month: str) -> Iterator[bool]:
    """Hold a PostgreSQL session advisory lock for this month's job; True when we got it.

    On SQLite there is no cross-process lock to take: the atomic issue transition decides.
    """
    if not is_postgres(engine):
        yield True
        return
    key = zlib.crc32(f"newsletter.monthly.{month}".encode())
    with engine.connect() as conn:
        got = conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({key})").scalar()
        conn.commit()
        try:
            yield bool(got)
        finally:
            if got:
                conn.exec_driver_sql(f"SELECT pg_advisory_unlock({key})")
                conn.commit()


def _record(engine: Engine, run: JobRun, outcome: str, message: str) -> JobOutcome:
    run.outcome = outcome
    run.message = message
    run.finished_at = datetime.now(UTC)
    with session_scope(engine) as session:
        session.add(run)
    level = logging.INFO if outcome in {"sent", "sending", "awaiting-approval"} else logging.WARNING
    log.log(level, "monthly job for %s: %s — %s", run.month, outcome, message)
    return JobOutcome(run.month, outcome, message)


def _compose(engine: Engine, settings: Settings, month: str) -> Issue:
    """Compose (or refresh) the draft; a concurrent composer's insert is simply reused."""
    for attempt in range(2):
        try:
            with session_scope(engine) as session:
                issue = session.exec(select(Issue).where(Issue.month == month)).first()
                if issue is not None and issue.status in FINAL_OR_RUNNING:
                    return issue
                # A fetch may have rewritten papers an unsent (even curated) issue lists.
                revisions.refresh_drafts(session, audit.CLOCK, "papers updated by a fetch")
                if issue is not None and (
                    issue.status == IssueStatus.APPROVED or issue.scheduled_for is not None
                ):
                    # An editor approved or scheduled this revision: recomposing would
                    # withdraw it. New papers wait for the editor (the desk can recompose).
                    return issue
                return compose_issue(
                    session,
                    month,
                    settings.title,
                    max_papers=settings.max_papers,
                    max_per_topic=settings.max_papers_per_topic,
                    actor=audit.CLOCK,
                ).issue
        except IntegrityError:
            if attempt:
                raise
    raise AssertionError("unreachable")


def run_monthly_job(
    engine: Engine,
    settings: Settings,
    *,
    month: str | None = None,
    scheduled_for: datetime | None = None,
    now: datetime | None = None,
    transport: Transport | None = None,
    stop: threading.Event | None = None,
    deliver_here: bool | None = None,
) -> JobOutcome:
    """Compose the month, then send it unless it is empty, missed, unapproved or already going.

    `scheduled_for` is when the clock meant to run; a run later than the cutoff only composes
    the draft and records `missed`, so a person decides (listmonk #1801 sent hours late).
    """
    now = now or datetime.now(UTC)
    month = month or previous_month(scheduled_for or now)
    run = JobRun(job=MONTHLY_JOB_ID, month=month, scheduled_for=scheduled_for, started_at=now)
    with session_scope(engine) as session:
        session.add(run)
    with _job_lock(engine, month) as got_lock:
        if not got_lock:
            return _record(engine, run, "busy", "another clock is running this month's job")
        try:
            return _run_locked(engine, settings, run, now, transport, stop, deliver_here)
        except NewsletterError as exc:
            return _record(engine, run, "failed", str(exc))
        except Exception as exc:
            _record(engine, run, "failed", f"{type(exc).__name__}: {exc}")
            raise


def _run_locked(
    engine: Engine,
    settings: Settings,
    run: JobRun,
    now: datetime,
    transport: Transport | None,
    stop: threading.Event | None,
    deliver_here: bool | None,
) -> JobOutcome:
    month = run.month
    late_by = (now - run.scheduled_for) if run.scheduled_for else timedelta(0)
    missed = late_by > timedelta(hours=settings.send_cutoff_hours)
    failed_sources = _fetch_sources(engine, settings, run, now, stop)
    _draft_summaries(engine, settings, month)  # issue 27: never blocks the send
    try:
        issue = _compose(engine, settings, month)
    except EmptyMonthError as exc:
        if failed_sources:
            return _record(
                engine, run, "source-failed", f"{failed_sources}; nothing to send yet: {exc}"
            )
        return _record(engine, run, "empty", f"nothing sent: {exc}")
    if issue.status == IssueStatus.SENT:
        return _record(engine, run, "already-started", f"issue {month} was already sent")
    if issue.status in (IssueStatus.SENDING, IssueStatus.PAUSED):
        return _record(
            engine,
            run,
            "already-started",
            f"issue {month} is {issue.status}; see `newsletter issue status {month}`",
        )
    if issue.status == IssueStatus.DRAFT and issue.status_reason.startswith(revisions.WITHDRAWN):
        return _record(
            engine,
            run,
            "awaiting-approval",
            f"{issue.status_reason}; not sent: an editor approves the current revision on the desk",
        )
    if issue.scheduled_for is not None and as_utc(issue.scheduled_for) > now:
        return _record(
            engine,
            run,
            "scheduled",
            f"an editor scheduled {month} for {as_utc(issue.scheduled_for):%Y-%m-%d %H:%M} UTC; "
            "the clock sends it then",
        )
    if missed:
        hours = late_by.total_seconds() / 3600
        return _record(
            engine,
            run,
            "missed",
            f"scheduled for {run.scheduled_for:%Y-%m-%d %H:%M} UTC, {hours:.0f} h late (cutoff "
            f"{settings.send_cutoff_hours:g} h): draft composed, not sent; send it with "
            f"`newsletter issue send {month}`",
        )
    if failed_sources and not settings.send_on_source_failure:
        return _record(
            engine,
            run,
            "source-failed",
            f"{failed_sources}: draft composed with what came in, not sent (a thin issue is "
            f"worse than a late one); fix the source and run `newsletter monthly --month "
            f"{month}`, or send it as it is with `newsletter issue send {month}` "
            "(NEWSLETTER_SEND_ON_SOURCE_FAILURE=true sends regardless)",
        )
    if settings.require_approval and issue.status != IssueStatus.APPROVED:
        note = _send_editor_copies(engine, settings, month, transport)
        return _record(
            engine,
            run,
            "awaiting-approval",
            f"draft composed ({_candidates_note(engine, issue)}); {note}; send with "
            f"`newsletter issue approve {month}`"
            + (f"; {failed_sources}" if failed_sources else ""),
        )
    dns = domain_preflight(settings, now=now)
    if dns.failures:
        message = refuse_send(settings, month, dns.failures, "The monthly job")
        return _record(engine, run, "preflight-failed", f"draft composed, {message}")
    # Without approval mode the job is the approver of what it just composed; with it, only
    # the revision an editor approved goes.
    try:
        outcome = start_send(
            engine,
            settings,
            month,
            transport=transport,
            stop=stop,
            deliver_here=deliver_here,
            revision=None if settings.require_approval else issue.revision,
        )
    except ReleaseRefused as exc:
        return _record(engine, run, "refused", str(exc))
    if outcome is None:
        return _record(engine, run, "already-started", f"another process started {month}")
    message = outcome.message
    if failed_sources:
        message += f"; sent with what came in although {failed_sources}"
    for check in dns.warnings:
        message += f"; warning: {check.name}: {check.message}"
    return _record(engine, run, outcome.outcome, message)


def _draft_summaries(engine: Engine, settings: Settings, month: str) -> None:
    """Draft the month's summaries (NEWSLETTER_LLM_SUMMARIES); a failure of any kind is
    recorded as the drafting run's outcome and the papers keep their fallback."""
    if settings.llm_summaries == "off":
        return
    started = datetime.now(UTC)
    try:
        report = draft_papers(engine, settings, month=month, actor=audit.CLOCK)
    except Exception as exc:  # the endpoint or its answers must never stop the month
        log.exception("drafting summaries for %s failed", month)
        with session_scope(engine) as session:
            session.add(
                JobRun(
                    job=DRAFT_JOB,
                    month=month,
                    started_at=started,
                    finished_at=datetime.now(UTC),
                    outcome="draft-failed",
                    message=f"{type(exc).__name__}: {exc}; papers keep their fallback",
                )
            )
        return
    record_run(engine, month, report, started)


def _candidates_note(engine: Engine, issue: Issue) -> str:
    """How many candidates the editor has to weigh, and where to see them all."""
    with session_scope(engine) as session:
        flags = session.exec(select(IssuePaper.in_email).where(IssuePaper.issue_id == issue.id))
        shown = list(flags.all())
    note = f"{len(shown)} candidates, {sum(shown)} in the email"
    return f"{note}; `newsletter issue candidates {issue.month}` lists them all, ranked"


def _fetch_sources(
    engine: Engine,
    settings: Settings,
    run: JobRun,
    now: datetime,
    stop: threading.Event | None,
) -> str:
    """Fetch the month from the sources file, retrying failing sources with back-off within
    the send cutoff; every attempt is a `fetch-sources` job run. Returns "" when every
    source came in (or there is no sources file), else which sources failed and why."""
    path = settings.sources_path
    if path is None:
        return ""
    with session_scope(engine) as session:
        issue = session.exec(select(Issue).where(Issue.month == run.month)).first()
        if issue is not None and issue.status in FINAL_OR_RUNNING:
            return ""  # its papers are fixed; nothing to fetch for
    sources_file = load_sources_file(path)
    total = settings.source_retries + 1
    started = time.monotonic()

    def record(attempt: FetchAttempt) -> None:
        failed = [r for r in attempt.reports if not r.ok]
        if attempt.retry_in is not None:
            after = f"; retrying the failed source(s) in {attempt.retry_in:g} s"
        elif failed:
            after = "; no more retries"
        else:
            after = ""
        moment = now + timedelta(seconds=time.monotonic() - started)
        with session_scope(engine) as session:
            session.add(
                JobRun(
                    job=FETCH_JOB_ID,
                    month=run.month,
                    started_at=moment,
                    finished_at=moment,
                    outcome="source-failed" if failed else "fetched",
                    message=f"fetch attempt {attempt.number} of at most {total}: "
                    + "; ".join(r.summary() for r in attempt.reports)
                    + after,
                )
            )
        log.log(logging.WARNING if failed else logging.INFO, "fetch %s%s", run.month, after)

    reports = fetch_with_retries(
        engine,
        sources_file,
        run.month,
        FetchOptions.from_settings(settings),
        retries=settings.source_retries,
        first_delay=settings.source_retry_delay,
        deadline=(run.scheduled_for or now) + timedelta(hours=settings.send_cutoff_hours),
        now=now,
        on_attempt=record,
        stop=stop,
    )
    failed = [r for r in reports if not r.ok]
    if not failed:
        return ""
    names = ", ".join(repr(r.name) for r in failed)
    return f"source(s) {names} failed after retries ({'; '.join(str(r.error) for r in failed)})"


def _send_editor_copies(
    engine: Engine, settings: Settings, month: str, transport: Transport | None
) -> str:
    if not settings.editor_emails:
        return "no NEWSLETTER_EDITORS set, so no test copy was emailed"
    send_test(engine, settings, month, settings.editor_emails, audit.CLOCK, transport=transport)
    return f"test copy emailed to {', '.join(settings.editor_emails)}"


def job_runs(session: Session, month: str) -> list[JobRun]:
    """Every recorded run of the monthly job for `month`, oldest first."""
    return list(session.exec(select(JobRun).where(JobRun.month == month).order_by(JobRun.id)).all())


def record_clock_start(engine: Engine, now: datetime) -> datetime | None:
    """Note that a clock started; returns when this database's first clock started (None on
    the first start: a fresh install has missed nothing)."""
    with session_scope(engine) as session:
        first_start = session.exec(
            select(JobRun.started_at).where(JobRun.job == "clock").order_by(JobRun.id)
        ).first()
        session.add(
            JobRun(
                job="clock",
                month=now.strftime("%Y-%m"),
                outcome="started",
                started_at=now,
                finished_at=now,
                message="clock process started",
            )
        )
    return as_utc(first_start) if first_start is not None else None


def ran_for(engine: Engine, fire: datetime) -> bool:
    """Whether the monthly job already ran for the clock's fire time `fire`."""
    with session_scope(engine) as session:
        done = session.exec(
            select(JobRun.id).where(
                JobRun.job == MONTHLY_JOB_ID,
                JobRun.month == previous_month(fire),
                JobRun.scheduled_for == fire,
            )
        ).first()
    return done is not None
