"""SMTP bounces end to end: VERP on the wire, real-format DSNs in a real IMAP mailbox
(a throwaway Dovecot), `bounces fetch`, suppression, and the next issue skipping the address."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlmodel import Session

from newsletter.bounces.dsn import read_bounce
from newsletter.bounces.mailbox import fetch_bounces
from newsletter.delivery.feedback import Bounce, record_bounce
from newsletter.errors import NewsletterError
from newsletter.models import ProviderEvent
from newsletter.testing.dovecot import DovecotServer, DovecotUnavailable, start_dovecot
from newsletter.testing.sample_send import issue_topics, seed_issue, seed_subscribers
from newsletter.testing.smtp_sink import SmtpSink
from newsletter.verp import verp_address, verp_recipient
from subscribers.models import Subscriber, utcnow
from tests.conftest import IN_CI

DATA = Path(__file__).parent / "data" / "bounces"
BOUNCES = "bounces@news.example.org"


def dsn(name: str, rcpt: str, *, unique: str = "1", headers: str = "") -> bytes:
    """A message of tests/data/bounces for this recipient, with CRLF line ends as on the wire."""
    text = (DATA / name).read_text()
    for token, value in {
        "@RCPT@": rcpt,
        "@VERP@": verp_address(BOUNCES, rcpt),
        "@ID@": unique,
        "@HEADERS@": headers or f"From: ML Foundations <newsletter@news.example.org>\nTo: {rcpt}",
    }.items():
        text = text.replace(token, value)
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


@pytest.fixture(scope="module")
def dovecot() -> Iterator[DovecotServer]:
    """A throwaway Dovecot on 127.0.0.1; skipped without dovecot, except under CI=true."""
    try:
        server = start_dovecot()
    except DovecotUnavailable as exc:
        if IN_CI:
            pytest.fail(f"dovecot is required under CI=true: {exc}", pytrace=False)
        pytest.skip(str(exc))
    with server:
        yield server


@pytest.fixture
def imap(dovecot: DovecotServer) -> DovecotServer:
    """The module's Dovecot with an empty INBOX."""
    dovecot.clear()
    return dovecot


def test_verp_round_trip() -> None:
    assert verp_address(BOUNCES, "alice@example.org") == (
        "bounces+alice=example.org@news.example.org"
    )
    for rcpt in ("alice@example.org", "a+tag=x@mail.example.com", "O'Neil@example.ie"):
        assert verp_recipient(BOUNCES, verp_address(BOUNCES, rcpt)) == rcpt
    assert verp_recipient(BOUNCES, "bounces@news.example.org") is None
    assert verp_recipient(BOUNCES, "bounces+alice=example.org@elsewhere.org") is None
    assert verp_recipient(BOUNCES, "other+alice=example.org@news.example.org") is None


def test_dsns_are_read_as_hard_soft_or_not_a_bounce() -> None:
    hard = read_bounce(dsn("postfix-hard-5.1.1.eml", "gone@example.com"), BOUNCES)
    assert [(b.email, b.hard, b.status) for b in hard] == [("gone@example.com", True, "5.1.1")]
    assert "User unknown" in hard[0].diagnostic
    soft = read_bounce(dsn("postfix-soft-4.2.2.eml", "full@example.net"), BOUNCES)
    assert [(b.email, b.hard, b.status) for b in soft] == [("full@example.net", False, "4.2.2")]
    assert read_bounce(dsn("auto-reply.eml", "alice@example.org"), BOUNCES) == []
    # Without VERP the DSN's own recipient fields are used.
    plain = read_bounce(dsn("postfix-hard-5.1.1.eml", "gone@example.com"), "")
    assert [(b.email, b.hard) for b in plain] == [("gone@example.com", True)]


def _subscribers(session: Session, count: int) -> list[str]:
    seed_subscribers(session, count, [()])
    session.commit()
    return [f"reader{i:06d}@example.org" for i in range(count)]


