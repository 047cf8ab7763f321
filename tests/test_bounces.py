"""SMTP bounces end to end: VERP on the wire, real-format DSNs in a real IMAP mailbox
(a throwaway Dovecot), `bounces fetch`, suppression, and the next issue skipping the address."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlmodel import Session

from newsletter.bounces.dsn import read_message
from newsletter.bounces.mailbox import fetch_bounces
from newsletter.delivery.feedback import Bounce, record_bounce
from newsletter.errors import NewsletterError
from newsletter.models import Delivery, ProviderEvent
from newsletter.rendering.recipients import recipient_links
from newsletter.testing.dovecot import DovecotServer, DovecotUnavailable, start_dovecot
from newsletter.testing.sample_send import issue_topics, seed_issue, seed_subscribers
from newsletter.testing.smtp_sink import SmtpSink
from newsletter.verp import (
    VerpToken,
    delivery_id_from,
    delivery_public_id,
    read_unsubscribe,
    read_verp,
    unsubscribe_address,
    verp_address,
)
from subscribers.models import ConsentRecord, Subscriber, utcnow
from tests.conftest import IN_CI

DATA = Path(__file__).parent / "data" / "bounces"
BOUNCES = "bounces@news.example.org"
SECRET = "test-secret-key-not-for-production"  # tests/conftest.py's settings


def dsn(
    name: str,
    rcpt: str,
    *,
    verp: str = BOUNCES,
    unique: str = "1",
    headers: str = "",
    to: str = "",
    more: tuple[str, ...] = (),
) -> bytes:
    """A message of tests/data/bounces for this recipient, with CRLF line ends as on the wire."""
    text = (DATA / name).read_text()
    values = {
        "@RCPT2@": more[0] if more else "",
        "@RCPT3@": more[1] if len(more) > 1 else "",
        "@RCPT@": rcpt,
        "@VERP@": verp,
        "@TO@": to or verp,
        "@ID@": unique,
        "@HEADERS@": headers or f"From: ML Foundations <newsletter@news.example.org>\nTo: {rcpt}",
    }
    for token, value in values.items():
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
    """The module's Dovecot with an empty INBOX and no Unverified folder."""
    dovecot.clear()
    return dovecot


def test_verp_is_signed_per_delivery_and_fits_a_local_part() -> None:
    address = verp_address(BOUNCES, SECRET, 1234, "Alice@Example.org")
    local = address.rpartition("@")[0]
    assert address.endswith("@news.example.org") and len(local) <= 64
    assert "alice" not in address.lower()  # the recipient is in the row, not the address
    token = read_verp(BOUNCES, address)
    assert token is not None and token.delivery_id(SECRET) == 1234
    # The public id hides the row id: neighbours look unrelated, and only the key reverses it.
    neighbour = read_verp(BOUNCES, verp_address(BOUNCES, SECRET, 1235, "alice@example.org"))
    assert neighbour is not None and neighbour.public_id[:6] != token.public_id[:6]
    assert token.delivery_id("another-secret-key-of-the-same-length") != 1234
    for n in (0, 1, 2**31, 2**63 - 1):
        assert delivery_id_from(SECRET, delivery_public_id(SECRET, n)) == n
    assert token.names(SECRET, "alice@example.org")
    assert not token.names(SECRET, "bob@example.org")  # signed for another address
    assert not token.names("another-secret-key-of-the-same-length", "alice@example.org")
    upper = read_verp(BOUNCES, address.upper())  # an MTA that folds case breaks nothing
    assert upper is not None and upper.names(SECRET, "alice@example.org")
    forged = VerpToken(delivery_public_id(SECRET, 1235), token.mac)  # another delivery, our MAC
    assert not forged.names(SECRET, "alice@example.org")
    for other in (
        "bounces@news.example.org",
        "bounces+alice=example.org@news.example.org",  # the old unsigned form
        address.replace("news.example.org", "elsewhere.org"),
        "other" + address[len("bounces") :],
    ):
        assert read_verp(BOUNCES, other) is None
    longest = verp_address("b" * 20 + "@x.example.org", SECRET, 2**64 - 1, "a@b.example")
    assert len(longest.rpartition("@")[0]) <= 64
    mailto = unsubscribe_address("b" * 20 + "@x.example.org", SECRET, "A" * 16, 2**30)
    assert len(mailto.rpartition("@")[0]) <= 64


