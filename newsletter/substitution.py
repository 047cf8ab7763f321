"""The substitution contract: rendering writes markers, transports fill them.

A body is rendered once per variant with a marker where each per-recipient field goes
(`__NL_<nonce>_EMAIL__`); a transport fills the markers for each recipient by plain
substitution, or hands the values to the provider to fill (SendGrid `substitutions`), so a
body is never re-rendered per person. Both sides import this module and nothing of each other.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from functools import lru_cache

# A random part, new in every process, makes the markers unguessable: imported text (a
# paper's title or URL) cannot contain one, so it can never be filled with a recipient's
# address or links. Bodies with markers are rendered and filled in the same process.
MARKER_NONCE = secrets.token_hex(8).upper()
PLACEHOLDER_RE = re.compile(rf"__NL_{MARKER_NONCE}_[A-Z0-9_]+__")
_SPLIT_RE = re.compile(f"({PLACEHOLDER_RE.pattern})")


def placeholder(name: str) -> str:
    """The marker for a per-recipient field: survives Jinja, MJML and HTML escaping as is."""
    return f"__NL_{MARKER_NONCE}_{name.upper()}__"


@lru_cache(maxsize=128)  # a few variants x (html, text); a miss only costs one re-split
def _segments(body: str) -> tuple[str, ...]:
    """The body cut at its markers: literal, marker, literal, ... (odd = marker).

    A variant's body is the same string object for every recipient, so it is scanned once
    and each recipient costs only a join.
    """
    return tuple(_SPLIT_RE.split(body))


def fill(body: str, fields: Mapping[str, str]) -> str:
    """Fill the markers (keys as returned by `placeholder`); unknown markers stay as they are."""
    if not fields:  # a one-off body (a transactional mail): nothing to fill, nothing to cache
        return body
    parts = _segments(body)
    if len(parts) == 1:
        return body
    return "".join(part if i % 2 == 0 else fields.get(part, part) for i, part in enumerate(parts))


def forget_bodies() -> None:
    """Drop the cached cuts of bodies (a render cache reset: templates or settings changed)."""
    _segments.cache_clear()


def check_header_value(name: str, value: str) -> str:
    """Refuse CR/LF in a header value: data must never add headers (header injection)."""
    if "\r" in value or "\n" in value:
        raise ValueError(f"header {name} contains a line break")
    return value


def without_markers(text: str) -> str:
    """Imported text with any marker of this process defused (its random part dropped), so
    it is shown, never filled. Markers are unguessable; this is the second line."""
    return PLACEHOLDER_RE.sub(lambda m: m.group(0).replace(f"{MARKER_NONCE}_", "", 1), text)
