"""The audience service: subscriber lifecycle plus the mail it causes.

`subscribers.lifecycle` decides; this module signs the links, renders the confirmation and
welcome emails and hands them to the configured transport. The web routes and the
`newsletter subscribers` commands both call these functions, so they behave the same.

Why this module is long: it is the one place where a lifecycle step meets the mail it
causes (subscribe, confirm and welcome, "email me my link", bulk import), each committing
before it mails; splitting it would spread the commit-then-send rule over several modules.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from newsletter import mail_queue
from newsletter.db import read_session, session_scope
from newsletter.models import Issue, IssueStatus, MailKind, Paper, StartHereItem, Topic
from newsletter.months import month_label
from newsletter.papers.links import paper_link
from newsletter.rendering import list_headers, recipient_headers, render_transactional
from newsletter.settings import Settings
from newsletter.transports import get_transport, send_one
from newsletter.transports.base import Outcome, RecipientResult, Transport, TransportUnavailable
from subscribers import csv_io, lifecycle
from subscribers.models import Subscriber, SubscriberStatus
from subscribers.tokens import TokenError, make_token, read_token

log = logging.getLogger(__name__)

# Bump whenever the wording people agree to on the subscribe form changes; each consent
# record keeps the version that was shown.
CONSENT_TEXT_VERSION = "2026-11-v1"
CONSENT_TEXT = (
    "Send me the monthly email of new machine-learning-foundations papers on the topics I "
    "choose. I can change topics, pause or unsubscribe with one click from any email."
)
CONFIRM_MAX_AGE = 7 * 24 * 3600  # confirmation links work for a week; others do not expire


@dataclass(frozen=True)
class Links:
    confirm: str
    preferences: str
    unsubscribe: str


def links_for(settings: Settings, subscriber: Subscriber, *, absolute: bool = True) -> Links:
    """Signed, purpose-scoped links for one subscriber (site-relative for our own pages)."""
    base = settings.base_url if absolute else ""

    def url(purpose: str, path: str) -> str:
        token = make_token(settings.secret, purpose, subscriber.public_id, subscriber.token_version)
        return f"{base}/{path}/{token}"

    return Links(
        confirm=url("confirm", "confirm"),
        preferences=url("preferences", "preferences"),
        unsubscribe=url("unsubscribe", "unsubscribe"),
    )


def subscriber_from_token(
    session: Session, settings: Settings, purpose: str, token: str
) -> Subscriber:
    """The subscriber a link names; raises TokenError or lifecycle.NotSubscribed."""
    if len(token) > 512:
        raise TokenError("this link is not valid")
    max_age = CONFIRM_MAX_AGE if purpose == "confirm" else None
    claims = read_token(settings.secret, purpose, token, max_age=max_age)
    return lifecycle.from_token(session, claims)


def topic_catalog(session: Session) -> list[Topic]:
    """Topics people can choose, in taxonomy order."""
    return list(session.exec(select(Topic).order_by(Topic.position)).all())


def topic_slugs(session: Session) -> set[str]:
    """The slugs people can choose (only the column: a sign-up checks against it)."""
    return set(session.exec(select(Topic.slug)).all())


def topic_names(catalog: Iterable[Topic], slugs: Iterable[str]) -> list[str]:
    wanted = set(slugs)
    return [t.name for t in catalog if t.slug in wanted]


def _send_one(
    settings: Settings,
    subscriber: Subscriber,
    subject: str,
    html: str,
    text: str,
    headers: dict[str, str] | None = None,
    transport: Transport | None = None,
) -> RecipientResult:
    result = send_one(settings, subscriber.email, subject, html, text, headers, transport=transport)
    if result.outcome != Outcome.SENT:
        log.warning("email to subscriber %s not sent: %s", subscriber.id, result.error)
    return result


def send_confirmation(
    settings: Settings,
    subscriber: Subscriber,
    topics: list[str],
    catalog: list[Topic],
    *,
    replaces_earlier: bool = False,
    transport: Transport | None = None,
) -> RecipientResult:
    links = links_for(settings, subscriber)
    email = render_transactional(
        "confirmation",
        settings,
        email=subscriber.email,
        action_url=links.confirm,
        topics=topic_names(catalog, topics),
        replaces_earlier=replaces_earlier,
    )
    return _send_one(
        settings, subscriber, email.subject, email.html, email.text, transport=transport
    )


@dataclass(frozen=True)
class StartHereEntry:
    """A paper of the "start here" list as a reader sees it."""

    title: str
    url: str
    authors: str
    why: str


def start_here_list(session: Session, settings: Settings) -> list[StartHereEntry]:
    """The editors' "start here" reading list, in their order (empty when they keep none)."""
    rows = session.exec(
        select(StartHereItem, Paper)
        .join(Paper, col(Paper.id) == col(StartHereItem.paper_id))
        .order_by(col(StartHereItem.position), col(StartHereItem.id))
    ).all()
    return [
        StartHereEntry(
            title=paper.title,
            url=paper_link(paper, settings.paper_search_url),
            authors=", ".join(paper.authors[:3]) + (" et al." if len(paper.authors) > 3 else ""),
            why=item.why,
        )
        for item, paper in rows
    ]


