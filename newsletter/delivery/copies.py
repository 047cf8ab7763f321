"""A test copy: one message of one variant of the issue to one address, outside the send's
rows. Its subject names the revision (`[TEST r7] …`), its web-version link opens that draft
without a session (a signed, expiring preview link) and its manage and unsubscribe links
land on a page that says it was a test copy: a test copy unsubscribes nobody."""

from __future__ import annotations

import html as html_escape
import re

from email_validator import EmailNotValidError, validate_email
from sqlalchemy.engine import Engine

from newsletter.db import session_scope
from newsletter.delivery.preflight import require_public_sender
from newsletter.errors import NewsletterError
from newsletter.issues import find_issue, load_issue_contents
from newsletter.papers.draft_status import unreviewed_notice
from newsletter.rendering import (
    EVERYTHING,
    list_headers,
    render_issue_variant,
    test_copy_substitutions,
)
from newsletter.settings import Settings
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
    *,
    variant: str = EVERYTHING,
) -> RecipientResult:
    """One copy of `variant` (default: every topic) to `email`, marked "[TEST rN]"; no
    Delivery row. Recording it (the revision it showed) is the caller's part."""
    require_public_sender(settings)
    try:
        email = validate_email(email, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise NewsletterError(f"{email!r} is not a valid email address ({exc})") from None
    with session_scope(engine) as session:
        issue = find_issue(session, month)
        if not load_issue_contents(session, issue).entries:
            raise NewsletterError(f"issue {month} lists no papers: nothing to send a test of")
        rendered = render_issue_variant(session, issue, variant, settings)
        notice = unreviewed_notice(session, issue)  # drafted summaries nobody reviewed yet
    substitutions = test_copy_substitutions(settings, issue, variant, email)
    batch = Batch(
        subject=f"[TEST r{issue.revision}] {rendered.subject}",
        html=_with_notice(rendered.html, notice),
        text="\n".join([*notice, "", rendered.text]) if notice else rendered.text,
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


_BODY = re.compile(r"<body[^>]*>", re.IGNORECASE)


def _with_notice(html: str, lines: list[str]) -> str:
    """The test copy's HTML with the editors' notice first in the body (test copies only)."""
    if not lines:
        return html
    items = "".join(f"<li>{html_escape.escape(line[2:])}</li>" for line in lines[1:])
    block = (
        '<div role="note" style="background:#fff4ce;color:#3b2e00;padding:12px 16px;'
        'font-family:Arial,sans-serif;font-size:14px;line-height:1.4">'
        f'<p style="margin:0 0 6px"><strong>{html_escape.escape(lines[0])}</strong></p>'
        f'<ul style="margin:0;padding-left:20px">{items}</ul></div>'
    )
    found = _BODY.search(html)
    return html[: found.end()] + block + html[found.end() :] if found else block + html
