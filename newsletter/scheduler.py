"""The monthly job and the clock process that runs it: the newsletter goes out by itself, once.

APScheduler 3 keeps its jobs in memory per process, so it cannot stop two clocks from both
firing. The once-only guarantee therefore lives in the database: a PostgreSQL advisory lock
around the job where available, and everywhere the atomic issue transition to `sending`
(`delivery.begin_sending`), which exactly one process wins. Every run leaves a `JobRun` row,
so an empty, missed or failed month is visible in `newsletter issue status`, never silent.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from newsletter.db import is_postgres, session_scope
from newsletter.errors import NewsletterError
from newsletter.models import Issue, IssueStatus, JobRun
from newsletter.settings import Settings
from newsletter.transports.base import Transport

log = logging.getLogger("newsletter.clock")

MONTHLY_JOB_ID = "monthly-issue"
FETCH_JOB_ID = "fetch-sources"
SCHEDULED_SEND_JOB_ID = "scheduled-send"
FINAL_OR_RUNNING = {IssueStatus.SENDING, IssueStatus.SENT, IssueStatus.PAUSED}


@dataclass(frozen=True)
class JobOutcome:
    month: str
    # sent, sending, empty, missed, awaiting-approval, scheduled, already-started, busy,
    # failed, source-failed (a source kept failing: the draft waits for a person)
    outcome: str
    message: str

    @property
    def ok(self) -> bool:
        return self.outcome in {
            "sent",
            "sending",
            "awaiting-approval",
            "scheduled",
            "already-started",
            "busy",
        }


def previous_month(moment: datetime) -> str:
    """The calendar month before `moment` (UTC), as YYYY-MM: what a run on the 1st sends."""
    first = moment.astimezone(UTC).replace(day=1)
    return (first - timedelta(days=1)).strftime("%Y-%m")


def monthly_trigger(settings: Settings) -> CronTrigger:
    return CronTrigger.from_crontab(settings.schedule, timezone="UTC")


def last_fire_time(trigger: BaseTrigger, now: datetime) -> datetime | None:
    """The most recent time at or before `now` when the trigger fired (looks back 40 days)."""
    for lookback in (timedelta(hours=1), timedelta(days=2), timedelta(days=40)):
        fire = trigger.get_next_fire_time(None, now - lookback)
        latest = None
        while fire is not None and fire <= now:
            latest = fire
            fire = trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))
        if latest is not None:
            return latest
    return None


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
    from newsletter.issues import compose_issue

    for attempt in range(2):
        try:
            with session_scope(engine) as session:
                issue = session.exec(select(Issue).where(Issue.month == month)).first()
                if issue is not None and issue.status in FINAL_OR_RUNNING:
                    return issue
                return compose_issue(
                    session,
                    month,
                    settings.title,
                    max_papers=settings.max_papers,
                    max_per_topic=settings.max_papers_per_topic,
                ).issue
        except IntegrityError:
            if attempt:
                raise
    raise AssertionError("unreachable")


def start_send(
    engine: Engine,
    settings: Settings,
    month: str,
    *,
    transport: Transport | None = None,
    stop: threading.Event | None = None,
    deliver_here: bool | None = None,
    resume: bool = False,
) -> JobOutcome | None:
    """Move the issue to `sending` (exactly one caller wins), plan, and deliver if no worker will.

    Returns None when another process already started this issue. With the embedded SQLite
    default no separate worker runs, so the caller delivers; with PostgreSQL, workers drain.
    `resume` also restarts a paused or missed issue (a person asked for it).
    """
    from newsletter.delivery import (
        begin_sending,
        plan_deliveries,
        require_postal_address,
        require_public_sender,
        send_issue,
    )

    require_postal_address(settings)
    require_public_sender(settings)
    if deliver_here is None:
        deliver_here = settings.is_sqlite
    with session_scope(engine) as session:
        issue = session.exec(select(Issue).where(Issue.month == month)).one()
        if not begin_sending(session, issue, resume=resume):
            return None
        if not deliver_here:
            plan = plan_deliveries(session, issue, settings)
            return JobOutcome(
                month,
                "sending",
                f"{plan.recipients} deliveries planned over {len(plan.variants)} variant(s); "
                "`newsletter worker` processes deliver them",
            )
    # send_issue plans (idempotently) and delivers in this process.
    report = send_issue(engine, settings, month, transport=transport, stop=stop)
    counts = ", ".join(f"{n} {status}" for status, n in sorted(report.totals.items()) if n)
    if report.issue_status == IssueStatus.SENT:
        if not counts:
            return JobOutcome(month, "sent", "no active subscribers yet: archived, nobody mailed")
        return JobOutcome(month, "sent", f"deliveries: {counts}")
    if report.paused:
        return JobOutcome(month, "failed", f"paused: {report.status_reason} ({counts})")
    return JobOutcome(
        month,
        "sending",
        f"interrupted ({counts}); `newsletter issue send {month}` finishes it",
    )


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
    from newsletter.issues import EmptyMonthError

    month = run.month
    late_by = (now - run.scheduled_for) if run.scheduled_for else timedelta(0)
    missed = late_by > timedelta(hours=settings.send_cutoff_hours)
    failed_sources = _fetch_sources(engine, settings, run, now, stop)
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
    if issue.scheduled_for is not None and _as_utc(issue.scheduled_for) > now:
        return _record(
            engine,
            run,
            "scheduled",
            f"an editor scheduled {month} for {_as_utc(issue.scheduled_for):%Y-%m-%d %H:%M} UTC; "
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
    outcome = start_send(
        engine, settings, month, transport=transport, stop=stop, deliver_here=deliver_here
    )
    if outcome is None:
        return _record(engine, run, "already-started", f"another process started {month}")
    message = outcome.message
    if failed_sources:
        message += f"; sent with what came in although {failed_sources}"
    return _record(engine, run, outcome.outcome, message)


def _candidates_note(engine: Engine, issue: Issue) -> str:
    """How many candidates the editor has to weigh, and where to see them all."""
    from newsletter.models import IssuePaper

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
    from newsletter.papers.fetching import FetchAttempt, FetchOptions, fetch_with_retries
    from newsletter.papers.sources_file import load_sources_file

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
    from newsletter.delivery import send_test_copy

    if not settings.editor_emails:
        return "no NEWSLETTER_EDITORS set, so no test copy was emailed"
    for email in settings.editor_emails:
        send_test_copy(engine, settings, month, email, transport=transport)
    return f"test copy emailed to {', '.join(settings.editor_emails)}"


def approve_issue(
    engine: Engine,
    settings: Settings,
    month: str,
    *,
    transport: Transport | None = None,
    stop: threading.Event | None = None,
    deliver_here: bool | None = None,
) -> JobOutcome:
    """An editor's go-ahead in approval mode: mark approved, then send as the job would."""
    with session_scope(engine) as session:
        issue = session.exec(select(Issue).where(Issue.month == month)).first()
        if issue is None:
            raise NewsletterError(f"no issue for {month}; compose it first")
        if issue.status not in (IssueStatus.DRAFT, IssueStatus.APPROVED, IssueStatus.MISSED):
            raise NewsletterError(f"issue {month} is {issue.status}; only a draft can be approved")
        issue.status = IssueStatus.APPROVED
        issue.approved_at = datetime.now(UTC)
    outcome = start_send(
        engine, settings, month, transport=transport, stop=stop, deliver_here=deliver_here
    )
    if outcome is None:
        return JobOutcome(month, "already-started", f"another process started {month}")
    return outcome


