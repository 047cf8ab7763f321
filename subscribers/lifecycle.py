"""The subscriber lifecycle as plain functions over a session.

Callers (the web app, the CLI, the webhook) pass in every value this package needs: the
known topic slugs, the client address, the consent text version. Nothing here sends mail;
functions say what should be sent (`SubscribeResult.send_confirmation`) and the caller sends.

Functions flush but never commit: the caller owns the transaction.

Why this module is long: every change of one subscriber's state (subscribe, confirm,
topics, pause, unsubscribe, suppress, erase, export) sits with the consent record it writes,
so the status rules are read in one place.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import unicodedata
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from confusable_homoglyphs import categories, confusables
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import bindparam, delete, insert, update
from sqlalchemy.orm import make_transient_to_detached
from sqlmodel import Session, select

from subscribers import bulk
from subscribers.models import (
    ConsentRecord,
    Subscriber,
    SubscriberStatus,
    SubscriberTopic,
    SuppressedAddress,
    utcnow,
)
from subscribers.tokens import TokenClaims

_SUBSCRIBER = Subscriber.__table__  # type: ignore[attr-defined]
_SUBSCRIBER_TOPIC = SubscriberTopic.__table__  # type: ignore[attr-defined]
_CONSENT = ConsentRecord.__table__  # type: ignore[attr-defined]
# Built once: the values travel as parameters, so each run skips compiling and cache keys.
_INSERT_SUBSCRIBER = insert(_SUBSCRIBER).returning(_SUBSCRIBER.c.id)
_INSERT_TOPIC = insert(_SUBSCRIBER_TOPIC)
_INSERT_CONSENT = insert(_CONSENT)
_FIND_BY_EMAIL = select(_SUBSCRIBER.c.id).where(_SUBSCRIBER.c.email == bindparam("email"))

MAX_EMAIL_INPUT = 320  # longer input is refused before it reaches the validator
MAX_CONFIRMATIONS_PER_DAY = 3
# Topic input is capped before any work: far above the taxonomy's size (a handful), far
# below what costs anything. Characters include the separators between slugs.
MAX_TOPICS = 64
MAX_TOPIC_INPUT = MAX_TOPICS * 65


class SubscriberError(ValueError):
    """Input the lifecycle refuses; the message is fit to show the person who sent it."""


class InvalidEmail(SubscriberError):
    pass


class UnknownTopics(SubscriberError):
    pass


class TooManyTopics(UnknownTopics):
    """More topic values than the taxonomy could ever hold."""


class NotSubscribed(SubscriberError):
    """The token or address names nobody (erased, never existed, or an old link)."""


def normalize_email(raw: str) -> str:
    """Validate syntax (no DNS) and return the normalised address, lower-cased.

    Lower-casing the local part is not RFC-exact, but every mailbox provider people use
    treats it case-insensitively, and it stops one person subscribing twice.
    """
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidEmail("enter an email address")
    value = raw.strip()
    if len(value) > MAX_EMAIL_INPUT:
        raise InvalidEmail("that email address is too long")
    if any(ch in value for ch in "\r\n\0"):
        raise InvalidEmail("an email address cannot contain line breaks")
    # NFKC: fullwidth and other compatibility spellings are the same person as the plain one.
    value = unicodedata.normalize("NFKC", value)
    local, _, domain = value.rpartition("@")
    if _PLAIN_LOCAL_PART.match(local) and len(local) <= 64:
        # The common case, fast (bulk imports): a plain ASCII local part needs no
        # normalising, and the domain's check is done once per domain.
        address = f"{local}@{_checked_domain(domain)}"
        if len(address) > 254:
            raise InvalidEmail("that email address is too long")
        return address.lower()
    try:
        info = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidEmail(f"that is not a valid email address: {exc}") from None
    # SMTP limits (RFC 5321 4.5.3.1) that the validator leaves to its strict mode.
    if len(info.local_part) > 64 or len(info.normalized) > 254:
        raise InvalidEmail("that email address is too long")
    _refuse_confusable(info.local_part, "the part before the @")
    _refuse_confusable_domain(info.domain)
    return info.normalized.lower()


def _refuse_confusable(text: str, where: str) -> None:
    """Refuse text mixing scripts with look-alike letters (Latin with a Cyrillic "а"): in
    the spirit of Unicode TS 39's mixed-script confusable check, so that one address cannot
    pass for another on the desk. A single script of any kind is fine."""
    if text.isascii():
        return
    if confusables.is_dangerous(text, preferred_aliases=[]):
        scripts = sorted(
            s.title() for s in categories.unique_aliases(text) - {"COMMON", "INHERITED"}
        )
        raise InvalidEmail(
            f"{where} mixes look-alike letters of different scripts ({' and '.join(scripts)}); "
            "please type the address in one script"
        )


def _refuse_confusable_domain(domain: str) -> None:
    for label in domain.split("."):
        _refuse_confusable(label, "the domain")


_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_LOCAL_PART = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*\Z")


@lru_cache(maxsize=4096)
def _checked_domain(domain: str) -> str:
    """The validator's normalised form of a domain (exceptions are not cached)."""
    try:
        checked = validate_email(f"x@{domain}", check_deliverability=False).domain
    except EmailNotValidError as exc:
        raise InvalidEmail(f"that is not a valid email address: {exc}") from None
    _refuse_confusable_domain(checked)
    return checked


