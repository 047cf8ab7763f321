"""The `listing` text layout of the "what's new" page: a header line per paper, then its text.

    - 📄 paperJun 2026
    Thermodynamic natural gradient descent
    Abeer Mostafa, Raneen Younis, Zahra Ahmadi      <- optional authors line
    introduces a natural gradient optimizer ...     <- summary (one or more lines)

Lines before the first header (the page's introduction) are ignored. Entries carry no link.
"""

from __future__ import annotations

import re
from typing import Any

from newsletter.papers.sources.files import decode_utf8
from newsletter.papers.validation import RecordError

_HEADER = re.compile(
    r"^\s*[-*•]\s*(?:\S+\s*)?paper\s*([A-Za-z]{3,9}\.?\s+\d{4}|\d{4}-\d{2}(?:-\d{2})?)\s*$",
    re.IGNORECASE,
)
_MORE = re.compile(r"^\+\s*(\d+)$")


def looks_like_listing(text: str) -> bool:
    return any(_HEADER.match(line) for line in text.splitlines())


def _is_authors_line(line: str) -> bool:
    """Names separated by commas, maybe ending in `+N`: short parts, no sentence punctuation."""
    if len(line) > 1000 or line.rstrip().endswith((".", "!", "?", ":")):
        return False
    parts = [p.strip() for p in line.split(",")]
    last_words = parts[-1].split()
    if last_words and _MORE.match(last_words[-1]):
        parts[-1] = " ".join(last_words[:-1])
    return all(0 < len(p.split()) <= 5 and p[:1].isupper() for p in parts if p) and bool(parts[0])


def _split_authors(line: str) -> list[str]:
    names = [p.strip() for p in line.split(",") if p.strip()]
    words = names[-1].split()
    more = _MORE.match(words[-1]) if words else None
    if more:
        names[-1] = " ".join(words[:-1])
        names = [n for n in names if n] + [f"+{more.group(1)} more"]
    return names


def read_listing(data: bytes) -> list[Any]:
    lines = decode_utf8(data).splitlines()
    entries: list[tuple[str, list[str]]] = []
    for line in lines:
        m = _HEADER.match(line)
        if m:
            entries.append((m.group(1), []))
        elif entries and line.strip():
            entries[-1][1].append(line.strip())
    if not entries:
        raise RecordError("no '- 📄 paper<Mon YYYY>' entry headers found; is this a listing?")
    records: list[Any] = []
    for number, (published, body) in enumerate(entries, start=1):
        if not body:
            raise RecordError("entry has no title", record=number, field="title")
        title, rest = body[0], body[1:]
        authors: list[str] = []
        if len(rest) >= 2 and _is_authors_line(rest[0]):
            authors, rest = _split_authors(rest[0]), rest[1:]
        if not rest:
            raise RecordError("entry has no summary", record=number, field="summary")
        records.append(
            {"title": title, "authors": authors, "published": published, "summary": " ".join(rest)}
        )
    return records
