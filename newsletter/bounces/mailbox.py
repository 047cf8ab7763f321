"""`newsletter bounces fetch`: read the bounce mailbox over IMAP and record what bounced.

Only what proves a delivery of ours acts (`newsletter.bounces.proof`): bounces, ARF
complaints and mails to the `mailto:` unsubscribe address. Everything is recorded
(idempotently) and committed, a chunk at a time, before its message is deleted, so a crash
in between only means those messages are read again, and recorded nothing twice. A bounce
or report that proves nothing is counted as unverified and moved to the `Unverified`
folder, changing nobody. Messages that are not bounces (auto-replies, people answering)
stay in the mailbox for a person to read, and are counted.
"""

from __future__ import annotations

import contextlib
import imaplib
import logging
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from imap_tools import BaseMailBox, MailBox, MailBoxStartTls, MailBoxUnencrypted
from imap_tools.errors import MailboxFolderSelectError, MailboxLoginError
from sqlalchemy.engine import Engine
from sqlmodel import Session

from newsletter.bounces import proof
from newsletter.bounces.dsn import Failure, Reading, read_message
from newsletter.db import session_scope
from newsletter.delivery import feedback
from newsletter.delivery.feedback import Bounce
from newsletter.errors import NewsletterError
from newsletter.settings import Settings
from subscribers import lifecycle
from subscribers.models import Subscriber

log = logging.getLogger("newsletter.bounces")

IMAP_TIMEOUT = 30.0
CHUNK = 100  # messages fetched per IMAP command, and recorded per transaction


UNVERIFIED_FOLDER = "Unverified"  # where messages that prove nothing are moved


@dataclass
class FetchReport:
    messages: int = 0  # read from the mailbox
    hard: int = 0  # new hard bounces recorded
    soft: int = 0  # new soft bounces recorded
    repeats: int = 0  # bounces recorded by an earlier run (message not yet deleted then)
    suppressed: int = 0  # subscribers suppressed by this run
    complaints: int = 0  # new proven complaints (ARF) recorded
    unsubscribed: int = 0  # subscribers unsubscribed by complaints and mailto requests
    unverified: int = 0  # bounces and reports naming no delivery of ours: moved, no change
    unparsed: int = 0  # not bounces (auto-replies, people): left in the mailbox


def _open_mailbox(url: str) -> BaseMailBox:
    parts = urlsplit(url)
    host = parts.hostname or ""
    starttls = parse_qs(parts.query).get("starttls", ["0"])[0].lower() in {"1", "true", "yes"}
    folder = unquote(parts.path.lstrip("/")) or "INBOX"
    where = f"{host}:{parts.port or (993 if parts.scheme == 'imaps' else 143)}"
    try:
        if parts.scheme == "imaps":
            box: BaseMailBox = MailBox(host, parts.port or 993, timeout=IMAP_TIMEOUT)
        elif starttls:
            box = MailBoxStartTls(host, parts.port or 143, timeout=IMAP_TIMEOUT)
        else:
            box = MailBoxUnencrypted(host, parts.port or 143, timeout=IMAP_TIMEOUT)
    except (OSError, imaplib.IMAP4.error) as exc:
        raise NewsletterError(
            f"bounce mailbox {where} unreachable: {exc} (check NEWSLETTER_BOUNCE_IMAP_URL)"
        ) from None
    try:
        box.login(unquote(parts.username or ""), unquote(parts.password or ""), folder)
    except MailboxLoginError:
        raise NewsletterError(
            f"bounce mailbox {where} refused the login of {unquote(parts.username or '')!r} "
            "(check NEWSLETTER_BOUNCE_IMAP_URL)"
        ) from None
    except MailboxFolderSelectError:
        raise NewsletterError(f"bounce mailbox {where} has no folder {folder!r}") from None
    return box