def split_topics(values: Iterable[str], separator: str = ",") -> list[str]:
    """Topic input from one or more fields, split on `separator`.

    Longer input than any real choice could be is refused before it is split, so a request
    costs the same small amount whatever it sends.
    """
    parts: list[str] = []
    size = 0
    for value in values:
        size += len(value)
        if size > MAX_TOPIC_INPUT:
            raise TooManyTopics(f"too many topics (at most {MAX_TOPICS})")
        parts.extend(value.split(separator))
    return parts


def clean_topics(topics: Iterable[str], known_topics: Collection[str]) -> list[str]:
    """De-duplicated topic slugs in the order given; unknown slugs are an error naming them.

    Linear and bounded: at most MAX_TOPICS values are looked at (more is refused), each
    checked against the taxonomy as it comes.
    """
    chosen: dict[str, None] = {}  # insertion-ordered set
    unknown: list[str] = []
    for count, slug in enumerate(topics, 1):
        if count > MAX_TOPICS:
            raise TooManyTopics(f"too many topics (at most {MAX_TOPICS})")
        slug = slug.strip()
        if not slug or slug in chosen:
            continue
        if slug not in known_topics:
            unknown.append(slug)
        chosen[slug] = None
    if unknown:
        shown = ", ".join(repr(s[:64]) for s in unknown[:5])
        raise UnknownTopics(f"unknown topic {shown}")
    return list(chosen)


def get_by_email(session: Session, email: str) -> Subscriber | None:
    return session.exec(select(Subscriber).where(Subscriber.email == email)).first()


def from_token(session: Session, claims: TokenClaims) -> Subscriber:
    """The subscriber a verified token names, if the token is still current."""
    if claims.legacy_id is not None:
        sub = session.get(Subscriber, claims.legacy_id)
    else:
        sub = session.exec(
            select(Subscriber).where(Subscriber.public_id == claims.public_id)
        ).first()
    if sub is None or sub.token_version != claims.token_version:
        raise NotSubscribed("this link is no longer valid")
    return sub


def topics_of(session: Session, subscriber: Subscriber) -> list[str]:
    rows = session.exec(
        select(SubscriberTopic.topic_slug).where(SubscriberTopic.subscriber_id == subscriber.id)
    ).all()
    return sorted(rows)


