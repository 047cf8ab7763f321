"""The mail process of `newsletter serve`: sends the queued confirmations and link mails.

Why a process of its own: building and writing one of these mails costs 5 to 9 ms of CPU,
and in the web process (one interpreter, one lock) that work competed with every answer:
a sign-up burst of 50 clients queued for a second and more. A child process uses the other
core, runs at a lower priority (under load the answers go first and the mail catches up),
and is woken by the web process after each answer that queued something; it also polls,
for rows queued by other processes (the CLI, another web server) or left by a crash.

Wakes travel over a pipe, not a multiprocessing Event: a process killed while waiting on
an Event leaves it unusable (the next `set()` waits forever for the dead waiter), while a
pipe only reports the end of the other side, which is also how the mail process learns
that the web process has stopped or died.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import select
import signal
import threading
import time
from multiprocessing.connection import Connection

from sqlalchemy.engine import Engine

from newsletter import audience, mail_queue
from newsletter.db import read_session
from newsletter.models import utcnow

log = logging.getLogger(__name__)

BATCH = 100  # rows claimed per pass: one transport connection, two short transactions
POLL_SECONDS = 2.0  # idle: look at the queue this often even when nobody wakes us
NICENESS = 10  # below the web process: a burst's answers first, then its mail
RESTART_SECONDS = 5.0


class MailSender:
    """Starts, wakes and stops the mail process; starts it again if it dies."""

    def __init__(self, poll: float = POLL_SECONDS) -> None:
        self._context = multiprocessing.get_context("spawn")  # no copy of the web's state
        self._poll = poll
        self._process: multiprocessing.process.BaseProcess | None = None
        self._writer: Connection | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._started = 0.0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def start(self) -> None:
        """Start the process, and a thread of ours that starts it again if it dies."""
        self._spawn()
        threading.Thread(target=self._watch, name="mail-process-watch", daemon=True).start()

    def _spawn(self) -> None:
        with self._lock:
            if self._writer is not None:
                self._writer.close()
            reader, writer = self._context.Pipe(duplex=False)
            self._process = self._context.Process(
                target=run, args=(reader, self._poll), name="newsletter-mail", daemon=True
            )
            self._process.start()
            reader.close()  # the child has its copy; ours would hide the child's death
            os.set_blocking(writer.fileno(), False)
            self._writer, self._started = writer, time.monotonic()

    def _watch(self) -> None:
        # At most one start per RESTART_SECONDS: one that cannot start must not spin.
        while not self._stopping.wait(1.0):
            process = self._process
            if process is None or process.is_alive():
                continue
            if time.monotonic() - self._started < RESTART_SECONDS:
                continue
            log.warning(
                "the mail process had stopped (exit %s); starting it again", process.exitcode
            )
            self._spawn()

    def wake(self) -> None:
        """Something was queued: send it now. Never blocks: a full pipe already holds
        plenty of wakes, and a dead process is the watcher's to start again."""
        writer = self._writer
        if writer is None:
            return
        with contextlib.suppress(BlockingIOError, BrokenPipeError, OSError):
            os.write(writer.fileno(), b"w")

    def stop(self, timeout: float = 15) -> None:
        """Finish the batch in flight, then end the process."""
        self._stopping.set()
        with self._lock:
            if self._writer is not None:
                self._writer.close()  # the child reads the end of the pipe and stops
                self._writer = None
        if self._process is not None:
            self._process.join(timeout)
            if self._process.is_alive():
                self._process.terminate()
                self._process.join(5)


def run(wakes: Connection, poll: float = POLL_SECONDS) -> None:
    """The mail process's loop: send what is due, then sleep until woken or `poll` passes;
    ends when the web process closes its end of the pipe (or dies) or on SIGTERM."""
    from newsletter.db import get_engine
    from newsletter.settings import load_settings

    terminated: list[int] = []
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the web process, which stops us
    signal.signal(signal.SIGTERM, lambda signum, _frame: terminated.append(signum))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    with contextlib.suppress(OSError):  # not allowed here: same priority, still correct
        os.nice(NICENESS)
    settings = load_settings()
    engine = get_engine(settings.database_url)
    fd = wakes.fileno()
    while not terminated:
        try:
            claimed = audience.deliver_queued(engine, settings, limit=BATCH)
        except Exception:  # the database is away, say: try again after a pause
            log.exception("sending queued mail failed; trying again in %.0f s", poll)
            claimed = 0
        try:
            ready, _, _ = select.select([fd], [], [], 0 if claimed >= BATCH else poll)
        except InterruptedError:  # SIGTERM: the loop's test decides
            continue
        if ready and not os.read(fd, 65536):
            break  # the web process closed its end: stopped, or gone
    engine.dispose()


def mail_health(engine: Engine, sender: MailSender | None) -> dict[str, object]:
    """For `/healthz`: who sends the queued mail, how many wait, and for how long the
    oldest has (a growing age means no mail process is sending)."""
    with read_session(engine) as session:
        queued, oldest = mail_queue.backlog(session)
    age = round((utcnow() - oldest).total_seconds(), 1) if oldest is not None else 0.0
    process = "in-process" if sender is None else ("running" if sender.alive else "stopped")
    return {"process": process, "queued": queued, "oldest_seconds": age}
