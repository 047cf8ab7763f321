"""Mail transports: each one file behind the small interface in `base`."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import TYPE_CHECKING

from newsletter.transports.base import Batch, Recipient, RecipientResult, Transport

if TYPE_CHECKING:
    from newsletter.settings import Settings


def get_transport(settings: Settings) -> Transport:
    """The transport named by NEWSLETTER_MAIL_BACKEND.

    Each backend is imported here, when chosen, only to keep start-up fast: a process that
    mails through the outbox never loads the SendGrid client.
    """
    if settings.mail_backend == "outbox":
        from newsletter.transports.outbox import OutboxTransport

        return OutboxTransport(settings.outbox_dir)  # type: ignore[arg-type]
    if settings.mail_backend == "smtp":
        from newsletter.transports.smtp import SmtpTransport  # type: ignore[import-not-found]

        return SmtpTransport(
            settings.smtp_url, bounce_address=settings.bounce_address, secret=settings.secret
        )
    from newsletter.transports.sendgrid import SendgridTransport  # type: ignore[import-not-found]

    return SendgridTransport(settings.sendgrid_api_key, settings.sendgrid_host)


def send_one(
    settings: Settings,
    to: str,
    subject: str,
    html: str,
    text: str,
    headers: Mapping[str, str] | None = None,
    *,
    transport: Transport | None = None,
) -> RecipientResult:
    """One transactional message (confirmation, welcome, desk sign-in link) through
    `transport`, or through the configured backend opened and closed around it; the result
    says whether it went."""
    batch = Batch(
        subject=subject,
        html=html,
        text=text,
        recipients=[Recipient(email=to, headers=dict(headers or {}))],
        from_addr=settings.from_,
        reply_to=settings.reply_to,
    )
    if transport is not None:
        return transport.send_batch(batch)[0]
    own = get_transport(settings)
    try:
        return own.send_batch(batch)[0]
    finally:
        own.close()


def notify_editors(settings: Settings, subject: str, text: str) -> list[str]:
    """A plain note to every NEWSLETTER_EDITORS address (a refused send, drops that are
    ours to fix); returns who it reached. Best effort: a failure is in the result only."""
    reached = []
    for editor in settings.editor_emails:
        result = send_one(settings, editor, subject[:150], f"<pre>{html.escape(text)}</pre>", text)
        if result.outcome == "sent":
            reached.append(editor)
    return reached