def topics_by_subscriber(session: Session, ids: Collection[int]) -> dict[int, list[str]]:
    """Each subscriber's topic slugs, sorted, for many at once (one query)."""
    found: dict[int, list[str]] = {}
    if not ids:
        return found
    rows = session.exec(
        select(SubscriberTopic.subscriber_id, SubscriberTopic.topic_slug).where(
            bulk.one_of(session, SubscriberTopic.subscriber_id, ids)
        )
    ).all()
    for sid, slug in rows:
        found.setdefault(sid, []).append(slug)
    return {sid: sorted(slugs) for sid, slugs in found.items()}


def address_hash(key: bytes, address: str) -> str:
    """Keyed hash of a normalised address: recognisable with the key, unreadable without."""
    return hmac.new(key, address.encode("utf-8"), hashlib.sha256).hexdigest()


def erased_suppressed(session: Session, key: bytes, addresses: Collection[str]) -> set[str]:
    """Which of these addresses belonged to someone erased after a bounce or complaint."""
    if not addresses:
        return set()
    by_hash = {address_hash(key, a): a for a in addresses}
    found = session.exec(
        select(SuppressedAddress.address_hash).where(
            bulk.one_of(session, SuppressedAddress.address_hash, list(by_hash))
        )
    ).all()
    return {by_hash[h] for h in found}


def _set_topics(session: Session, subscriber: Subscriber, topics: list[str]) -> None:
    # synchronize_session=False: the default scans the whole identity map on every call,
    # which made long-lived sessions (imports) quadratic.
    session.exec(  # type: ignore[call-overload]
        delete(SubscriberTopic)
        .where(SubscriberTopic.subscriber_id == subscriber.id)
        .execution_options(synchronize_session=False)
    )
    for slug in topics:
        session.add(SubscriberTopic(subscriber_id=subscriber.id, topic_slug=slug))
    session.flush()


def _record(
    session: Session,
    subscriber: Subscriber,
    action: str,
    *,
    client_address: str = "",
    consent_text_version: str = "",
    source: str = "",
) -> None:
    session.add(
        ConsentRecord(**_consent(subscriber, action, client_address, consent_text_version, source))
    )


def _consent(
    subscriber: Subscriber, action: str, client_address: str, text_version: str, source: str
) -> dict[str, object]:
    return {
        "subscriber_id": subscriber.id,
        "action": action,
        "at": utcnow(),
        "client_address": client_address[:64],
        "consent_text_version": text_version[:32],
        "source": source[:64],
    }


LINE_BREAKS = "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029\0"


def clean_name(name: str) -> str:
    """A display name: one line (an export row or a header must not break on it)."""
    if any(ch in name for ch in LINE_BREAKS):
        raise SubscriberError("a name cannot contain line breaks")
    return name.strip()[:200]


def _new_subscriber(email: str, name: str, status: str) -> Subscriber:
    # A random starting token version: if a database reuses the id of an erased row, links
    # sent to the erased person still do not match the newcomer.
    return Subscriber(
        email=email, name=clean_name(name), status=status, token_version=_fresh_token_version()
    )


def _insert_pending(
    session: Session, address: str, name: str, topics: list[str], today: str
) -> Subscriber:
    """A new pending subscriber and their topics, as plain INSERTs (with this day's
    confirmation counted), then attached to the session as if loaded; the caller adds the
    consent record the same way.

    The common case of a sign-up burst: through the ORM's unit of work the same rows cost
    three times as much CPU, and the web process's CPU is what a burst queues on."""
    sub = _new_subscriber(address, name, SubscriberStatus.PENDING)
    sub.confirmations_sent_on, sub.confirmations_sent_count = today, 1
    values = {c.name: getattr(sub, c.name) for c in _SUBSCRIBER.columns if c.name != "id"}
    sub.id = session.execute(_INSERT_SUBSCRIBER, values).scalar_one()
    make_transient_to_detached(sub)
    session.add(sub)
    if topics:
        session.execute(_INSERT_TOPIC, [{"subscriber_id": sub.id, "topic_slug": t} for t in topics])
    return sub


