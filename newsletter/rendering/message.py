"""A rendered email and the per-recipient substitution that personalises it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from newsletter.transports.base import substitute


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str


def personalize(rendered: RenderedEmail, substitutions: Mapping[str, str]) -> RenderedEmail:
    """Fill the per-recipient placeholders by plain substitution: no re-rendering."""
    return RenderedEmail(
        subject=rendered.subject,
        html=substitute(rendered.html, substitutions),
        text=substitute(rendered.text, substitutions),
    )


def header_safe(value: str) -> str:
    """Data headed for a header line (subject, list name): line breaks become spaces."""
    return " ".join(value.split())
