"""Hardening (issue 12): what a public newsletter meets from attackers, proxies and big
imports. Each test names the attack or the load it stands up to."""

from __future__ import annotations

import csv
import subprocess
import sys
import threading
import time
from email import message_from_bytes, policy
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from newsletter import audience
from newsletter.db import read_session, session_scope
from newsletter.delivery import send_issue
from newsletter.models import Issue, IssuePaper, IssueStatus, Paper
from newsletter.rendering.recipients import RECIPIENT_FIELDS, RECIPIENT_MARKERS
from newsletter.testing.fake_sendgrid import FakeSendgrid
from newsletter.testing.live_server import live_server
from newsletter.testing.sample_issue import build_sample_issue
from newsletter.testing.smtp_sink import SmtpSink
from newsletter.transports.outbox import OutboxTransport
from newsletter.transports.sendgrid import SendgridTransport
from newsletter.transports.smtp import SmtpTransport
from newsletter.web.app import create_app
from subscribers.models import Subscriber

KEY = "SG.test-key"


def _vouch(engine, settings, email: str = "reader@example.org") -> Subscriber:
    return audience.add_subscriber(
        engine, settings, email, ["optimization"], confirmed=True
    ).subscriber


# --- 1. reads beside a long write ---------------------------------------------------------


def test_a_read_does_not_wait_for_a_writer(engine) -> None:
    """SQLite: pages read in deferred transactions, beside an open write transaction."""
    done = threading.Event()
    with session_scope(engine) as writer:
        writer.add(Issue(month="2031-01"))
        writer.flush()  # the write lock is held from here to the end of the block

        def read() -> None:
            with read_session(engine) as session:
                session.execute(select(func.count()).select_from(Issue)).scalar_one()
            done.set()

        threading.Thread(target=read, daemon=True).start()
        assert done.wait(2), "a read waited for the writer"


def _big_csv(path: Path, rows: int) -> None:
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["email", "topics", "name"])
        for i in range(rows):
            out.writerow(
                [f"bulk{i:06d}@example.org", "optimization;learning-theory" if i % 2 else "", ""]
            )


def test_site_answers_within_a_second_during_a_large_import(
    engine, settings, cli_env, tmp_path
) -> None:
    """A real server beside a real `subscribers import` of 15,000 rows in another process."""
    with Session(engine) as session:
        issue = build_sample_issue(session, "2026-04", papers=6)
        issue.status = IssueStatus.SENT
        session.commit()
    unsubscribe = audience.links_for(settings, _vouch(engine, settings)).unsubscribe
    path = unsubscribe.split("/", 3)[3]
    csv_path = tmp_path / "big.csv"
    _big_csv(csv_path, 15_000)
    timings: list[tuple[str, float, int]] = []
    with live_server(create_app(settings)) as base, httpx.Client(base_url=base, timeout=10) as web:
        web.get("/issues/2026-04")  # the first render compiles MJML: not what is measured
        proc = subprocess.Popen(
            [sys.executable, "-m", "newsletter", "subscribers", "import", str(csv_path)]
            + ["--confirmed"],
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None:
                with read_session(engine) as session:
                    count = session.execute(select(func.count()).select_from(Subscriber)).scalar()
                if count and count > 1:
                    break  # writing has begun
                time.sleep(0.05)
            while proc.poll() is None:
                for method, url in (
                    ("POST", f"/{path}"),
                    ("GET", "/"),
                    ("GET", "/issues/2026-04"),
                    ("GET", "/issues"),
                ):
                    start = time.monotonic()
                    answer = web.request(
                        method,
                        url,
                        data={"List-Unsubscribe": "One-Click"} if method == "POST" else None,
                    )
                    timings.append((url, time.monotonic() - start, answer.status_code))
        finally:
            out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    assert b"Imported 15000" in out
    assert len(timings) >= 8, f"the import ended before the site was measured: {timings}"
    assert all(code == 200 for _, _, code in timings), timings
    slow = [(url, round(t, 2)) for url, t, _ in timings if t >= 1.0]
    assert not slow, slow


def test_import_checks_every_row_before_writing(engine, settings) -> None:
    good = "".join(f"ok{i}@example.org,,\n" for i in range(1200))
    text = "email,topics,name\n" + good + "not-an-address,,\n"
    with pytest.raises(Exception, match="row 1202, column 'email'"):
        audience.import_subscribers(engine, settings, text, confirmed=True)
    with read_session(engine) as session:
        assert session.execute(select(func.count()).select_from(Subscriber)).scalar() == 0
    report = audience.import_subscribers(
        engine, settings, "email,topics,name\n" + good, confirmed=True
    )
    assert report.imported == 1200


# --- 2. paper text cannot produce a per-recipient marker -------------------------------------


def _booby_trapped_issue(engine, month: str) -> None:
    plain = [f"__NL_{name.upper()}__" for name in RECIPIENT_FIELDS]
    live = list(RECIPIENT_MARKERS.values())  # this very process's markers
    every = plain + live
    with Session(engine) as session:
        issue = build_sample_issue(session, month, papers=3)
        paper_id = session.exec(
            select(IssuePaper.paper_id).where(IssuePaper.issue_id == issue.id).limit(1)
        ).first()[0]
        paper = session.get(Paper, paper_id)
        paper.title = "Steal " + " ".join(every)
        paper.summary = "Summary " + " ".join(every)
        paper.authors = every
        query = "&".join(f"p{i}={m}" for i, m in enumerate(every))
        paper.url = f"https://attacker.example/t?{query}"
        session.commit()


def _bodies(backend: str, sink, fake, outbox: Path) -> list[str]:
    """Every body as the recipient's mail client finally sees it."""
    if backend == "sendgrid":
        texts = []
        for body in fake.state.bodies:
            for person in body["personalizations"]:
                for part in body["content"]:
                    value = part["value"]
                    for key, sub in person.get("substitutions", {}).items():
                        value = value.replace(key, sub)  # what SendGrid does
                    texts.append(value)
        return texts
    raw = (
        [m.data for m in sink.messages]
        if backend == "smtp"
        else [p.read_bytes() for p in outbox.glob("*.eml")]
    )
    texts = []
    for data in raw:
        msg = message_from_bytes(data, policy=policy.default)
        texts += [part.get_content() for part in msg.walk() if not part.is_multipart()]
    return texts


@pytest.mark.parametrize("backend", ["outbox", "smtp", "sendgrid"])
def test_paper_text_never_becomes_a_recipient_field(engine, settings, tmp_path, backend) -> None:
    _booby_trapped_issue(engine, "2026-04")
    sub = _vouch(engine, settings, "victim@example.org")
    with SmtpSink() as sink, FakeSendgrid(KEY) as fake:
        transport = {
            "outbox": lambda: OutboxTransport(tmp_path / "outbox"),
            "smtp": lambda: SmtpTransport(sink.url),
            "sendgrid": lambda: SendgridTransport(KEY, fake.url),
        }[backend]()
        report = send_issue(engine, settings, "2026-04", transport=transport)
        assert report.run.sent == 1
        bodies = _bodies(backend, sink, fake, tmp_path / "outbox")
    assert len(bodies) == 2  # text and HTML
    for body in bodies:
        for name in RECIPIENT_FIELDS:
            assert f"__NL_{name.upper()}__" in body, (name, body[:300])
        for marker in RECIPIENT_MARKERS.values():
            assert marker not in body
        trap = body[body.index("attacker.example") :].split()[0]
        assert "victim" not in trap and sub.public_id not in trap and "/unsubscribe/" not in trap
    assert all(f"{settings.base_url}/unsubscribe/" in body for body in bodies)  # the real one