def _fresh_token_version() -> int:
    return secrets.randbelow(2**30) + 1


def _next_token_version(version: int) -> int:
    return version + 1 if version < 2**31 - 1 else 1


@dataclass(frozen=True)
class SubscribeResult:
    subscriber: Subscriber
    send_confirmation: bool  # a confirmation email is due and within the daily limit
    reason: str  # why (for logs and tests, never shown: the page answers the same for all)


def claim_confirmation_slot(subscriber: Subscriber, today: str) -> bool:
    """Count one confirmation email for `today` (UTC date); False once the limit is reached."""
    if subscriber.confirmations_sent_on != today:
        subscriber.confirmations_sent_on = today
        subscriber.confirmations_sent_count = 0
    if subscriber.confirmations_sent_count >= MAX_CONFIRMATIONS_PER_DAY:
        return False
    subscriber.confirmations_sent_count += 1
    return True


def subscribe(
    session: Session,
    email: str,
    topics: Iterable[str],
    *,
    known_topics: Collection[str],
    client_address: str = "",
    consent_text_version: str = "",
    source: str = "web",
    name: str = "",
    now: datetime | None = None,
) -> SubscribeResult:
    """Ask to subscribe (double opt-in). The caller answers the same whatever happened here.

    New and unsubscribed addresses become pending with the chosen topics; pending ones get
    their topics replaced. Active and paused subscribers keep their topics (a stranger must
    not change them) but are sent a confirmation, whose link leads to their preferences.
    Suppressed addresses (bounced, complained) are never mailed.
    """
    address = normalize_email(email)
    chosen = clean_topics(topics, known_topics)
    today = (now or utcnow()).date().isoformat()
    found = session.execute(_FIND_BY_EMAIL, {"email": address}).first()
    sub = None if found is None else session.get(Subscriber, found[0], with_for_update=True)
    if sub is None:
        sub = _insert_pending(session, address, name, chosen, today)
        consent = _consent(sub, "subscribe", client_address, consent_text_version, source)
        session.execute(_INSERT_CONSENT, consent)
        return SubscribeResult(sub, True, "new")
    if sub.status in (SubscriberStatus.PENDING, SubscriberStatus.UNSUBSCRIBED):
        reason = "resubscribe" if sub.status == SubscriberStatus.UNSUBSCRIBED else "pending"
        if sub.status == SubscriberStatus.UNSUBSCRIBED:
            # Links mailed before the unsubscribe stop working: an old confirmation must
            # not re-activate an address that someone has just asked for again.
            sub.token_version = _next_token_version(sub.token_version)
        sub.status = SubscriberStatus.PENDING
        _set_topics(session, sub, chosen)
    elif sub.status == SubscriberStatus.SUPPRESSED:
        return SubscribeResult(sub, False, "suppressed")
    else:
        reason = "already-subscribed"
    _record(
        session,
        sub,
        "subscribe",
        client_address=client_address,
        consent_text_version=consent_text_version,
        source=source,
    )
    if not claim_confirmation_slot(sub, today):
        session.flush()
        return SubscribeResult(sub, False, "rate-limited")
    session.flush()
    return SubscribeResult(sub, True, reason)


def claim_link_mail(
    session: Session, email: str, *, now: datetime | None = None
) -> Subscriber | None:
    """The subscriber owed an "email me my link" mail, or None (unknown, suppressed, or the
    address's daily mail limit reached). The caller answers the same in every case.

    Link mails count against the same per-address daily limit as confirmations: both are
    mails a stranger can cause by typing an address, and the count holds across processes.
    Nothing else changes: the link itself does the changing, when its owner uses it.
    """
    address = normalize_email(email)
    sub = session.exec(
        select(Subscriber).where(Subscriber.email == address).with_for_update()
    ).first()
    if sub is None or sub.status == SubscriberStatus.SUPPRESSED:
        return None
    if not claim_confirmation_slot(sub, (now or utcnow()).date().isoformat()):
        return None
    session.flush()
    return sub


