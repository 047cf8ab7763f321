"""`newsletter bounces fetch`: read the bounce mailbox over IMAP and record what bounced.

Bounces are recorded (idempotently) and committed, a chunk at a time, before their messages
are deleted, so a crash in between only means those messages are read again, and recorded
nothing twice.
Messages that are not recognisable bounces (auto-replies, people answering) stay in the
mailbox for a person to read, and are counted.
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

from newsletter.bounces.dsn import read_bounce
from newsletter.db import session_scope
from newsletter.delivery.feedback import record_bounce
from newsletter.errors import NewsletterError
from newsletter.settings import Settings

log = logging.getLogger("newsletter.bounces")

IMAP_TIMEOUT = 30.0
CHUNK = 100  # messages fetched per IMAP command, and recorded per transaction


@dataclass
class FetchReport:
    messages: int = 0  # read from the mailbox
    hard: int = 0  # new hard bounces recorded
    soft: int = 0  # new soft bounces recorded
    repeats: int = 0  # bounces recorded by an earlier run (message not yet deleted then)
    suppressed: int = 0  # subscribers suppressed by this run
    unparsed: int = 0  # not recognised as bounces: left in the mailbox


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


def fetch_bounces(engine: Engine, settings: Settings) -> FetchReport:
    """Read every message in the bounce mailbox, record bounces, delete what was recorded."""
    if not settings.bounce_imap_url:
        raise NewsletterError("NEWSLETTER_BOUNCE_IMAP_URL is not set: there is no bounce mailbox")
    report = FetchReport()
    box = _open_mailbox(settings.bounce_imap_url)
    try:
        with session_scope(engine) as session:
            recorded: list[str] = []  # uids whose bounces are in the open transaction
            for message in box.fetch(mark_seen=False, bulk=CHUNK):
                report.messages += 1
                bounces = read_bounce(message.obj, settings.bounce_address)
                if not bounces:
                    report.unparsed += 1
                    continue
                for bounce in bounces:
                    outcome = record_bounce(session, bounce)
                    if not outcome.new:
                        report.repeats += 1
                    elif bounce.hard:
                        report.hard += 1
                    else:
                        report.soft += 1
                    report.suppressed += outcome.suppressed
                if message.uid:
                    recorded.append(message.uid)
                if len(recorded) >= CHUNK:
                    session.commit()  # recorded for good before the messages go
                    box.delete(recorded)
                    recorded = []
            session.commit()
            box.delete(recorded)
    except (OSError, imaplib.IMAP4.error) as exc:
        raise NewsletterError(f"reading the bounce mailbox failed: {exc}") from None
    finally:
        with contextlib.suppress(OSError, imaplib.IMAP4.error):
            box.logout()
    return report
