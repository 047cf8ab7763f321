"""Atom and RSS feeds, arXiv API answers included (feedparser does the XML).

An arXiv entry gives its id (from the abs link), authors, published date, abstract,
categories and DOI. Feeds carry no plain-language summary, so the abstract stands in for one
on a new paper and never replaces a summary a person wrote.
"""

from __future__ import annotations

import html
import re
import xml.sax
from datetime import date
from html.parser import HTMLParser
from typing import Any

import feedparser

from newsletter.papers.validation import RecordError

_ARXIV_ABS = re.compile(r"^https?://(?:www\.|export\.)?arxiv\.org/abs/(.+?)/?$", re.IGNORECASE)
_VERSION = re.compile(r"v\d+$")


class _TextOnly(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_to_text(value: str) -> str:
    """Feed summaries may be HTML; the newsletter stores plain text and escapes it on output."""
    if "<" not in value:
        return html.unescape(value)
    parser = _TextOnly()
    parser.feed(value)
    parser.close()
    return "".join(parser.parts)


def _text(entry: Any, key: str) -> str:
    """An entry field as plain text: HTML-typed content loses its tags, plain text stays as is."""
    value = str(entry.get(key, ""))
    detail = entry.get(f"{key}_detail") or {}
    return html_to_text(value) if "html" in str(detail.get("type", "")) else value


def _entry_date(entry: Any) -> date | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        parsed = entry.get(key)
        if parsed:
            return date(parsed.tm_year, parsed.tm_mon, parsed.tm_mday)
    return None


def _entry_link(entry: Any) -> str:
    for link in entry.get("links", []):
        if link.get("rel", "alternate") == "alternate" and link.get("href"):
            return str(link["href"])
    return str(entry.get("link", ""))


def _arxiv_id(entry: Any, link: str) -> tuple[str | None, str]:
    """(arXiv id with version, canonical https abs URL without version) when it is arXiv."""
    for candidate in (str(entry.get("id", "")), link):
        m = _ARXIV_ABS.match(candidate.strip())
        if m:
            bare = _VERSION.sub("", m.group(1))
            return m.group(1), f"https://arxiv.org/abs/{bare}"
    # An entry without a web link (an Atom id such as urn:…) links to a title search.
    return None, link if link.startswith(("http://", "https://")) else ""


def _check_parse(parsed: Any) -> None:
    if not parsed.get("bozo"):
        return
    exc = parsed.get("bozo_exception")
    if isinstance(exc, xml.sax.SAXParseException):
        raise RecordError(
            f"is not well-formed XML ({exc.getMessage()} at line {exc.getLineNumber()})"
        )
    if isinstance(exc, feedparser.CharacterEncodingOverride | feedparser.CharacterEncodingUnknown):
        raise RecordError(f"has bytes that do not match its declared encoding ({exc})")
    if not parsed.get("entries") and not parsed.get("feed"):
        raise RecordError(f"is not an Atom or RSS feed ({exc})")


def read_feed(data: bytes) -> list[Any]:
    parsed = feedparser.parse(data, sanitize_html=True, resolve_relative_uris=False)
    _check_parse(parsed)
    if not parsed.get("version") and not parsed.get("entries"):
        raise RecordError("is not an Atom or RSS feed")
    records: list[Any] = []
    for number, entry in enumerate(parsed.entries, start=1):
        entry_id = str(entry.get("id", ""))
        if "arxiv.org/api/errors" in entry_id:  # the arXiv API reports bad queries as an entry
            raise RecordError(f"arXiv API error: {entry.get('summary', '').strip()}", record=number)
        published = _entry_date(entry)
        if published is None:
            raise RecordError(
                "entry has no published or updated date", record=number, field="published"
            )
        link = _entry_link(entry)
        arxiv_id, url = _arxiv_id(entry, link)
        abstract = " ".join(_text(entry, "summary").split())
        authors = [a.get("name", "") for a in entry.get("authors", []) if a.get("name")]
        if not authors and entry.get("author"):
            authors = [str(entry["author"])]
        categories = [t.get("term", "") for t in entry.get("tags", []) if t.get("term")]
        records.append(
            {
                "title": _text(entry, "title"),
                "summary": abstract,
                "abstract": abstract,
                "published": published,
                "url": url,
                "authors": authors,
                "arxiv_id": arxiv_id,
                "doi": entry.get("arxiv_doi") or None,
                "categories": categories,
            }
        )
    return records
