"""What must hold before any bulk mail leaves: refused up front, before a row is claimed."""

from __future__ import annotations

from newsletter.errors import NewsletterError
from newsletter.settings import Settings


def require_postal_address(settings: Settings) -> None:
    """Bulk mail must carry a postal address (CAN-SPAM): refuse before anything is sent."""
    if not settings.postal_address.strip():
        raise NewsletterError(
            "NEWSLETTER_POSTAL_ADDRESS is not set: bulk mail must show a postal address "
            "(CAN-SPAM); set it and send again"
        )


def require_public_sender(settings: Settings) -> None:
    """A public site must not mail from `@localhost`: receivers reject or junk it, and its
    Message-IDs name a host nobody owns. Refuse before anything is sent."""
    if not settings.base_url_is_loopback and settings.from_domain_is_local:
        raise NewsletterError(
            f"NEWSLETTER_FROM ({settings.from_}) uses the local domain "
            f"{settings.from_domain!r} while NEWSLETTER_BASE_URL is public "
            f"({settings.base_url}); set it to an address on a domain you own"
        )
