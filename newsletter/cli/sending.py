"""Presentation for `issue send`, `issue status` and `worker`: progress bar, summaries,
signal handling. The work itself is in `newsletter.release` and `newsletter.delivery`."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from sqlalchemy.engine import Engine

from newsletter.audit import cli_actor
from newsletter.cli.common import console, err_console
from newsletter.db import session_scope
from newsletter.delivery import SendProgress, SendReport, issue_status
from newsletter.delivery.status import StatusReport
from newsletter.errors import NewsletterError
from newsletter.release import send_by_hand
from newsletter.settings import Settings


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """SIGINT/SIGTERM set the event: in-flight batches finish and are recorded, then we stop."""
    stop = threading.Event()
    previous = {}

    def handler(signum: int, _frame: object) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _summary(report: SendReport) -> str:
    t = report.totals
    parts = [f"{t.get(s, 0)} {s}" for s in ("sent", "failed", "unknown", "skipped") if t.get(s)]
    left = t.get("pending", 0) + t.get("claimed", 0)
    if left:
        parts.append(f"{left} left")
    return ", ".join(parts) or "no deliveries"


def run_send(
    engine: Engine,
    settings: Settings,
    month: str,
    *,
    dry_run: bool,
    resend_unknown: bool,
    revision: int | None = None,
    force: bool = False,
    actor: str = "",
) -> int:
    """Run `release.send_by_hand` with a progress bar; returns the exit code."""
    with (
        stop_on_signals() as stop,
        Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(
                "sent {task.fields[sent]} · failed {task.fields[failed]} · "
                "left {task.fields[left]} ·"
            ),
            TextColumn("{task.fields[rate]}/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=err_console,
            transient=True,
            disable=dry_run,
        ) as bar,
    ):
        task = bar.add_task(f"Sending {month}", total=None, sent=0, failed=0, left="?", rate="–")

        def progress(p: SendProgress) -> None:
            elapsed = bar.tasks[task].elapsed or 0.0
            rate = f"{p.sent / elapsed:,.0f}" if elapsed > 0.5 else "–"
            bar.update(
                task,
                total=p.total,
                completed=p.done,
                sent=p.sent,
                failed=p.failed,
                left=p.remaining,
                rate=rate,
            )

        report = send_by_hand(
            engine,
            settings,
            month,
            revision=revision,
            force=force,
            actor=actor or cli_actor(),
            dry_run=dry_run,
            resend_unknown=resend_unknown,
            progress=progress,
            stop=stop,
        )
    if report.dry_run:
        plan = report.plan
        assert plan is not None
        console.print(
            f"Dry run of {month}: {plan.recipients} recipient(s) in {len(plan.variants)} "
            f"variant(s) ({plan.planned} to plan, {plan.already_planned} already planned, "
            f"{plan.inactive} inactive subscriber(s) skipped); every variant rendered; "
            "nothing sent.",
            markup=False,
        )
        return 0
    if report.already_sent:
        console.print(
            f"Issue {month} was already sent ({_summary(report)}); nothing to send.",
            markup=False,
        )
        return 0
    if report.recovered_unknown:
        err_console.print(
            f"{report.recovered_unknown} delivery(ies) of an interrupted earlier send are "
            "marked unknown (they may have gone out); see `newsletter issue status "
            f"{month}`, resend with --resend-unknown.",
            markup=False,
        )
    run = report.run
    rate = f" in {report.elapsed:.1f}s" if report.elapsed else ""
    console.print(
        f"{month}: this run sent {run.sent}, failed {run.failed}, unknown {run.unknown}, "
        f"skipped {run.skipped} (left since planning), {run.requests} request(s){rate}. "
        f"Overall: {_summary(report)}.",
        markup=False,
    )
    if report.paused:
        err_console.print(
            f"[red]error:[/red] sending {month} is paused: {report.status_reason}",
            soft_wrap=True,
        )
        return 1
    if report.stopped:
        err_console.print(f"Stopped; run `newsletter issue send {month}` again to finish.")
        return 1
    if report.issue_status == "sent":
        note = f" ({report.status_reason})" if report.status_reason else ""
        console.print(f"Issue {month} is sent{note}.", markup=False)
    return 0


def _print_job_runs(runs: list) -> None:
    """The monthly job's runs for the month: an empty, missed or failed run is never silent."""
    if not runs:
        return
    console.print("Scheduled job runs:", markup=False)
    for run in runs:
        when = run.scheduled_for or run.started_at
        console.print(f"  {when:%Y-%m-%d %H:%M} UTC  {run.outcome}: {run.message}", markup=False)


def print_status(engine: Engine, month: str) -> None:
    from newsletter.monthly import job_runs

    with session_scope(engine) as session:
        runs = job_runs(session, month)
        try:
            report = issue_status(session, month)
        except NewsletterError:
            if not runs:
                raise
            console.print(f"There is no issue for {month}.", markup=False)
            _print_job_runs(runs)
            return
    _print_job_runs(runs)
    reason = f" — {report.status_reason}" if report.status_reason else ""
    console.print(f"Issue {month}: {report.issue_status}{reason}", markup=False)
    times = [
        f"{label} {when:%Y-%m-%d %H:%M} UTC"
        for label, when in (("started", report.send_started_at), ("finished", report.sent_at))
        if when is not None
    ]
    if times:
        console.print("Sending " + ", ".join(times) + ".", markup=False)
    table = Table(show_header=True, header_style="bold")
    table.add_column("status")
    table.add_column("deliveries", justify="right")
    for status, n in report.counts.items():
        table.add_row(status, str(n))
    table.add_row("total", str(report.total))
    console.print(table)
    if report.reasons:
        console.print("Problems by reason:", markup=False)
        for (status, error), n in report.reasons.items():
            console.print(f"  {n:>6} {status}: {error or '(no reason given)'}", markup=False)
    if report.problems:
        console.print("Recipients with problems:", markup=False)
        for p in report.problems[:200]:
            console.print(f"  {p.email}  {p.status}  {p.error}", markup=False)
        if len(report.problems) > 200:
            console.print(f"  … and {len(report.problems) - 200} more", markup=False)
    _print_feedback(report)


def _print_feedback(report: StatusReport) -> None:
    """Bounces and complaints that came back after sending (webhook or bounce mailbox)."""
    if report.unverified:
        console.print(
            f"Unverified: {report.unverified} bounce(s) or report(s) naming no delivery of ours "
            "arrived since this send; they changed nobody (bounce mailbox folder Unverified).",
            markup=False,
            soft_wrap=True,
        )
    if not report.feedback:
        return
    counts = ", ".join(
        f"{n} {event} ({provider})" for (provider, event), n in report.feedback.items()
    )
    console.print(f"Reported after sending: {counts}", markup=False)
    for e in report.feedback_events[:200]:
        console.print(
            f"  {e.email}  {e.event}  {e.received_at:%Y-%m-%d %H:%M} UTC  {e.detail}", markup=False
        )
