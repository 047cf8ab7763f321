"""The confirmation and welcome emails: one person each, so fully filled, no placeholders."""

from __future__ import annotations

from typing import Literal

from newsletter.rendering.message import RenderedEmail, header_safe
from newsletter.rendering.templates import render_email_parts
from newsletter.settings import Settings

TransactionalKind = Literal["confirmation", "welcome"]


def render_transactional(
    kind: TransactionalKind,
    settings: Settings,
    *,
    email: str,
    action_url: str,
    topics: list[str],
    unsubscribe_url: str = "",
    preferences_url: str = "",
) -> RenderedEmail:
    """Render a confirmation (button to `action_url`) or welcome email for one address.

    `topics` are topic names as the person should read them; an empty list means all topics.
    """
    if kind == "confirmation":
        subject = f"Please confirm your subscription to {settings.title}"
        reason = (
            f"You received this email because {email} was entered in the subscribe form of "
            f"{settings.title}."
        )
    elif kind == "welcome":
        subject = f"Welcome to {settings.title}"
        reason = f"You receive this email because {email} subscribed to {settings.title}."
    else:
        raise ValueError(f"unknown transactional email {kind!r}")
    context = {
        "title": settings.title,
        "subject": subject,
        "preheader": (
            "Confirm your subscription: one click and you're in."
            if kind == "confirmation"
            else "Your topics and how to change them."
        ),
        "email": email,
        "action_url": action_url,
        "topics": list(topics),
        "preferences_url": preferences_url,
        "footer": {
            "reason": reason,
            "topics_line": "",
            "preferences_url": preferences_url,
            "unsubscribe_url": unsubscribe_url,
            "browser_url": "",
            "postal_address": settings.postal_address,
        },
    }
    html, text = render_email_parts(kind, context)
    return RenderedEmail(subject=header_safe(subject), html=html, text=text)
