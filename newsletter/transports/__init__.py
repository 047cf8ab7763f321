"""Mail transports: each one file behind the small interface in `base`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from newsletter.transports.base import Transport

if TYPE_CHECKING:
    from newsletter.settings import Settings


def get_transport(settings: Settings) -> Transport:
    """The transport named by NEWSLETTER_MAIL_BACKEND."""
    if settings.mail_backend == "outbox":
        from newsletter.transports.outbox import OutboxTransport

        return OutboxTransport(settings.outbox_dir)  # type: ignore[arg-type]
    if settings.mail_backend == "smtp":
        from newsletter.transports.smtp import SmtpTransport  # type: ignore[import-not-found]

        return SmtpTransport(settings.smtp_url, bounce_address=settings.bounce_address)
    from newsletter.transports.sendgrid import SendgridTransport  # type: ignore[import-not-found]

    return SendgridTransport(settings.sendgrid_api_key, settings.sendgrid_host)
