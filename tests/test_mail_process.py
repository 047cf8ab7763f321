"""`newsletter serve` as an operator runs it: a real subprocess on a free port whose mail
process (a child, `mail_sender`) sends the queued confirmations and link mails.

Who wrote a mail is read from its Message-ID: Python's `email.utils.make_msgid` puts the
writing process's pid in it (`<time.pid.random@domain>`), so a confirmation written by
the mail child names the child's pid, and the welcome (sent by the web process itself when
a sign-up is confirmed) names the web process's.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from newsletter import audience
from newsletter.models import QueuedMail
from newsletter.testing.live_server import free_port
from subscribers.models import Subscriber

TOPICS = ["optimization", "transformers"]
URL_RE = re.compile(r"https?://[^\s<>\"]+")
MSGID_PID = re.compile(r"<\d+\.(\d+)\.\d+")  # make_msgid: <time.pid.random...@domain>


# The signal tests are about processes, not the database: one backend keeps the file fast.
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def wait_for(what: str, check: Callable[[], object], timeout: float = 10) -> object:
    """Poll `check` every 20 ms until it answers something true; fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:g} s")
        time.sleep(0.02)


def state_of(pid: int) -> str | None:
    """The process's state letter (R, S, Z...), None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def exited(pid: int) -> bool:
    return state_of(pid) in (None, "Z")  # a zombie has exited; only its parent's wait is due


def children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found |= {int(p) for p in (task / "children").read_text().split()}
        except FileNotFoundError:
            continue
    return found


def mail_children(pid: int) -> set[int]:
    """The multiprocessing children of `pid` that run our code (not its resource tracker)."""
    found = set()
    for child in children(pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"spawn_main" in cmdline and not exited(child):
            found.add(child)
    return found


def outbox(settings) -> list[EmailMessage]:
    messages = []
    for path in sorted(Path(settings.outbox_dir).glob("*.eml")):
        with path.open("rb") as fh:
            messages.append(BytesParser(policy=policy.default).parse(fh))
    return messages


def mails_to(settings, address: str) -> list[EmailMessage]:
    return [m for m in outbox(settings) if str(m["To"]) == address]


def writer_pid(message: EmailMessage) -> int:
    match = MSGID_PID.match(str(message["Message-ID"]))
    assert match, message["Message-ID"]
    return int(match.group(1))


def link_in(message: EmailMessage, purpose: str) -> str:
    text = message.get_body(preferencelist=("plain",)).get_content()
    [url] = {u for u in URL_RE.findall(text) if f"/{purpose}/" in u}
    return url


def queued(engine) -> int:
    with Session(engine) as session:
        return session.execute(select(func.count()).select_from(QueuedMail)).scalar_one()


def status_of(engine, email: str) -> str | None:
    with Session(engine) as session:
        sub = session.execute(select(Subscriber).where(Subscriber.email == email)).scalar()
        return sub.status if sub is not None else None


class Serve:
    """One `newsletter serve` subprocess; its output goes to files, read while it runs."""

    def __init__(self, env: dict[str, str], cwd: Path, port: int) -> None:
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.out = cwd / f"serve-{port}.out"
        self.err = cwd / f"serve-{port}.err"
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "newsletter", "serve", "--port", str(port)],
                env=env,
                cwd=cwd,
                stdout=out,
                stderr=err,
            )
        match = wait_for("serve printing its mail process", self._printed, timeout=30)
        self.mail_pid = int(match.group(1))  # type: ignore[attr-defined]
        wait_for("serve answering /healthz", self._healthy, timeout=30)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _stderr_tail(self) -> str:
        return self.err.read_text()[-2000:] if self.err.exists() else ""

    def _printed(self) -> re.Match[str] | None:
        if self.proc.poll() is not None:
            pytest.fail(f"serve exited {self.proc.returncode}: {self._stderr_tail()}")
        return re.search(r"mail process (\d+)", self.out.read_text())

    def _healthy(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"serve exited {self.proc.returncode}: {self._stderr_tail()}")
        try:
            return httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def post(self, path: str, data: dict[str, object], **headers: str) -> httpx.Response:
        return httpx.post(f"{self.base_url}{path}", data=data, headers=headers, timeout=30)

    def stop(self) -> None:
        """Kill what is left of the processes this test started (by pid)."""
        pids = {self.mail_pid} | (mail_children(self.pid) if self.proc.poll() is None else set())
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for pid in pids:
            if not exited(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def start_serve(cli_env, tmp_path) -> Iterator[Callable[[], Serve]]:
    """Start `newsletter serve` (after `newsletter init`) on this test's database."""
    port = free_port()
    env = cli_env(
        NEWSLETTER_MAIL_BACKEND="outbox",
        NEWSLETTER_BASE_URL=f"http://127.0.0.1:{port}",
        PYTHONUNBUFFERED="1",
    )
    init = subprocess.run(
        [sys.executable, "-m", "newsletter", "init"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert init.returncode == 0, init.stderr
    started: list[Serve] = []

    def start() -> Serve:
        started.append(Serve(env, tmp_path, port))
        return started[-1]

    yield start
    for serve in started:
        serve.stop()


def test_sign_up_and_link_mails_come_from_the_mail_child_and_sigterm_stops_it(
    settings, engine, start_serve
) -> None:
    serve = start_serve()
    assert serve.mail_pid != serve.pid
    assert serve.mail_pid in mail_children(serve.pid)

    answer = serve.post("/subscribe", {"email": "ada@example.org", "topics": TOPICS})
    assert answer.status_code == 200, answer.text
    [confirmation] = wait_for(
        "the confirmation in the outbox", lambda: mails_to(settings, "ada@example.org")
    )
    assert writer_pid(confirmation) == serve.mail_pid
    url = link_in(confirmation, "confirm")
    assert url.startswith(serve.base_url + "/confirm/")
    assert httpx.get(url, timeout=30).status_code == 200  # a mail scanner opening it
    assert status_of(engine, "ada@example.org") == "pending"
    confirmed = httpx.post(url, timeout=30)
    assert confirmed.status_code == 200, confirmed.text
    assert status_of(engine, "ada@example.org") == "active"
    # The welcome is sent by the web process itself: another pid than the confirmation's.
    welcome = wait_for("the welcome", lambda: mails_to(settings, "ada@example.org")[1:])
    assert [writer_pid(m) for m in welcome] == [serve.pid]  # type: ignore[union-attr]

    before = {str(m["Message-ID"]) for m in mails_to(settings, "ada@example.org")}
    answer = serve.post("/link", {"email": "ada@example.org"})
    assert answer.status_code == 200, answer.text
    [link_mail] = wait_for(
        "the link mail",
        lambda: [
            m for m in mails_to(settings, "ada@example.org") if str(m["Message-ID"]) not in before
        ],
    )
    assert link_in(link_mail, "preferences").startswith(serve.base_url + "/preferences/")
    assert writer_pid(link_mail) == serve.mail_pid

    # Unsubscribed, then one click back in: a fresh confirmation, from the child again,
    # whose link works where the first one (before the unsubscribe) no longer does.
    unsubscribe = link_in(welcome[0], "unsubscribe")  # type: ignore[index]
    assert httpx.post(unsubscribe, timeout=30).status_code == 200
    assert status_of(engine, "ada@example.org") == "unsubscribed"
    seen = {str(m["Message-ID"]) for m in mails_to(settings, "ada@example.org")}
    back = httpx.post(unsubscribe.replace("/unsubscribe/", "/resubscribe/"), timeout=30)
    assert back.status_code == 200, back.text
    [again] = wait_for(
        "the second confirmation",
        lambda: [
            m for m in mails_to(settings, "ada@example.org") if str(m["Message-ID"]) not in seen
        ],
    )
    assert writer_pid(again) == serve.mail_pid
    assert status_of(engine, "ada@example.org") == "pending"
    httpx.post(url, timeout=30)  # the link from before the unsubscribe
    assert status_of(engine, "ada@example.org") == "pending"
    assert httpx.post(link_in(again, "confirm"), timeout=30).status_code == 200
    assert status_of(engine, "ada@example.org") == "active"
    assert queued(engine) == 0

    serve.proc.send_signal(signal.SIGTERM)
    serve.proc.wait(15)
    wait_for("the mail process ending with serve", lambda: exited(serve.mail_pid), timeout=5)
    assert "Traceback" not in serve.err.read_text()


def test_mail_queued_while_no_server_runs_goes_when_serve_starts(
    settings, engine, start_serve
) -> None:
    _, row = audience.record_subscription(engine, settings, "early@example.org", TOPICS)
    assert row is not None and queued(engine) == 1 and outbox(settings) == []
    serve = start_serve()
    [mail] = wait_for("the queued confirmation", lambda: mails_to(settings, "early@example.org"))
    assert writer_pid(mail) == serve.mail_pid
    wait_for("the queue emptied", lambda: queued(engine) == 0)


@SQLITE_ONLY
def test_a_killed_mail_process_is_restarted_and_exits_when_serve_is_killed(
    settings, engine, start_serve
) -> None:
    serve = start_serve()
    first = serve.mail_pid
    os.kill(first, signal.SIGKILL)
    wait_for("the mail process dying", lambda: exited(first))
    answer = serve.post("/subscribe", {"email": "after@example.org", "topics": TOPICS})
    assert answer.status_code == 200, answer.text
    [mail] = wait_for("the confirmation", lambda: mails_to(settings, "after@example.org"))
    [second] = mail_children(serve.pid)
    assert second != first and writer_pid(mail) == second
    assert queued(engine) == 0
    assert "the mail process had stopped" in serve.err.read_text()
    # Now the web process dies outright (SIGKILL: no `finally`, nobody tells the child):
    # the mail process, in its loop, sees it is gone and exits by itself.
    serve.proc.kill()
    serve.proc.wait(10)
    wait_for("the orphaned mail process exiting", lambda: exited(second), timeout=6)


@SQLITE_ONLY
def test_a_mail_process_whose_serve_was_killed_at_once_exits_by_itself(start_serve) -> None:
    """Killed as soon as it answers: the mail child may still be starting (importing,
    loading settings). It must not outlive the web process in that window either."""
    serve = start_serve()
    serve.proc.kill()
    serve.proc.wait(10)
    wait_for("the orphaned mail process exiting", lambda: exited(serve.mail_pid), timeout=6)


def test_a_burst_of_100_sign_ups_gets_one_confirmation_each(settings, engine, start_serve) -> None:
    serve = start_serve()
    emails = [f"burst{i:03d}@example.org" for i in range(100)]
    start = threading.Barrier(len(emails))
    codes: dict[str, int] = {}

    with httpx.Client(
        base_url=serve.base_url, timeout=60, limits=httpx.Limits(max_connections=100)
    ) as client:

        def one(i: int, email: str) -> None:
            start.wait()
            # 127.0.0.1 is a trusted proxy: each sign-up comes from its own client address,
            # as through a platform router, so the per-client limit (10) is not what is tested.
            answer = client.post(
                "/subscribe",
                data={"email": email, "topics": TOPICS},
                headers={"X-Forwarded-For": f"198.51.100.{i + 1}"},
            )
            codes[email] = answer.status_code

        threads = [threading.Thread(target=one, args=(i, e)) for i, e in enumerate(emails)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert Counter(codes.values()) == {200: 100}
    wait_for("the queue emptied", lambda: queued(engine) == 0, timeout=30)
    sent = Counter(str(m["To"]) for m in outbox(settings))
    assert sent == Counter(emails)  # exactly one each
    assert {writer_pid(m) for m in outbox(settings)} == {serve.mail_pid}