def test_dsns_are_read_as_hard_soft_or_not_a_bounce() -> None:
    hard = read_message(dsn("postfix-hard-5.1.1.eml", "gone@example.com"), BOUNCES)
    assert hard.kind == "bounce"
    assert [(f.email, f.hard, f.status) for f in hard.failures] == [
        ("gone@example.com", True, "5.1.1")
    ]
    assert "User unknown" in hard.failures[0].diagnostic
    # The MTA gave up (Action: failed) on a 4.x.x status: hard whatever the status class.
    gave_up = read_message(dsn("postfix-soft-4.2.2.eml", "full@example.net"), BOUNCES)
    assert [(f.email, f.hard, f.status) for f in gave_up.failures] == [
        ("full@example.net", True, "4.2.2")
    ]
    x400 = read_message(dsn("flufl-dsn_02.eml", "zzzzz@example.uk"), BOUNCES)
    assert x400.kind == "bounce" and x400.failures
    assert all(f.hard for f in x400.failures)
    assert "4.4.7" in {f.status for f in x400.failures}
    delayed = read_message(dsn("flufl-dsn_05.eml", "userx@example.cz"), BOUNCES)
    assert [(f.email, f.hard) for f in delayed.failures] == [("userx@example.cz", False)]
    assert read_message(dsn("auto-reply.eml", "alice@example.org"), BOUNCES).kind == "auto_reply"
    complaint = read_message(dsn("arf-abuse.eml", "alice@example.org"), BOUNCES)
    assert complaint.kind == "complaint" and complaint.complaint is not None
    assert complaint.complaint.original_rcpt == "alice@example.org"
    not_spam = dsn("arf-abuse.eml", "alice@example.org").replace(
        b"Feedback-Type: abuse", b"Feedback-Type: not-spam"
    )
    assert read_message(not_spam, BOUNCES).kind == "other"  # RFC 6430: for a person


def test_rfc3464_parts_are_read_where_flufl_finds_nothing() -> None:
    """RFC 6533 `utf-8` address types and global DSNs: flufl.bounce skips them."""
    raw = (
        dsn("postfix-hard-5.1.1.eml", "gone@example.com")
        .replace(
            b"Final-Recipient: rfc822; gone@example.com",
            b"Final-Recipient: utf-8; j\\x{00F6}rg@example.com",
        )
        .replace(b"Original-Recipient: rfc822;gone@example.com\r\n", b"")
    )
    raw = raw.replace(b"<gone@example.com>", b"<nobody>")
    from flufl.bounce import all_failures

    assert all_failures(message_from_bytes(raw)) == (set(), set())
    reading = read_message(raw, BOUNCES)
    assert [(f.email, f.hard, f.status) for f in reading.failures] == [
        ("jörg@example.com", True, "5.1.1")
    ]
    global_dsn = raw.replace(
        b"Content-Type: message/delivery-status", b"Content-Type: message/global-delivery-status"
    )
    assert [f.email for f in read_message(global_dsn, BOUNCES).failures] == ["jörg@example.com"]


def _subscribers(session: Session, count: int, prefix: str = "reader") -> list[str]:
    seed_subscribers(session, count, [()], prefix=prefix)
    session.commit()
    return [f"{prefix}{i:06d}@example.org" for i in range(count)]


def _sent(session: Session, emails: list[str], month: str = "2026-04") -> dict[str, Delivery]:
    """A sent issue with one sent delivery (and its Message-ID) to each of `emails`."""
    issue = seed_issue(session, month, issue_topics(session))
    issue.send_started_at = utcnow()
    rows = {}
    for n, email in enumerate(emails):
        sub = session.execute(select(Subscriber).where(Subscriber.email == email)).scalar_one()
        rows[email] = Delivery(
            issue_id=issue.id,
            subscriber_id=sub.id,
            status="sent",
            sent_at=utcnow(),
            provider_message_id=f"<17961482{n:04d}.17187.{month}@news.example.org>",
        )
        session.add(rows[email])
    session.commit()
    return rows


