"""Editors sign in with a mailed single-use link (or the admin token) and get a session.

Only SHA-256 hashes of link and session secrets are stored, so a database dump signs no one
in. The session cookie carries the secret signed with the app key (itsdangerous), and the
CSRF token of every desk form is an HMAC of the session secret: a forged form from another
site cannot know it, and signing out (or expiry) voids both.
"""

from __future__ import annotations

import hashlib
import hmac
import html as html_lib
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from email_validator import EmailNotValidError, validate_email
from itsdangerous import BadSignature, Signer
from sqlalchemy import update
from sqlmodel import Session, select

from newsletter.models import EditorSession, EditorSignIn
from newsletter.settings import Settings
from newsletter.transports import send_one
from newsletter.transports.base import Outcome
from subscribers.models import utcnow

ADMIN_TOKEN_ACTOR = "admin token"


@dataclass(frozen=True)
class Editor:
    email: str  # the editor's address, or ADMIN_TOKEN_ACTOR
    session_secret: str

    def csrf_token(self, settings: Settings) -> str:
        return csrf_token(settings, self.session_secret)


def desk_enabled(settings: Settings) -> bool:
    """The desk exists only when someone can sign in to it."""
    return bool(settings.editor_emails or settings.admin_token)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def editor_address(settings: Settings, raw: str) -> str | None:
    """The configured editor address matching `raw` (case-insensitive), else None."""
    try:
        address = validate_email(raw.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        return None
    for editor in settings.editor_emails:
        if editor.lower() == address:
            return editor
    return None


def create_sign_in_link(session: Session, settings: Settings, email: str) -> str:
    """A new single-use secret for `email` (an editor address); returns the secret."""
    return _store_secret(
        session, EditorSignIn, email, timedelta(minutes=settings.sign_in_link_minutes)
    )


def _store_secret(
    session: Session,
    table: type[EditorSignIn] | type[EditorSession],
    email: str,
    lifetime: timedelta,
) -> str:
    """A new random secret for `email`, kept in `table` only as its hash; returns it."""
    secret = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(
        table(token_hash=_hash(secret), email=email, created_at=now, expires_at=now + lifetime)
    )
    session.flush()
    return secret


def peek_sign_in_link(session: Session, secret: str) -> str | None:
    """The address a still-valid link signs in, without using it (the GET page)."""
    row = session.exec(select(EditorSignIn).where(EditorSignIn.token_hash == _hash(secret))).first()
    if row is None or row.used_at is not None or _aware(row.expires_at) <= utcnow():
        return None
    return row.email


def use_sign_in_link(session: Session, settings: Settings, secret: str) -> str | None:
    """Spend the link (one conditional UPDATE: of two clicks only one wins); its address."""
    now = utcnow()
    row = session.exec(select(EditorSignIn).where(EditorSignIn.token_hash == _hash(secret))).first()
    if row is None or row.email not in settings.editor_emails:
        return None  # unknown, or the address was removed from NEWSLETTER_EDITORS since
    result = session.execute(
        update(EditorSignIn)
        .where(
            EditorSignIn.id == row.id,
            EditorSignIn.used_at.is_(None),
            EditorSignIn.expires_at > now,
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    return row.email if result.rowcount == 1 else None


def admin_token_matches(settings: Settings, token: str) -> bool:
    return bool(settings.admin_token) and hmac.compare_digest(
        token.strip().encode(), settings.admin_token.encode()
    )


def _signer(settings: Settings) -> Signer:
    return Signer(settings.secret, salt="newsletter.desk-session")


def start_session(session: Session, settings: Settings, email: str) -> str:
    """Open a session for `email`; returns the signed cookie value."""
    secret = _store_secret(session, EditorSession, email, timedelta(hours=settings.session_hours))
    return _signer(settings).sign(secret).decode()


def _secret_of(settings: Settings, cookie: str) -> str | None:
    try:
        return _signer(settings).unsign(cookie).decode()
    except BadSignature:
        return None


def editor_for_cookie(session: Session, settings: Settings, cookie: str) -> Editor | None:
    """The signed-in editor, or None for a missing, forged, expired or ended session."""
    secret = _secret_of(settings, cookie) if cookie else None
    if not secret:
        return None
    row = session.exec(
        select(EditorSession).where(EditorSession.token_hash == _hash(secret))
    ).first()
    if row is None or row.revoked_at is not None or _aware(row.expires_at) <= utcnow():
        return None
    if row.email != ADMIN_TOKEN_ACTOR and row.email not in settings.editor_emails:
        return None  # removed from NEWSLETTER_EDITORS: the session ends with it
    if row.email == ADMIN_TOKEN_ACTOR and not settings.admin_token:
        return None
    return Editor(email=row.email, session_secret=secret)


def end_session(session: Session, settings: Settings, cookie: str) -> None:
    secret = _secret_of(settings, cookie)
    if secret:
        session.execute(
            update(EditorSession)
            .where(EditorSession.token_hash == _hash(secret), EditorSession.revoked_at.is_(None))
            .values(revoked_at=utcnow())
            .execution_options(synchronize_session=False)
        )


def csrf_token(settings: Settings, session_secret: str) -> str:
    return hmac.new(
        settings.secret.encode(), b"desk-csrf:" + session_secret.encode(), hashlib.sha256
    ).hexdigest()


def csrf_ok(settings: Settings, editor: Editor, token: str) -> bool:
    return bool(token) and hmac.compare_digest(token.encode(), editor.csrf_token(settings).encode())


def mail_sign_in_link(settings: Settings, email: str, url: str) -> bool:
    """Send the link; True when the transport took it (failures are logged, never shown, so
    the page answers the same whatever happened)."""

    minutes = f"{settings.sign_in_link_minutes:g}"
    text = (
        f"Sign in to the editor's desk of {settings.title}:\n\n{url}\n\n"
        f"The link works once, for {minutes} minutes. If you did not ask for it, ignore this "
        "email: nobody can sign in without it.\n"
    )
    body = (
        f"<p>Sign in to the editor's desk of {html_lib.escape(settings.title)}:</p>"
        f'<p><a href="{html_lib.escape(url, quote=True)}">Sign in to the desk</a></p>'
        f"<p>The link works once, for {minutes} minutes. If you did not ask for it, ignore "
        "this email: nobody can sign in without it.</p>"
    )
    result = send_one(settings, email, f"Sign in to the desk · {settings.title}", body, text)
    if result.outcome != Outcome.SENT:
        logging.getLogger(__name__).warning("sign-in link not sent: %s", result.error)
        return False
    return True