@dataclass(frozen=True)
class WelcomeNews:
    """What a new reader wants to know first: the latest issue and when the next comes."""

    latest_label: str = ""  # "November 2026"; empty before the first issue
    latest_url: str = ""
    next_date: str = ""  # "1 January 2027"; empty when nothing is due
    start_here: tuple[StartHereEntry, ...] = ()  # the editors' reading list, if any


def _day_label(value: datetime) -> str:
    return f"{value.day} {value:%B %Y}"


def next_issue_due(
    session: Session, settings: Settings, now: datetime | None = None
) -> datetime | None:
    """When the next issue goes out: the sooner of an issue an editor scheduled and the
    monthly schedule's next run (`NEWSLETTER_SCHEDULE`, UTC); None if neither is ahead."""
    from apscheduler.triggers.cron import CronTrigger

    now = now or datetime.now(UTC)
    candidates = []
    scheduled = session.exec(
        select(Issue.scheduled_for)
        .where(col(Issue.status).in_([IssueStatus.DRAFT, IssueStatus.APPROVED]))
        .where(col(Issue.scheduled_for).is_not(None))
    ).all()
    for when in scheduled:
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
        if when > now:
            candidates.append(when)
    fire = CronTrigger.from_crontab(settings.schedule, timezone="UTC").get_next_fire_time(None, now)
    if fire is not None:
        candidates.append(fire)
    return min(candidates, default=None)


def welcome_news(session: Session, settings: Settings, now: datetime | None = None) -> WelcomeNews:
    latest = session.exec(
        select(Issue)
        .where(Issue.status == IssueStatus.SENT)
        .order_by(col(Issue.month).desc())
        .limit(1)
    ).first()
    due = next_issue_due(session, settings, now)
    return WelcomeNews(
        latest_label=month_label(latest.month) if latest else "",
        latest_url=f"{settings.base_url}/issues/{latest.month}" if latest else "",
        next_date=_day_label(due) if due else "",
        start_here=tuple(start_here_list(session, settings)),
    )


def send_welcome(
    settings: Settings,
    subscriber: Subscriber,
    topics: list[str],
    catalog: list[Topic],
    news: WelcomeNews | None = None,
) -> None:
    links = links_for(settings, subscriber)
    news = news or WelcomeNews()
    email = render_transactional(
        "welcome",
        settings,
        email=subscriber.email,
        action_url=links.preferences,
        topics=topic_names(catalog, topics),
        unsubscribe_url=links.unsubscribe,
        preferences_url=links.preferences,
        latest_label=news.latest_label,
        latest_url=news.latest_url,
        next_date=news.next_date,
        start_here=[
            {"title": e.title, "url": e.url, "authors": e.authors, "why": e.why}
            for e in news.start_here
        ],
        start_here_url=f"{settings.base_url}/start-here" if news.start_here else "",
    )
    # Subscribed now: the welcome can be unsubscribed from, so it carries the list headers
    # (the confirmation does not: nobody is subscribed yet, cf. listmonk#3063).
    headers = {**list_headers(settings), **recipient_headers(settings, subscriber)}
    _send_one(settings, subscriber, email.subject, email.html, email.text, headers)


def send_link(
    settings: Settings, subscriber: Subscriber, *, transport: Transport | None = None
) -> RecipientResult:
    """Mail a person the signed link to their preferences (they lost the old emails)."""
    links = links_for(settings, subscriber)
    email = render_transactional(
        "link", settings, email=subscriber.email, action_url=links.preferences, topics=[]
    )
    return _send_one(
        settings, subscriber, email.subject, email.html, email.text, transport=transport
    )


def record_link_request(engine: Engine, email: str) -> int | None:
    """Queue the preferences link owed for `email` (the limit counted): the queued mail's
    id, or None when nothing is owed.

    Raises lifecycle.SubscriberError only for an address that is not one (format, not
    whether it is known). The web route answers the same either way."""
    with session_scope(engine) as session:
        sub = lifecycle.claim_link_mail(session, email)
        if sub is None:
            return None
        return mail_queue.enqueue(session, sub.id or 0, MailKind.LINK)