def _status(session: Session, email: str) -> tuple[str, str]:
    sub = session.execute(select(Subscriber).where(Subscriber.email == email)).scalar_one()
    session.refresh(sub)
    return sub.status, sub.suppressed_reason


def _configured(settings, imap: DovecotServer):
    return settings.model_copy(update={"bounce_address": BOUNCES, "bounce_imap_url": imap.url})


def _verp(delivery: Delivery, email: str) -> str:
    assert delivery.id is not None
    return verp_address(BOUNCES, SECRET, delivery.id, email)


def test_soft_bounces_suppress_after_three_in_thirty_days(session: Session) -> None:
    (email,) = _subscribers(session, 1)
    delivery = _sent(session, [email])[email]
    now = utcnow()

    def soft(n: int, days_ago: float) -> bool:
        bounce = Bounce(f"<soft-{n}@mx>:{email}", email, hard=False, status="4.2.2")
        when = now - timedelta(days=days_ago)
        return record_bounce(session, bounce, delivery_id=delivery.id, now=when).suppressed

    assert not soft(1, 45)  # outside the window: does not count
    assert not soft(2, 20)
    assert not soft(3, 10)
    assert _status(session, email)[0] == "active"
    repeat = Bounce(f"<soft-3@mx>:{email}", email, hard=False)
    assert record_bounce(session, repeat, delivery_id=delivery.id).new is False
    assert soft(4, 0)
    status, reason = _status(session, email)
    assert status == "suppressed" and "3 soft bounces in 30 days" in reason


def test_fetch_records_proven_hard_and_soft_and_leaves_other_mail(
    settings, engine, session: Session, imap: DovecotServer
) -> None:
    gone, late, person, quiet = _subscribers(session, 4)
    sent = _sent(session, [gone, late, person, quiet])
    imap.deliver(dsn("postfix-hard-5.1.1.eml", gone, verp=_verp(sent[gone], gone)))
    imap.deliver(dsn("flufl-dsn_05.eml", late, verp=_verp(sent[late], late)))
    imap.deliver(dsn("auto-reply.eml", person, verp=_verp(sent[person], person)))
    imap.deliver(dsn("flufl-qmail_01.eml", quiet, verp=_verp(sent[quiet], quiet)))
    configured = _configured(settings, imap)
    report = fetch_bounces(engine, configured)
    assert (report.messages, report.hard, report.soft, report.suppressed) == (4, 2, 1, 2)
    assert (report.unparsed, report.unverified) == (1, 0)
    assert _status(session, gone)[0] == "suppressed" and "5.1.1" in _status(session, gone)[1]
    assert _status(session, quiet)[0] == "suppressed"  # qmail's bounce: no DSN part
    assert _status(session, late)[0] == "active"  # one delayed DSN: soft
    assert _status(session, person)[0] == "active"  # out of office
    events = session.execute(
        select(ProviderEvent.email, ProviderEvent.event, ProviderEvent.delivery_id)
    ).all()
    assert sorted(events) == sorted(
        [
            (gone, "bounce", sent[gone].id),
            (quiet, "bounce", sent[quiet].id),
            (late, "soft_bounce", sent[late].id),
        ]
    )
    assert imap.message_count() == 1  # the auto-reply, left for a person
    again = fetch_bounces(engine, configured)
    assert (again.messages, again.hard, again.unparsed) == (1, 0, 1)


