"""The mail process of `newsletter serve`: sends the queued confirmations and link mails.

Why a process of its own: building and writing one of these mails costs about 9 ms of CPU,
and in the web process (one interpreter, one lock) that work competed with every answer:
a sign-up burst of 50 clients queued for a second and more. A child process uses the other
core, runs at a lower priority (under load the answers go first and the mail catches up),
and is woken by the web process after each answer that queued something; it also polls,
for rows queued by other processes (the CLI, another web server) or left by a crash.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
from multiprocessing.synchronize import Event

from newsletter import audience

log = logging.getLogger(__name__)

BATCH = 50  # rows claimed per pass: one transport connection, two short transactions
POLL_SECONDS = 2.0  # idle: look at the queue this often even when nobody wakes us
NICENESS = 5  # below the web process: a burst's answers first, then its mail


class MailSender:
    """Starts, wakes and stops the mail process; restarts it if it has died."""

    def __init__(self, poll: float = POLL_SECONDS) -> None:
        self._context = multiprocessing.get_context("spawn")  # no copy of the web's state
        self._wake = self._context.Event()
        self._stop = self._context.Event()
        self._poll = poll
        self._process: multiprocessing.process.BaseProcess | None = None
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        with self._lock:
            self._process = self._context.Process(
                target=run,
                args=(self._wake, self._stop, self._poll),
                name="newsletter-mail",
                daemon=True,
            )
            self._process.start()

    def wake(self) -> None:
        """Something was queued: send it now (restarting the process if it died)."""
        if self._process is not None and not self._process.is_alive() and not self._stop.is_set():
            log.warning(
                "the mail process had stopped (exit %s); starting it again", self._process.exitcode
            )
            self.start()
        self._wake.set()

    def stop(self, timeout: float = 15) -> None:
        """Finish the batch in flight, then end the process."""
        self._stop.set()
        self._wake.set()
        if self._process is not None:
            self._process.join(timeout)
            if self._process.is_alive():
                self._process.terminate()
                self._process.join(5)


def run(wake: Event, stop: Event, poll: float = POLL_SECONDS) -> None:
    """The mail process's loop: send what is due, then sleep until woken or `poll` passes."""
    from newsletter.db import get_engine
    from newsletter.settings import load_settings

    terminated: list[int] = []
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the web process, which stops us
    # Only a flag: an Event's lock may be held by the very wait the signal interrupts.
    signal.signal(signal.SIGTERM, lambda signum, _frame: terminated.append(signum))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    with contextlib.suppress(OSError):  # not allowed here: same priority, still correct
        os.nice(NICENESS)
    settings = load_settings()
    engine = get_engine(settings.database_url)
    parent = os.getppid()
    # A parent killed outright (SIGKILL, an OOM kill) cannot stop us: we notice it is gone.
    while not (stop.is_set() or terminated) and os.getppid() == parent:
        try:
            claimed = audience.deliver_queued(engine, settings, limit=BATCH)
        except Exception:  # the database is away, say: try again after a pause
            log.exception("sending queued mail failed; trying again in %.0f s", poll)
            claimed = 0
        if claimed < BATCH:
            wake.wait(poll)
            wake.clear()
    engine.dispose()