def _handle(session: Session, settings: Settings, reading: Reading, report: FetchReport) -> str:
    """Record what one message proves; "done" (delete it), "unverified" (move it) or
    "left" (not for us: leave it for a person)."""
    secret = settings.secret
    if reading.kind == "unsubscribe" and reading.unsubscribe is not None:
        subscriber = proof.by_unsubscribe_token(session, secret, reading.unsubscribe)
        if subscriber is None:
            return _unverified(session, reading, report, "stale or forged unsubscribe token")
        if lifecycle.unsubscribe(session, subscriber, source="mailto"):
            report.unsubscribed += 1
        return "done"
    if reading.kind == "complaint" and reading.complaint is not None:
        proven = _prove(session, secret, reading, [reading.complaint.original_rcpt])
        proven = proven or proof.by_unsubscribe_link(session, secret, reading.unsubscribe_urls)
        if proven is None:
            return _unverified(session, reading, report, "complaint names no delivery of ours")
        subscriber = session.get(Subscriber, proven.subscriber_id)
        assert subscriber is not None
        payload = {
            "feedback_type": reading.complaint.feedback_type,
            "user_agent": reading.complaint.user_agent[:200],
        }
        outcome = feedback.record_complaint(
            session,
            subscriber,
            event_id=reading.event_id,
            delivery_id=proven.delivery_id,
            payload=payload,
        )
        report.complaints += outcome.new
        report.repeats += not outcome.new
        report.unsubscribed += outcome.unsubscribed
        return "done"
    if reading.kind != "bounce":
        report.unparsed += 1
        return "left"
    recorded = False
    for token in reading.verp:
        proven = proof.by_verp(session, secret, token)
        if proven is not None and proven.delivery_id is not None:
            # One VERP bounce answers one delivery; the DSN may name a forward of it.
            named = {f.email: f for f in reading.failures}
            failure = named.get(proven.email) or reading.failures[0]
            _record(session, reading, proven.email, failure, proven.delivery_id, report)
            recorded = True
            break
    if not recorded:
        for failure in reading.failures:
            proven = proof.by_message_id(session, reading.returned_ids, failure.email)
            if proven is not None and proven.delivery_id is not None:
                _record(session, reading, proven.email, failure, proven.delivery_id, report)
                recorded = True
    if not recorded:
        return _unverified(session, reading, report, "bounce names no delivery of ours")
    return "done"


def _prove(
    session: Session, secret: str, reading: Reading, addresses: list[str]
) -> proof.Proven | None:
    for token in reading.verp:
        proven = proof.by_verp(session, secret, token)
        if proven is not None:
            return proven
    for address in [*addresses, *reading.returned_to]:
        proven = proof.by_message_id(session, reading.returned_ids, address)
        if proven is not None:
            return proven
    return None


def _record(
    session: Session,
    reading: Reading,
    email: str,
    failure: Failure,
    delivery_id: int,
    report: FetchReport,
) -> None:
    bounce = Bounce(
        event_id=f"{reading.event_id}:{email}",
        email=email,
        hard=failure.hard,
        status=failure.status,
        diagnostic=failure.diagnostic,
    )
    outcome = feedback.record_bounce(session, bounce, delivery_id=delivery_id)
    if not outcome.new:
        report.repeats += 1
    elif bounce.hard:
        report.hard += 1
    else:
        report.soft += 1
    report.suppressed += outcome.suppressed


def _unverified(session: Session, reading: Reading, report: FetchReport, why: str) -> str:
    payload = {
        "kind": reading.kind,
        "why": why,
        "claimed": sorted({f.email for f in reading.failures if f.email})[:20],
    }
    if feedback.record_unverified(session, event_id=reading.event_id, payload=payload):
        report.unverified += 1
    else:
        report.repeats += 1
    return "unverified"


def fetch_bounces(engine: Engine, settings: Settings) -> FetchReport:
    """Read every message in the bounce mailbox, act on what proves a delivery of ours, move
    what proves nothing to the `Unverified` folder, leave the rest."""
    if not settings.bounce_imap_url:
        raise NewsletterError("NEWSLETTER_BOUNCE_IMAP_URL is not set: there is no bounce mailbox")
    report = FetchReport()
    box = _open_mailbox(settings.bounce_imap_url)
    try:
        with session_scope(engine) as session:
            done: list[str] = []  # uids whose outcome is in the open transaction
            moved: list[str] = []

            def flush() -> None:
                nonlocal done, moved
                session.commit()  # recorded for good before the messages go
                if done:
                    box.delete(done)
                if moved:
                    if not box.folder.exists(UNVERIFIED_FOLDER):
                        box.folder.create(UNVERIFIED_FOLDER)
                    box.move(moved, UNVERIFIED_FOLDER)
                done, moved = [], []

            for message in box.fetch(mark_seen=False, bulk=CHUNK):
                report.messages += 1
                reading = read_message(message.obj, settings.bounce_address)
                outcome = _handle(session, settings, reading, report)
                if message.uid and outcome == "done":
                    done.append(message.uid)
                elif message.uid and outcome == "unverified":
                    moved.append(message.uid)
                if len(done) + len(moved) >= CHUNK:
                    flush()
            flush()
    except (OSError, imaplib.IMAP4.error) as exc:
        raise NewsletterError(f"reading the bounce mailbox failed: {exc}") from None
    finally:
        with contextlib.suppress(OSError, imaplib.IMAP4.error):
            box.logout()
    return report
