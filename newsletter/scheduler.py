"""The clock process: APScheduler wiring, triggers, catch-up and signals, one call per job.

The business of each job lives in a service (`monthly.run_monthly_job`,
`release.send_due_issues`, `bounces.mailbox.fetch_bounces`); the once-only guarantees live
in the database there, so two clocks firing at once still send each issue once.
"""

from __future__ import annotations

import logging
import signal
import threading
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.engine import Engine

from newsletter.bounces.mailbox import fetch_bounces
from newsletter.errors import NewsletterError
from newsletter.monthly import MONTHLY_JOB_ID, ran_for, record_clock_start, run_monthly_job
from newsletter.months import previous_month
from newsletter.release import SCHEDULED_JOB, JobOutcome, send_due_issues
from newsletter.settings import Settings

log = logging.getLogger("newsletter.clock")

SCHEDULED_SEND_JOB_ID = SCHEDULED_JOB  # the APScheduler job is named as its JobRun rows
BOUNCE_JOB_ID = "bounces-fetch"


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
    first_start = record_clock_start(engine, now)
    if fire is None or first_start is None or first_start > fire or ran_for(engine, fire):
        return None
    log.warning("the run scheduled for %s UTC did not happen; running the job now", fire)
    return run_monthly_job(
        engine, settings, scheduled_for=fire, now=now, stop=stop, deliver_here=deliver_here
    )


def scheduled_job(
    engine: Engine, settings: Settings, trigger: BaseTrigger, stop: threading.Event
) -> None:
    """What APScheduler calls: the job for the fire time that is due now."""
    now = datetime.now(UTC)
    run_monthly_job(
        engine, settings, scheduled_for=last_fire_time(trigger, now) or now, now=now, stop=stop
    )


def fetch_bounces_job(engine: Engine, settings: Settings) -> None:
    """Hourly: read the SMTP bounce mailbox; a failure is logged and tried next hour."""
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


def build_clock(
    engine: Engine,
    settings: Settings,
    stop: threading.Event,
    *,
    trigger: BaseTrigger | None = None,
) -> BlockingScheduler:
    trigger = trigger or monthly_trigger(settings)
    once = {"replace_existing": True, "coalesce": True, "max_instances": 1}
    scheduler = BlockingScheduler(timezone=UTC)
    scheduler.add_job(
        scheduled_job,
        trigger,
        args=(engine, settings, trigger, stop),
        id=MONTHLY_JOB_ID,
        name="compose and send last month's issue",
        misfire_grace_time=int(settings.send_cutoff_hours * 3600) or 1,
        **once,
    )
    if settings.bounce_imap_url:  # with a bounce mailbox configured, read it every hour
        scheduler.add_job(
            fetch_bounces_job,
            IntervalTrigger(hours=1, timezone=UTC),
            args=(engine, settings),
            id=BOUNCE_JOB_ID,
            name="read the SMTP bounce mailbox",
            **once,
        )
    scheduler.add_job(
        send_due_issues,
        "interval",
        seconds=settings.schedule_check_seconds,
        kwargs={"engine": engine, "settings": settings, "stop": stop},
        id=SCHEDULED_SEND_JOB_ID,
        name="send issues an editor scheduled or approved",
        **once,
    )
    return scheduler


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