def test_forged_bounces_change_nobody_and_are_counted_unverified(
    settings, engine, session: Session, imap: DovecotServer, cli
) -> None:
    """The red team's forgeries (review 2026-12, V1), against people we really mailed."""
    victims = _subscribers(session, 8, prefix="victim")
    (attacker,) = _subscribers(session, 1, prefix="attacker")
    sent = _sent(session, [*victims, attacker])
    old_verp = BOUNCES.replace("@", f"+{victims[0].replace('@', '=')}@")
    # A. the old unsigned VERP form naming victim 0, Final-Recipient an attacker address
    imap.deliver(dsn("postfix-hard-5.1.1.eml", "x@attacker.example", verp=old_verp, unique="a"))
    # B. one real-looking DSN to the plain bounce address naming three victims
    imap.deliver(
        dsn("postfix-three-recipients.eml", victims[1], more=(victims[2], victims[3]), unique="b")
    )
    # C. three soft bounces to unsigned VERP addresses of victim 4
    for n in range(3):
        soft_verp = BOUNCES.replace("@", f"+{victims[4].replace('@', '=')}@")
        imap.deliver(dsn("flufl-dsn_05.eml", victims[4], verp=soft_verp, unique=f"c{n}"))
    # D. a DSN to someone else carrying a forged Delivered-To of victim 5
    forged_to = BOUNCES.replace("@", f"+{victims[5].replace('@', '=')}@")
    d = dsn("postfix-hard-5.1.1.eml", victims[5], verp="someone@else.example", unique="d")
    imap.deliver(
        d.replace(b"Delivered-To: someone@else.example", b"Delivered-To: " + forged_to.encode())
    )
    # E. the attacker's own valid token with victim 6's delivery id put in it, and a token
    # signed (by us) for victim 6's delivery but for another address
    own = read_verp(BOUNCES, _verp(sent[attacker], attacker))
    assert own is not None
    victim_id = delivery_public_id(SECRET, sent[victims[6]].id)  # type: ignore[arg-type]
    swapped = BOUNCES.replace("@", f"+{victim_id}.{own.mac}@")
    imap.deliver(dsn("postfix-hard-5.1.1.eml", victims[6], verp=swapped, unique="e1"))
    other_address = verp_address(BOUNCES, SECRET, sent[victims[6]].id, attacker)
    imap.deliver(dsn("postfix-hard-5.1.1.eml", victims[6], verp=other_address, unique="e2"))
    # F. a returned Message-ID we never sent, naming victim 7
    imap.deliver(
        dsn(
            "postfix-hard-5.1.1.eml",
            victims[7],
            unique="f",
            headers=f"Message-ID: <guessed@news.example.org>\nTo: {victims[7]}",
        )
    )
    report = fetch_bounces(engine, _configured(settings, imap))
    assert (report.messages, report.unverified, report.suppressed) == (9, 9, 0)
    assert (report.hard, report.soft) == (0, 0)
    for email in victims:
        assert _status(session, email)[0] == "active", email
    assert imap.message_count() == 0  # moved out of the INBOX …
    assert imap.message_count("Unverified") == 9  # … into the Unverified folder
    again = fetch_bounces(engine, _configured(settings, imap))
    assert again.messages == 0
    session.commit()  # end the read transaction before the CLI opens its own
    status = cli("issue", "status", "2026-04")
    assert "Unverified: 9 bounce(s) or report(s)" in status.output, status.output
    assert _status(session, attacker)[0] == "active"


def test_a_returned_message_id_proves_one_bounce_to_the_plain_address(
    settings, engine, session: Session, imap: DovecotServer
) -> None:
    gone, other, third = _subscribers(session, 3)
    sent = _sent(session, [gone, other, third])
    quoted = f"Message-ID: {sent[gone].provider_message_id}\nTo: {gone}"
    imap.deliver(dsn("postfix-three-recipients.eml", gone, more=(other, third), headers=quoted))
    report = fetch_bounces(engine, _configured(settings, imap))
    assert (report.hard, report.suppressed, report.unverified) == (1, 1, 0)
    assert _status(session, gone)[0] == "suppressed"
    assert _status(session, other)[0] == "active" and _status(session, third)[0] == "active"