def record_subscription(
    engine: Engine,
    settings: Settings,
    email: str,
    topics: Iterable[str],
    *,
    client_address: str = "",
    source: str = "web",
    name: str = "",
) -> tuple[lifecycle.SubscribeResult, int | None]:
    """Double opt-in step one: commit the request with the confirmation it owes queued.
    Returns the result and the queued mail's id (None when no mail is due).

    Raises lifecycle.SubscriberError for bad input. The mail goes from the queue
    (`deliver_queued`), after the answer: the answer takes as long whether or not a mail is
    due (no timing difference to tell known addresses from new ones). Two requests for the
    same new address at once collide on the unique email; the loser simply runs again.
    """
    topics = list(topics)
    for attempt in range(3):
        try:
            with session_scope(engine) as session:
                result = lifecycle.subscribe(
                    session,
                    email,
                    topics,
                    known_topics=topic_slugs(session),
                    client_address=client_address,
                    consent_text_version=CONSENT_TEXT_VERSION,
                    source=source,
                    name=name,
                )
                queued = (
                    mail_queue.enqueue(
                        session,
                        result.subscriber.id or 0,
                        MailKind.CONFIRMATION,
                        replaces_earlier=result.reason == "pending",
                    )
                    if result.send_confirmation
                    else None
                )
            return result, queued
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def deliver_queued(
    engine: Engine,
    settings: Settings,
    *,
    ids: Collection[int] | None = None,
    limit: int = 50,
    transport: Transport | None = None,
) -> int:
    """Send queued mails: up to `limit` due ones, or only `ids`. Returns how many rows were
    claimed (0: nothing was due).

    Built as they go: the current token and topics. A person suppressed or erased since is
    not mailed. A transient refusal (RETRY) or an exception puts the row back for later (no
    sooner than the provider's Retry-After); a provider that cannot send at all
    (TransportUnavailable: our key or configuration) puts the rest of the batch back without
    counting an attempt.
    """
    claimed = mail_queue.claim(engine, ids=ids, limit=limit)
    if not claimed:
        return 0
    wanted = [row.subscriber_id for row in claimed]
    with read_session(engine) as session:
        people = {
            sub.id: sub
            for sub in session.exec(select(Subscriber).where(col(Subscriber.id).in_(wanted)))
        }
        topics = lifecycle.topics_by_subscriber(session, wanted)
        catalog = topic_catalog(session)
    done: list[int] = []
    again: dict[mail_queue.Claimed, mail_queue.Again] = {}
    own = transport is None
    transport = transport or get_transport(settings)
    try:
        for row in claimed:
            sub = people.get(row.subscriber_id)
            if sub is None or sub.status == SubscriberStatus.SUPPRESSED:
                done.append(row.id)  # erased or suppressed meanwhile: nothing to send
                continue
            try:
                if row.kind == MailKind.LINK:
                    result = send_link(settings, sub, transport=transport)
                else:
                    result = send_confirmation(
                        settings,
                        sub,
                        topics.get(row.subscriber_id, []),
                        catalog,
                        replaces_earlier=row.replaces_earlier,
                        transport=transport,
                    )
            except TransportUnavailable as exc:
                log.error("queued mail not sent, the provider refuses to send: %s", exc)
                held = mail_queue.Again(str(exc), counts=False)
                again.update({r: held for r in claimed if r.id not in done and r not in again})
                break
            except Exception as exc:
                log.exception("queued %s mail %s to subscriber %s failed", row.kind, row.id, sub.id)
                again[row] = mail_queue.Again(f"{type(exc).__name__}: {exc}")
                continue
            if result.outcome == Outcome.RETRY:
                again[row] = mail_queue.Again(
                    result.error or "refused for now", after=result.retry_after
                )
            else:  # sent, refused for good, or unknown (may have gone: never resent)
                done.append(row.id)
    finally:
        if own:
            transport.close()
    for row in mail_queue.settle(engine, done, again):
        log.error(
            "queued %s mail %s to subscriber %s dropped after %d attempts: %s",
            row.kind,
            row.id,
            row.subscriber_id,
            row.attempts,
            again[row].error,
        )
    return len(claimed)


def request_subscription(
    engine: Engine,
    settings: Settings,
    email: str,
    topics: Iterable[str],
    *,
    client_address: str = "",
    source: str = "web",
    name: str = "",
) -> lifecycle.SubscribeResult:
    """Double opt-in step one, mailed here and now (the CLI, the desk): record the request,
    then send the confirmation it queued, if one is due."""
    result, queued = record_subscription(
        engine, settings, email, topics, client_address=client_address, source=source, name=name
    )
    if queued is not None:
        deliver_queued(engine, settings, ids=[queued])
    return result


