"""A rendered email and the per-recipient substitution that personalises it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache

from newsletter.transports.base import PLACEHOLDER_RE

_SPLIT_RE = re.compile(f"({PLACEHOLDER_RE.pattern})")


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str
    trimmed: int = 0  # papers listed by title only, to stay under the size budget


@lru_cache(maxsize=128)  # a few variants x (html, text); a miss only costs one re-split
def _segments(body: str) -> tuple[str, ...]:
    """The body cut at its placeholders: literal, placeholder, literal, ... (odd = marker).

    A variant's body is the same string object for every recipient, so it is scanned once
    and each recipient costs only a join.
    """
    return tuple(_SPLIT_RE.split(body))


def fill(body: str, fields: Mapping[str, str]) -> str:
    """Same result as `transports.base.substitute`, without rescanning a cached body."""
    parts = _segments(body)
    if len(parts) == 1:
        return body
    return "".join(part if i % 2 == 0 else fields.get(part, part) for i, part in enumerate(parts))


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