def confirm(
    session: Session,
    subscriber: Subscriber,
    *,
    client_address: str = "",
    consent_text_version: str = "",
    source: str = "web",
) -> bool:
    """Activate a pending subscription and record consent; True when it changed anything.

    Confirming twice is harmless (False). An unsubscribed or suppressed person cannot be
    reactivated by an old confirmation link: they must ask again.
    """
    if subscriber.status in (SubscriberStatus.ACTIVE, SubscriberStatus.PAUSED):
        return False
    if subscriber.status != SubscriberStatus.PENDING:
        raise NotSubscribed("this confirmation link is no longer valid; please subscribe again")
    # The update itself decides: of two confirmations at once (PostgreSQL, READ COMMITTED,
    # both read "pending"), the second waits for the first's row lock, then matches no row.
    now = utcnow()
    changed = session.execute(
        update(Subscriber)
        .where(
            Subscriber.id == subscriber.id,  # type: ignore[arg-type]
            Subscriber.status == SubscriberStatus.PENDING,  # type: ignore[arg-type]
            Subscriber.token_version == subscriber.token_version,  # type: ignore[arg-type]
        )
        .values(status=SubscriberStatus.ACTIVE, confirmed_at=now, unsubscribed_at=None)
        .execution_options(synchronize_session=False)
    ).rowcount
    session.refresh(subscriber)
    if changed != 1:
        if subscriber.status in (SubscriberStatus.ACTIVE, SubscriberStatus.PAUSED):
            return False
        raise NotSubscribed("this confirmation link is no longer valid; please subscribe again")
    _record(
        session,
        subscriber,
        "confirm",
        client_address=client_address,
        consent_text_version=consent_text_version,
        source=source,
    )
    session.flush()
    return True


def add_confirmed(
    session: Session,
    email: str,
    topics: Iterable[str],
    *,
    known_topics: Collection[str],
    consent_text_version: str,
    source: str,
    name: str = "",
    suppression_key: bytes | None = None,
) -> Subscriber:
    """An operator vouches for the person's consent: active at once, with the vouching recorded.

    Suppressed addresses stay suppressed, also after the person was erased (their keyed
    hash is kept, checked with `suppression_key`); everybody else ends up active.
    """
    address = normalize_email(email)
    chosen = clean_topics(topics, known_topics)
    sub = get_by_email(session, address)
    if sub is None and suppression_key and erased_suppressed(session, suppression_key, [address]):
        raise SubscriberError(f"{address} is suppressed (it bounced or complained before)")
    if sub is None:
        sub = _new_subscriber(address, name, SubscriberStatus.ACTIVE)
        session.add(sub)
        session.flush()
    elif sub.status == SubscriberStatus.SUPPRESSED:
        raise SubscriberError(f"{address} is suppressed ({sub.suppressed_reason or 'bounced'})")
    if name:
        sub.name = clean_name(name)
    already = sub.status == SubscriberStatus.ACTIVE and sub.confirmed_at is not None
    if not already:
        sub.confirmed_at = sub.confirmed_at or utcnow()
    sub.status = SubscriberStatus.ACTIVE
    sub.unsubscribed_at = None
    _set_topics(session, sub, chosen)
    if not already:  # consent already on record is not recorded twice
        _record(session, sub, "vouched", consent_text_version=consent_text_version, source=source)
    session.flush()
    return sub


def update_topics(
    session: Session,
    subscriber: Subscriber,
    topics: Iterable[str],
    *,
    known_topics: Collection[str],
    client_address: str = "",
) -> list[str]:
    chosen = clean_topics(topics, known_topics)
    _set_topics(session, subscriber, chosen)
    _record(session, subscriber, "preferences", client_address=client_address, source="web")
    session.flush()
    return chosen