def confirmation_request(
    engine: Engine, settings: Settings, token: str
) -> tuple[Subscriber, list[str]]:
    """Who a confirm link names and their topic names; reads only (mail scanners GET it)."""
    with Session(engine) as session:
        sub = subscriber_from_token(session, settings, "confirm", token)
        names = topic_names(topic_catalog(session), lifecycle.topics_of(session, sub))
        session.expunge(sub)
    return sub, names


def confirm_subscription(
    engine: Engine, settings: Settings, token: str, *, client_address: str = ""
) -> tuple[Subscriber, bool]:
    """Double opt-in step two; sends the welcome email the first time. (subscriber, changed)."""
    with session_scope(engine) as session:
        sub = subscriber_from_token(session, settings, "confirm", token)
        changed = lifecycle.confirm(
            session,
            sub,
            client_address=client_address,
            consent_text_version=CONSENT_TEXT_VERSION,
            source="web",
        )
        catalog = topic_catalog(session)
        chosen = lifecycle.topics_of(session, sub)
        news = welcome_news(session, settings) if changed else None
    if changed:
        send_welcome(settings, sub, chosen, catalog, news)
    return sub, changed


@dataclass(frozen=True)
class ImportReport:
    imported: int
    confirmations_sent: int
    suppressed_skipped: int = 0  # double opt-in rows not mailed: they bounced or complained


def suppression_key(settings: Settings) -> bytes:
    """Key of the hashes kept of erased suppressed addresses (derived from the secret)."""
    return hmac.new(settings.secret.encode(), b"suppressed-address", hashlib.sha256).digest()


# SQLite: after each write transaction the import leaves the write lock free for as long
# as SQLite's busy handler sleeps at most between two tries (100 ms), so a waiting writer
# (a one-click unsubscribe) gets it within one transaction plus one pause.
IMPORT_PAUSE_SECONDS = 0.1
# Confirmation mails of an import are claimed (counted) this many at a time, just before
# they go out: a killed import loses at most this many, and its re-run mails nobody twice.
CONFIRMATION_CLAIM_BATCH = 50


def import_subscribers(
    engine: Engine, settings: Settings, text: str, *, confirmed: bool
) -> ImportReport:
    """Import a CSV; without `confirmed`, mail each new person a confirmation.

    Every row is checked first (raises csv_io.CsvImportError naming row and column; nothing
    is written then); then rows are written in bulk, 2,000 per short transaction,
    so pages and one-click unsubscribes keep answering during a large import.
    """

    with read_session(engine) as session:
        catalog = topic_catalog(session)
        rows = csv_io.parse_import(text, {t.slug for t in catalog})
        skip = csv_io.check_against_database(
            session, rows, confirmed=confirmed, suppression_key=suppression_key(settings)
        )
    owed: list[csv_io.ConfirmationOwed] = []
    for start in range(0, len(rows), csv_io.CHUNK_ROWS):
        chunk = rows[start : start + csv_io.CHUNK_ROWS]
        for attempt in range(3):
            try:
                with session_scope(engine) as session:
                    owed += csv_io.write_chunk(
                        session,
                        chunk,
                        confirmed=confirmed,
                        consent_text_version=CONSENT_TEXT_VERSION,
                        skip=skip,
                    )
                break
            except IntegrityError:  # someone subscribed through the form meanwhile
                if attempt == 2:
                    raise
        if engine.dialect.name == "sqlite":
            time.sleep(IMPORT_PAUSE_SECONDS)
    today = lifecycle.utcnow().date().isoformat()
    for start in range(0, len(owed), CONFIRMATION_CLAIM_BATCH):
        batch = owed[start : start + CONFIRMATION_CLAIM_BATCH]
        with session_scope(engine) as session:
            csv_io.claim_confirmations(session, [due.subscriber.id or 0 for due in batch], today)
        for due in batch:
            send_confirmation(settings, due.subscriber, due.topics, catalog)
    return ImportReport(
        imported=len(rows) - len(skip), confirmations_sent=len(owed), suppressed_skipped=len(skip)
    )


def add_subscriber(
    engine: Engine,
    settings: Settings,
    email: str,
    topics: Iterable[str],
    *,
    confirmed: bool,
    name: str = "",
) -> lifecycle.SubscribeResult:
    """The operator adds one person: vouched for (`confirmed`) or through double opt-in."""
    if not confirmed:
        return request_subscription(engine, settings, email, topics, source="cli", name=name)
    with session_scope(engine) as session:
        sub = lifecycle.add_confirmed(
            session,
            email,
            topics,
            known_topics=topic_slugs(session),
            consent_text_version=CONSENT_TEXT_VERSION,
            source="cli",
            name=name,
            suppression_key=suppression_key(settings),
        )
    return lifecycle.SubscribeResult(sub, False, "vouched")