def _status(session: Session, email: str) -> tuple[str, str]:
    sub = session.execute(select(Subscriber).where(Subscriber.email == email)).scalar_one()
    session.refresh(sub)
    return sub.status, sub.suppressed_reason


def test_soft_bounces_suppress_after_three_in_thirty_days(session: Session) -> None:
    (email,) = _subscribers(session, 1)
    now = utcnow()

    def soft(n: int, days_ago: float) -> bool:
        bounce = Bounce(f"<soft-{n}@mx>:{email}", email, hard=False, status="4.2.2")
        return record_bounce(session, bounce, now=now - timedelta(days=days_ago)).suppressed

    assert not soft(1, 45)  # outside the window: does not count
    assert not soft(2, 20)
    assert not soft(3, 10)
    assert _status(session, email)[0] == "active"
    assert record_bounce(session, Bounce(f"<soft-3@mx>:{email}", email, hard=False)).new is False
    assert soft(4, 0)
    status, reason = _status(session, email)
    assert status == "suppressed" and "3 soft bounces in 30 days" in reason


def test_fetch_records_hard_and_soft_and_leaves_other_mail(
    settings, engine, session: Session, imap: DovecotServer
) -> None:
    gone, full, person = _subscribers(session, 3)
    imap.deliver(dsn("postfix-hard-5.1.1.eml", gone))
    imap.deliver(dsn("postfix-soft-4.2.2.eml", full))
    imap.deliver(dsn("auto-reply.eml", person))
    configured = settings.model_copy(
        update={"bounce_address": BOUNCES, "bounce_imap_url": imap.url}
    )
    report = fetch_bounces(engine, configured)
    assert (report.messages, report.hard, report.soft, report.suppressed, report.unparsed) == (
        3,
        1,
        1,
        1,
        1,
    )
    assert _status(session, gone)[0] == "suppressed" and "5.1.1" in _status(session, gone)[1]
    assert _status(session, full)[0] == "active"
    assert _status(session, person)[0] == "active"
    events = session.execute(select(ProviderEvent.email, ProviderEvent.event)).all()
    assert sorted(events) == sorted([(full, "soft_bounce"), (gone, "bounce")])
    assert imap.message_count() == 1  # the auto-reply, left for a person
    again = fetch_bounces(engine, configured)
    assert (again.messages, again.hard, again.unparsed) == (1, 0, 1)


def test_fetch_reports_a_refused_login_without_the_password(tmp_path, imap) -> None:
    from newsletter.db import make_engine
    from newsletter.settings import load_settings

    bad = imap.url.replace(":bounce-mailbox-secret@", ":wrong-password@")
    settings = load_settings(var_dir=tmp_path, bounce_imap_url=bad, _env_file=None)
    with pytest.raises(NewsletterError) as exc:  # refused before the database is touched
        fetch_bounces(make_engine(f"sqlite:///{tmp_path}/unused.db"), settings)
    assert "refused the login" in str(exc.value) and "wrong-password" not in str(exc.value)
    assert "NEWSLETTER_BOUNCE_IMAP_URL" in str(exc.value)