def test_an_arf_complaint_about_a_delivered_issue_unsubscribes(
    settings, engine, session: Session, imap: DovecotServer, cli
) -> None:
    reader, stranger = _subscribers(session, 2)
    sent = _sent(session, [reader, stranger])
    original = f"From: ML Foundations <news@news.example.org>\nTo: {reader}\nSubject: Issue"
    imap.deliver(dsn("arf-abuse.eml", reader, verp=_verp(sent[reader], reader), headers=original))
    # The same report with the envelope sender and recipient made up: proves nothing.
    imap.deliver(dsn("arf-abuse.eml", stranger, unique="2", headers=f"To: {stranger}"))
    report = fetch_bounces(engine, _configured(settings, imap))
    assert (report.complaints, report.unsubscribed, report.unverified) == (1, 1, 1)
    assert _status(session, reader)[0] == "unsubscribed"
    assert _status(session, stranger)[0] == "active"
    session.commit()
    history = json.loads(cli("subscribers", "export", "--email", reader).output)
    assert any(
        c["action"] == "unsubscribe" and c["source"] == "complaint" for c in history["consent"]
    ), history
    status = cli("issue", "status", "2026-04")
    assert "1 complaint (arf)" in status.output and f"{reader}  complaint" in status.output


def test_an_arf_report_is_matched_by_its_unsubscribe_link(
    settings, engine, session: Session, imap: DovecotServer
) -> None:
    """Microsoft redacts the recipient; the signed link in the reported message remains."""
    (reader,) = _subscribers(session, 1)
    _sent(session, [reader])
    sub = session.execute(select(Subscriber).where(Subscriber.email == reader)).scalar_one()
    url = recipient_links(settings, sub)["unsubscribe_url"]
    original = f"To: redacted@example.com\nList-Unsubscribe: <{url}>"
    raw = dsn("arf-abuse.eml", "redacted@example.com", verp="x@example.net", headers=original)
    imap.deliver(raw)
    session.commit()
    report = fetch_bounces(engine, _configured(settings, imap))
    assert (report.complaints, report.unsubscribed) == (1, 1)
    assert _status(session, reader)[0] == "unsubscribed"


def test_a_mail_to_the_mailto_address_unsubscribes_once(
    settings, engine, session: Session, imap: DovecotServer
) -> None:
    reader, other = _subscribers(session, 2)
    sub = session.execute(select(Subscriber).where(Subscriber.email == reader)).scalar_one()
    address = unsubscribe_address(BOUNCES, SECRET, sub.public_id, sub.token_version)
    imap.deliver(dsn("mailto-unsubscribe.eml", reader, to=address))
    imap.deliver(dsn("mailto-unsubscribe.eml", reader, to=address, unique="2"))
    stale = unsubscribe_address(BOUNCES, SECRET, sub.public_id, sub.token_version + 1)
    imap.deliver(dsn("mailto-unsubscribe.eml", other, to=stale, unique="3"))
    forged = address[: address.index("@") - 2] + "aa" + address[address.index("@") :]
    imap.deliver(dsn("mailto-unsubscribe.eml", other, to=forged, unique="4"))
    session.commit()
    report = fetch_bounces(engine, _configured(settings, imap))
    assert (report.unsubscribed, report.unverified) == (1, 2)
    assert _status(session, reader)[0] == "unsubscribed"
    assert _status(session, other)[0] == "active"
    history = [
        r.source
        for r in session.execute(
            select(ConsentRecord).where(
                ConsentRecord.subscriber_id == sub.id, ConsentRecord.action == "unsubscribe"
            )
        ).scalars()
    ]
    assert history == ["mailto"]


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
        # The envelope sender on the wire is a VERP address signed for each delivery.
        rows = dict(
            session.execute(
                select(Subscriber.email, Delivery.id).join(
                    Delivery, Delivery.subscriber_id == Subscriber.id
                )
            ).all()
        )
        session.commit()
        assert sorted(r for m in first for r in m.rcpt_tos) == sorted([alive, dead, away])
        for m in first:
            token = read_verp(BOUNCES, m.mail_from)
            (rcpt,) = m.rcpt_tos
            assert token is not None and token.delivery_id(SECRET) == rows[rcpt]
            assert token.names(SECRET, rcpt) and rcpt not in m.mail_from
        to_dead = next(m for m in first if m.rcpt_tos == (dead,))
        to_away = next(m for m in first if m.rcpt_tos == (away,))
        wire = message_from_bytes(to_dead.data)
        assert read_unsubscribe(BOUNCES, _list_unsubscribe(wire)[1]) is not None
        quoted = to_dead.data.split(b"\r\n\r\n", 1)[0].decode().replace("\r\n", "\n")
        imap.deliver(dsn("postfix-hard-5.1.1.eml", dead, verp=to_dead.mail_from, headers=quoted))
        imap.deliver(dsn("auto-reply.eml", away, verp=to_away.mail_from))

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
    delivery = _sent(session, [gone])[gone]
    imap.deliver(dsn("postfix-hard-5.1.1.eml", gone, verp=_verp(delivery, gone)))
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
        # the signed VERP and mailto tokens would not fit a 64-character local part
        ({"bounce_address": "a" * 21 + "@news.example.org"}, "NEWSLETTER_BOUNCE_ADDRESS"),
        ({"bounce_imap_url": "https://u:s3cret@imap.example.org/"}, "NEWSLETTER_BOUNCE_IMAP_URL"),
        ({"dns_server": "dns.example.org"}, "NEWSLETTER_DNS_SERVER"),
    ],
)
def test_bad_bounce_and_dns_settings_name_the_variable(tmp_path, values, variable) -> None:
    from newsletter.settings import SettingsError, load_settings

    with pytest.raises(SettingsError) as exc:
        load_settings(var_dir=tmp_path, _env_file=None, **values)
    assert str(exc.value).startswith(variable) and "s3cret" not in str(exc.value)


