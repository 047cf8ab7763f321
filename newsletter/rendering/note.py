"""The editor's note: a little Markdown, made safe for an email body.

markdown-it-py (CommonMark, raw HTML off) renders it and nh3 (the Ammonia sanitiser) keeps
only a short list of tags and http(s)/mailto links, so a note can never carry script,
styles or tracking pixels, whoever typed it.
"""

from __future__ import annotations

from functools import lru_cache

import nh3
from markdown_it import MarkdownIt

MAX_NOTE = 5000
ALLOWED_TAGS = {"p", "a", "em", "strong", "ul", "ol", "li", "code", "br", "blockquote"}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}}
URL_SCHEMES = {"http", "https", "mailto"}


@lru_cache(maxsize=1)
def _markdown() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False, "linkify": False})


def note_html(markdown: str) -> str:
    """Sanitised HTML of the note ('' for an empty note)."""
    if not markdown.strip():
        return ""
    raw = _markdown().render(markdown)
    return nh3.clean(
        raw,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer",
    ).strip()


def note_text(markdown: str) -> str:
    """The note for the plain-text part: the Markdown source, which reads fine as text."""
    return "\n".join(line.rstrip() for line in markdown.strip().splitlines())
