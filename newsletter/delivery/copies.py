"""A test copy: one message of the full issue to one address, outside the send's rows."""

from __future__ import annotations

import html

from email_validator import EmailNotValidError, validate_email
from sqlalchemy.engine import Engine

from newsletter.db import session_scope
from newsletter.delivery.preflight import require_public_sender
from newsletter.errors import NewsletterError
from newsletter.issues import find_issue, load_issue_contents
from newsletter.rendering import (
    EVERYTHING,
    list_headers,
    preview_substitutions,
    render_issue_variant,
)
from newsletter.settings import Settings
from newsletter.substitution import placeholder
from newsletter.transports import get_transport
from newsletter.transports.base import (
    Batch,
    Outcome,
    Recipient,
    RecipientResult,
    Transport,
    TransportUnavailable,
)


def send_test_copy(
    engine: Engine,
    settings: Settings,
    month: str,
    email: str,
    transport: Transport | None = None,
) -> RecipientResult:
    """One copy of the full issue to `email`, subject marked "[TEST]"; no Delivery row.

    Its links are the preview's (clearly fake tokens): a test copy unsubscribes nobody.
    """
    require_public_sender(settings)
    try:
        email = validate_email(email, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise NewsletterError(f"--test {email!r}: not a valid email address ({exc})") from None
    with session_scope(engine) as session:
        issue = find_issue(session, month)
        if not load_issue_contents(session, issue).entries:
            raise NewsletterError(f"issue {month} lists no papers: nothing to send a test of")
        rendered = render_issue_variant(session, issue, EVERYTHING, settings)
    substitutions = preview_substitutions(settings, issue, EVERYTHING)
    substitutions[placeholder("email")] = html.escape(email, quote=True)
    batch = Batch(
        subject=f"[TEST] {rendered.subject}",
        html=rendered.html,
        text=rendered.text,
        recipients=[Recipient(email=email, substitutions=substitutions)],
        from_addr=settings.from_,
        reply_to=settings.reply_to,
        headers={**list_headers(settings), "X-Newsletter-Test": "yes"},
        categories=(issue.month, "test"),
    )
    own_transport = transport is None
    transport = transport or get_transport(settings)
    try:
        try:
            result = transport.send_batch(batch)[0]
        except TransportUnavailable as exc:
            raise NewsletterError(f"test copy not sent: {exc}") from None
    finally:
        if own_transport:
            transport.close()
    if result.outcome is not Outcome.SENT:
        raise NewsletterError(f"test copy to {email} was not sent: {result.error}")
    return result