def _list_unsubscribe(msg) -> tuple[str, str]:  # noqa: ANN001
    """(https URI, mailto address) of a parsed message's List-Unsubscribe header."""
    value = " ".join(str(msg["List-Unsubscribe"]).split())
    https = re.findall(r"<(https?://[^>]+)>", value)
    mailto = re.findall(r"<mailto:([^>?]+)\?subject=unsubscribe>", value)
    assert len(https) == 1 and len(mailto) == 1, value
    return https[0], mailto[0]


def test_welcome_mail_carries_list_headers_and_its_mailto_unsubscribes(
    settings, engine, imap: DovecotServer
) -> None:
    """Subscribe and confirm on the real app; the welcome mail's mailto: request, sent back
    to the bounce mailbox as a mail client does, unsubscribes once."""
    from fastapi.testclient import TestClient

    from newsletter.web.app import create_app
    from tests.test_web import links_in, mails

    configured = _configured(settings, imap)
    client = TestClient(create_app(configured))
    email = "ada@example.org"
    assert client.post("/subscribe", data={"email": email, "topics": []}).status_code == 200
    confirmation = mails(configured)[-1]
    assert confirmation["List-Unsubscribe"] is None  # nobody is subscribed yet
    assert client.post(links_in(confirmation)["confirm"]).status_code == 200
    welcome = mails(configured)[-1]
    https, mailto = _list_unsubscribe(welcome)
    assert "/unsubscribe/" in https and mailto.startswith("bounces+u.")
    assert mailto.endswith("@news.example.org") and len(mailto.partition("@")[0]) <= 64
    assert welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "ml-foundations" in str(welcome["List-Id"])
    imap.deliver(dsn("mailto-unsubscribe.eml", email, to=mailto))
    imap.deliver(dsn("mailto-unsubscribe.eml", email, to=mailto, unique="again"))
    report = fetch_bounces(engine, configured)
    assert (report.unsubscribed, report.unverified, report.messages) == (1, 0, 2)
    with Session(engine) as session:
        assert _status(session, email)[0] == "unsubscribed"


def test_a_mailto_is_offered_only_where_the_mailbox_is_read(settings, session: Session) -> None:
    from newsletter.rendering.recipients import recipient_headers

    (email,) = _subscribers(session, 1)
    sub = session.execute(select(Subscriber).where(Subscriber.email == email)).scalar_one()
    unread = settings.model_copy(update={"bounce_address": BOUNCES})  # no IMAP URL
    assert "mailto:" not in recipient_headers(unread, sub)["List-Unsubscribe"]
    read = unread.model_copy(update={"bounce_imap_url": "imap://u:p@127.0.0.1:1/INBOX"})
    header = recipient_headers(read, sub)["List-Unsubscribe"]
    expected = unsubscribe_address(BOUNCES, SECRET, sub.public_id, sub.token_version)
    assert header.endswith(f", <mailto:{expected}?subject=unsubscribe>")
