"""The confirmation, welcome and "your link" emails: one person each, so fully filled."""

from __future__ import annotations

from typing import Literal

from newsletter.rendering.message import RenderedEmail, header_safe
from newsletter.rendering.templates import render_email_parts
from newsletter.settings import Settings

TransactionalKind = Literal["confirmation", "welcome", "link"]


def render_transactional(
    kind: TransactionalKind,
    settings: Settings,
    *,
    email: str,
    action_url: str,
    topics: list[str],
    unsubscribe_url: str = "",
    preferences_url: str = "",
    replaces_earlier: bool = False,
    latest_label: str = "",
    latest_url: str = "",
    next_date: str = "",
    start_here: list[dict[str, str]] | None = None,
    start_here_url: str = "",
) -> RenderedEmail:
    """Render a confirmation (button to `action_url`) or welcome email for one address.

    `topics` are topic names as the person should read them; an empty list means all topics.
    `replaces_earlier`: a confirmation for an address already pending says that these
    topics replace the earlier request's (every link of the person confirms the newest).
    The welcome names the latest issue (`latest_label`, `latest_url`), `next_date` and the
    editors' `start_here` list (title, url, authors, why), linking `start_here_url`.
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
    elif kind == "link":
        subject = f"Your link to manage {settings.title}"
        reason = (
            f'You received this email because {email} was entered in the "email me my link" '
            f"form of {settings.title}."
        )
    else:
        raise ValueError(f"unknown transactional email {kind!r}")
    context = {
        "title": settings.title,
        "subject": subject,
        "preheader": {
            "confirmation": "Confirm your subscription: one click and you're in.",
            "welcome": "Your topics and how to change them.",
            "link": "The link to your preferences, as you asked.",
        }[kind],
        "email": email,
        "action_url": action_url,
        "topics": list(topics),
        "replaces_earlier": replaces_earlier,
        "latest_label": latest_label,
        "latest_url": latest_url,
        "next_date": next_date,
        "start_here": list(start_here or []),
        "start_here_url": start_here_url,
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