def job_runs(session: Session, month: str) -> list[JobRun]:
    """Every recorded run of the monthly job for `month`, oldest first."""
    return list(session.exec(select(JobRun).where(JobRun.month == month).order_by(JobRun.id)).all())


def catch_up(
    engine: Engine,
    settings: Settings,
    trigger: BaseTrigger,
    *,
    now: datetime | None = None,
    stop: threading.Event | None = None,
    deliver_here: bool | None = None,
) -> JobOutcome | None:
    """At clock start, deal with a fire time that passed while no clock was running.

    Only fire times after this database's first clock start count (a fresh install has
    missed nothing). Within the cutoff the job runs now; beyond it `missed` is recorded once.
    """
    now = now or datetime.now(UTC)
    fire = last_fire_time(trigger, now)
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
    if fire is None or first_start is None or _as_utc(first_start) > fire:
        return None
    month = previous_month(fire)
    with session_scope(engine) as session:
        done = session.exec(
            select(JobRun).where(
                JobRun.job == MONTHLY_JOB_ID, JobRun.month == month, JobRun.scheduled_for == fire
            )
        ).first()
    if done is not None:
        return None
    log.warning("the run scheduled for %s UTC did not happen; running the job now", fire)
    return run_monthly_job(
        engine, settings, scheduled_for=fire, now=now, stop=stop, deliver_here=deliver_here
    )