def test_smtp_send_dsn_fetch_and_the_next_issue_skips_the_dead_address(
    settings, session: Session, cli, monkeypatch, imap: DovecotServer
) -> None:
    topics = issue_topics(session)
    seed_issue(session, "2026-04", topics)
    alive, dead, away = _subscribers(session, 3)
    with SmtpSink() as sink:
        for name, value in {
            "NEWSLETTER_MAIL_BACKEND": "smtp",
            "NEWSLETTER_SMTP_URL": sink.url,
            "NEWSLETTER_BOUNCE_ADDRESS": BOUNCES,
            "NEWSLETTER_BOUNCE_IMAP_URL": imap.url,
            "NEWSLETTER_POSTAL_ADDRESS": settings.postal_address,
            "NEWSLETTER_SECRET_KEY": settings.secret_key,
        }.items():
            monkeypatch.setenv(name, value)
        sent = cli("issue", "send", "2026-04", "--yes")
        assert sent.exit_code == 0, sent.output
        first = sink.messages
        # The envelope sender on the wire is the VERP address of each recipient.
        assert sorted((m.rcpt_tos, m.mail_from) for m in first) == sorted(
            ((r,), verp_address(BOUNCES, r)) for r in (alive, dead, away)
        )
        to_dead = next(m for m in first if m.rcpt_tos == (dead,))
        quoted = to_dead.data.split(b"\r\n\r\n", 1)[0].decode().replace("\r\n", "\n")
        imap.deliver(dsn("postfix-hard-5.1.1.eml", dead, headers=quoted))
        imap.deliver(dsn("auto-reply.eml", away))

        fetched = cli("bounces", "fetch")
        assert fetched.exit_code == 0, fetched.output
        assert (
            "1 hard bounce(s)" in fetched.output and "1 subscriber(s) suppressed" in fetched.output
        )
        assert "1 message(s) are not bounces" in fetched.output
        assert imap.message_count() == 1

        status = cli("issue", "status", "2026-04")
        assert "1 bounce (smtp)" in status.output
        assert f"{dead}  bounce" in status.output and "5.1.1" in status.output
        exported = json.loads(cli("subscribers", "export", "--email", dead).output)
        assert exported["status"] == "suppressed" and "5.1.1" in exported["suppressed_reason"]

        seed_issue(session, "2026-05", topics)
        session.commit()
        again = cli("issue", "send", "2026-05", "--yes")
        assert again.exit_code == 0, again.output
        second = sink.messages[len(first) :]
        assert sorted(r for m in second for r in m.rcpt_tos) == sorted([alive, away])


def test_the_clock_reads_the_bounce_mailbox_hourly_when_configured(
    settings, engine, session: Session, imap: DovecotServer, caplog
) -> None:
    import threading

    from newsletter.scheduler import BOUNCE_JOB_ID, build_clock, fetch_bounces_job

    assert build_clock(engine, settings, threading.Event()).get_job(BOUNCE_JOB_ID) is None
    configured = settings.model_copy(
        update={"bounce_address": BOUNCES, "bounce_imap_url": imap.url}
    )
    job = build_clock(engine, configured, threading.Event()).get_job(BOUNCE_JOB_ID)
    assert job is not None and job.trigger.interval.total_seconds() == 3600
    (gone,) = _subscribers(session, 1)
    imap.deliver(dsn("postfix-hard-5.1.1.eml", gone))
    fetch_bounces_job(engine, configured)
    assert _status(session, gone)[0] == "suppressed"
    broken = configured.model_copy(update={"bounce_imap_url": "imap://u:p@127.0.0.1:1/INBOX"})
    with caplog.at_level("WARNING", logger="newsletter.clock"):
        fetch_bounces_job(engine, broken)  # logged, never raised into the scheduler
    assert "unreachable" in caplog.text


@pytest.mark.parametrize(
    ("values", "variable"),
    [
        ({"bounce_address": "bounces+x@news.example.org"}, "NEWSLETTER_BOUNCE_ADDRESS"),
        ({"bounce_address": "Bounces <b@news.example.org>"}, "NEWSLETTER_BOUNCE_ADDRESS"),
        ({"bounce_imap_url": "https://u:s3cret@imap.example.org/"}, "NEWSLETTER_BOUNCE_IMAP_URL"),
        ({"dns_server": "dns.example.org"}, "NEWSLETTER_DNS_SERVER"),
    ],
)
def test_bad_bounce_and_dns_settings_name_the_variable(tmp_path, values, variable) -> None:
    from newsletter.settings import SettingsError, load_settings

    with pytest.raises(SettingsError) as exc:
        load_settings(var_dir=tmp_path, _env_file=None, **values)
    assert str(exc.value).startswith(variable) and "s3cret" not in str(exc.value)
