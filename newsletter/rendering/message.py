"""A rendered email and the per-recipient substitution that personalises it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from newsletter.substitution import fill


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str
    trimmed: int = 0  # papers listed by title only, to stay under the size budget


def personalize(rendered: RenderedEmail, substitutions: Mapping[str, str]) -> RenderedEmail:
    """Fill the per-recipient placeholders by plain substitution: no re-rendering."""
    return replace(
        rendered,
        html=fill(rendered.html, substitutions),
        text=fill(rendered.text, substitutions),
    )


def header_safe(value: str) -> str:
    """Data headed for a header line (subject, list name): line breaks become spaces."""
    return " ".join(value.split())