def pause(session: Session, subscriber: Subscriber) -> bool:
    """Stop mail but keep preferences; only an active subscription can be paused."""
    if subscriber.status != SubscriberStatus.ACTIVE:
        return False
    subscriber.status = SubscriberStatus.PAUSED
    _record(session, subscriber, "pause", source="web")
    session.flush()
    return True


def resume(session: Session, subscriber: Subscriber) -> bool:
    if subscriber.status != SubscriberStatus.PAUSED:
        return False
    subscriber.status = SubscriberStatus.ACTIVE
    _record(session, subscriber, "resume", source="web")
    session.flush()
    return True


def unsubscribe(
    session: Session, subscriber: Subscriber, *, source: str = "web", client_address: str = ""
) -> bool:
    """Leave at once; idempotent (False when already out). Suppression is kept as it is."""
    if subscriber.status in (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.SUPPRESSED):
        return False
    subscriber.status = SubscriberStatus.UNSUBSCRIBED
    subscriber.unsubscribed_at = utcnow()
    _record(session, subscriber, "unsubscribe", client_address=client_address, source=source)
    session.flush()
    return True


def suppress(session: Session, email: str, reason: str, *, source: str = "webhook") -> bool:
    """Never mail this address again automatically (bounce, complaint); False if unknown."""
    try:
        address = normalize_email(email)
    except InvalidEmail:
        return False
    sub = get_by_email(session, address)
    if sub is None:
        return False
    if sub.status == SubscriberStatus.SUPPRESSED:
        return False
    sub.status = SubscriberStatus.SUPPRESSED
    sub.suppressed_reason = reason[:200]
    _record(session, sub, "suppress", source=source)
    session.flush()
    return True


def erase(session: Session, email: str, *, suppression_key: bytes) -> bool:
    """Delete the person and everything that names them (topics, consent, deliveries).

    A suppressed address leaves only a keyed hash behind, so that an import or an operator
    cannot add it again (a new double opt-in by the person still works).
    """
    address = normalize_email(email)
    sub = get_by_email(session, address)
    if sub is None:
        return False
    if sub.status == SubscriberStatus.SUPPRESSED:
        digest = address_hash(suppression_key, address)
        if session.get(SuppressedAddress, digest) is None:
            session.add(SuppressedAddress(address_hash=digest, reason=sub.suppressed_reason))
    # Bump first so a link that races the delete cannot match a half-erased row.
    sub.token_version = _next_token_version(sub.token_version)
    session.flush()
    session.delete(sub)
    session.flush()
    return True


def export(session: Session, email: str) -> dict[str, object]:
    """Everything kept about one person (GDPR Art. 15/20), as JSON-ready data."""
    address = normalize_email(email)
    sub = get_by_email(session, address)
    if sub is None:
        raise NotSubscribed(f"no subscriber with address {address}")
    records = session.exec(
        select(ConsentRecord)
        .where(ConsentRecord.subscriber_id == sub.id)
        .order_by(ConsentRecord.at, ConsentRecord.id)
    ).all()

    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "email": sub.email,
        "name": sub.name,
        "status": sub.status,
        "topics": topics_of(session, sub),
        "created_at": iso(sub.created_at),
        "confirmed_at": iso(sub.confirmed_at),
        "unsubscribed_at": iso(sub.unsubscribed_at),
        "suppressed_reason": sub.suppressed_reason,
        "consent": [
            {
                "action": r.action,
                "at": iso(r.at),
                "client_address": r.client_address,
                "consent_text_version": r.consent_text_version,
                "source": r.source,
            }
            for r in records
        ],
    }


def list_subscribers(session: Session) -> list[tuple[Subscriber, list[str]]]:
    """Every subscriber with their topics, by address (two queries)."""
    subs = session.exec(select(Subscriber).order_by(Subscriber.email)).all()
    topics: dict[int, list[str]] = {}
    for row in session.exec(select(SubscriberTopic)).all():
        topics.setdefault(row.subscriber_id, []).append(row.topic_slug)
    return [(s, sorted(topics.get(s.id or 0, []))) for s in subs]
