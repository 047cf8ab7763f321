"""The long-running processes of the Procfile: web, clock and worker.

Each command imports its services inside the function, only to keep start-up fast:
`newsletter --help` loads none of them (about 1 s), all of them take about 2.5 s.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading

import typer

from newsletter.cli.common import console, engine, fail, settings
from newsletter.months import parse_month


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command()(clock)
    app.command()(monthly)
    app.command()(worker)


def _log_to_stderr() -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S%z",
    )
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


def clock() -> None:
    """Run the scheduler: the monthly job fires on NEWSLETTER_SCHEDULE (UTC) until SIGTERM."""
    from newsletter.scheduler import run_clock

    _log_to_stderr()
    run_clock(engine(), settings())


def monthly(
    month: str = typer.Option(
        None, "--month", metavar="YYYY-MM", help="Month to send (default: the previous month)."
    ),
) -> None:
    """Do by hand what the scheduled job does: fetch the sources, compose the month, send it."""
    from newsletter.monthly import run_monthly_job

    if month is not None:
        parse_month(month)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())  # finish the batch in flight, then stop
    outcome = run_monthly_job(engine(), settings(), month=month, deliver_here=True, stop=stop)
    if not outcome.ok:
        fail(f"{outcome.month}: {outcome.outcome}: {outcome.message}")
    console.print(f"{outcome.month}: {outcome.outcome}: {outcome.message}")


def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, envvar="PORT", help="Port to listen on ($PORT honoured)."),
) -> None:
    """Run the web app (uvicorn): subscribe pages, archive, previews, webhooks."""
    import uvicorn

    from newsletter.mail_sender import MailSender
    from newsletter.web.app import create_app
    from newsletter.web.server import uvicorn_config

    sender = MailSender()  # confirmations and link mails go from a process of their own
    sender.start()
    # uvicorn re-raises the SIGTERM it handled once it has shut down; exiting through
    # Python then stops the mail process too (the default action would skip `finally`).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        app = create_app(settings(), bind_host=host, mail_sender=sender)
        typer.echo(
            f"Serving {settings().title} at http://{host}:{port}/ "
            f"(public URL {settings().base_url}; mail process {sender.pid})"
        )
        uvicorn.Server(uvicorn_config(app, settings(), host, port)).run()
    finally:
        sender.stop()


def worker(
    poll: float = typer.Option(5.0, "--poll", min=0.1, help="Seconds between passes when idle."),
    once: bool = typer.Option(False, "--once", help="One pass over sending issues, then exit."),
) -> None:
    """Deliver pending deliveries of issues that are sending; several may run on PostgreSQL.

    SIGTERM finishes and records the batches in flight, then exits.
    """

    from newsletter.cli.sending import stop_on_signals
    from newsletter.delivery import drain, new_worker_id
    from newsletter.transports import get_transport

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    worker_id = new_worker_id()
    transport = get_transport(settings())
    console.print(f"Worker {worker_id} draining (poll every {poll:g}s).", markup=False)
    try:
        with stop_on_signals() as stop:
            while not stop.is_set():
                done = drain(
                    engine(), settings(), worker_id=worker_id, stop=stop, transport=transport
                )
                if done:
                    console.print(f"Processed {done} deliveries.", markup=False)
                if once:
                    break
                stop.wait(poll)
    finally:
        transport.close()