def _as_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def scheduled_job(
    engine: Engine, settings: Settings, trigger: BaseTrigger, stop: threading.Event
) -> None:
    """What APScheduler calls: the job for the fire time that is due now."""
    now = datetime.now(UTC)
    run_monthly_job(
        engine, settings, scheduled_for=last_fire_time(trigger, now) or now, now=now, stop=stop
    )


def build_clock(
    engine: Engine,
    settings: Settings,
    stop: threading.Event,
    *,
    trigger: BaseTrigger | None = None,
) -> BlockingScheduler:
    trigger = trigger or monthly_trigger(settings)
    scheduler = BlockingScheduler(timezone=UTC)
    scheduler.add_job(
        scheduled_job,
        trigger,
        args=(engine, settings, trigger, stop),
        id=MONTHLY_JOB_ID,
        name="compose and send last month's issue",
        replace_existing=True,
        coalesce=True,
        max_instances=1,
        misfire_grace_time=int(settings.send_cutoff_hours * 3600) or 1,
    )
    add_bounce_job(scheduler, engine, settings)
    from newsletter.desk.release import send_due_issues  # issue 14: the desk's schedules

    scheduler.add_job(
        send_due_issues,
        "interval",
        seconds=settings.schedule_check_seconds,
        kwargs={"engine": engine, "settings": settings, "stop": stop},
        id=SCHEDULED_SEND_JOB_ID,
        name="send issues an editor scheduled or approved",
        replace_existing=True,
        coalesce=True,
        max_instances=1,
    )
    return scheduler


BOUNCE_JOB_ID = "bounces-fetch"


def fetch_bounces_job(engine: Engine, settings: Settings) -> None:
    """Hourly: read the SMTP bounce mailbox; a failure is logged and tried next hour."""
    from newsletter.bounces.mailbox import fetch_bounces

    try:
        report = fetch_bounces(engine, settings)
    except NewsletterError as exc:
        log.warning("bounce mailbox: %s", exc)
        return
    log.info(
        "bounce mailbox: %d message(s), %d hard, %d soft, %d suppressed, %d left unparsed",
        report.messages,
        report.hard,
        report.soft,
        report.suppressed,
        report.unparsed,
    )


def add_bounce_job(scheduler: BlockingScheduler, engine: Engine, settings: Settings) -> None:
    """With a bounce mailbox configured, the clock reads it every hour."""
    if not settings.bounce_imap_url:
        return
    scheduler.add_job(
        fetch_bounces_job,
        IntervalTrigger(hours=1, timezone=UTC),
        args=(engine, settings),
        id=BOUNCE_JOB_ID,
        name="read the SMTP bounce mailbox",
        replace_existing=True,
        coalesce=True,
        max_instances=1,
    )


def run_clock(engine: Engine, settings: Settings, *, trigger: BaseTrigger | None = None) -> None:
    """The `clock` process: catch up on a missed run, then fire on schedule until SIGTERM."""
    stop = threading.Event()
    trigger = trigger or monthly_trigger(settings)
    scheduler = build_clock(engine, settings, stop, trigger=trigger)

    def _shutdown(signum: int, _frame: object) -> None:
        log.info("signal %s: finishing the batch in flight, then stopping", signum)
        stop.set()
        if scheduler.running:
            scheduler.shutdown(wait=False)

    signal.signal(signal.SIGTERM, _shutdown)
    signal.signal(signal.SIGINT, _shutdown)
    next_run = trigger.get_next_fire_time(None, datetime.now(UTC))
    log.info(
        "clock started: schedule %r (UTC); next run %s, for %s",
        settings.schedule,
        f"{next_run:%Y-%m-%d %H:%M} UTC" if next_run else "never",
        previous_month(next_run) if next_run else "-",
    )
    catch_up(engine, settings, trigger, stop=stop)
    if not stop.is_set():
        scheduler.start()
