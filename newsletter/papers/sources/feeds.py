"""Atom, RSS 0.9x/2.0 and RDF feeds, arXiv API answers and arXiv listing feeds (feedparser
does the XML), read as publishers write them.

Feeds are written by programs, not people, so one odd item never costs the rest: an item that
cannot be a paper (no title; no date, the channel's as fallback; no link and no text) is
skipped and named ("record 3: no title, skipped"); HTML becomes plain text (nh3 strips the
tags, entities are unescaped); an over-long text is cut at a sentence with "…". Items repeat
by guid or link first, so two posts sharing a title stay two.

arXiv's listing feeds (rss.arxiv.org, RSS and Atom) put all authors in one `dc:creator`,
prefix the text with "arXiv:ID Announce Type: … Abstract:", and list `replace` /
`replace-cross` items: new versions of earlier papers, which are not the day's papers unless
their first version (the YYMM of the id) is of the same month. An arXiv error feed ("Feed
error for query …", "Bad archive …") is an error with arXiv's own message.

Feeds carry no plain-language summary, so the abstract stands in for one on a new paper and
never replaces a summary a person wrote.
"""

from __future__ import annotations

import hashlib
import html
import re
import xml.sax
from datetime import date
from typing import Any

import feedparser
import nh3

from newsletter.papers.summaries import ELLIPSIS, abstract_excerpt
from newsletter.papers.validation import (
    MAX_ABSTRACT,
    MAX_TITLE,
    RecordError,
    normalize_title,
)

_ARXIV_ABS = re.compile(r"^https?://(?:www\.|export\.)?arxiv\.org/abs/(.+?)/?$", re.IGNORECASE)
_ARXIV_OAI = re.compile(r"^oai:arXiv\.org:(.+)$", re.IGNORECASE)
_VERSION = re.compile(r"v(\d+)$")
_PREAMBLE = re.compile(
    r"^\s*arXiv:(?P<id>\S+)\s+Announce\s+Type:\s*(?P<type>[\w-]+)\s+Abstract:\s*", re.IGNORECASE
)
_FIRST_MONTH = re.compile(r"^(?:[a-z-]+(?:\.[A-Z]{2})?/)?(\d{2})(\d{2})", re.IGNORECASE)
_BLOCK_TAG = re.compile(
    r"<(/?)(p|br|div|li|ul|ol|h[1-6]|tr|td|th|table|figure|figcaption|blockquote|pre|hr)\b",
    re.IGNORECASE,
)
_AUTHOR_SPLIT = re.compile(r"\s*,\s*(?:and\s+)?|\s+and\s+")
NEW_ANNOUNCE_TYPES = frozenset({"new", "cross"})
REPLACE_ANNOUNCE_TYPES = frozenset({"replace", "replace-cross"})


class FeedRecords(list[dict[str, Any]]):
    """The records of one feed, plus what the report says about the items left out."""

    def __init__(self, records: list[dict[str, Any]], notes: list[str]) -> None:
        super().__init__(records)
        self.notes = notes


def html_to_text(value: str) -> str:
    """Feed text may be HTML: tags removed by nh3 (script and style with their content),
    block elements kept apart by a space, entities unescaped; the result is plain text."""
    if "<" not in value:
        return html.unescape(value)
    spaced = _BLOCK_TAG.sub(r" <\1\2", value)
    return html.unescape(nh3.clean(spaced, tags=set()))


def cut_at_sentence(text: str, limit: int) -> str:
    """`text` if it fits, else its opening sentences within `limit`, ending with "…"."""
    if len(text) <= limit:
        return text
    head = abstract_excerpt(text, limit - 2)
    return head if head.endswith(ELLIPSIS) else f"{head} {ELLIPSIS}"


def _plain(value: str, detail: Any) -> str:
    """An entry's text: plain when its type says text/plain, otherwise read as HTML."""
    kind = str((detail or {}).get("type", ""))
    return value if kind == "text/plain" else html_to_text(value)


def _entry_text(entry: Any) -> str:
    """The summary, or else the (first) content: Atom entries often carry only `content`."""
    summary = _plain(str(entry.get("summary", "")), entry.get("summary_detail"))
    if summary.strip():
        return summary
    for content in entry.get("content", []):
        text = _plain(str(content.get("value", "")), content)
        if text.strip():
            return text
    return ""


def _parsed_date(source: Any) -> date | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        parsed = source.get(key)
        if parsed:
            return date(parsed.tm_year, parsed.tm_mon, parsed.tm_mday)
    return None


def _entry_link(entry: Any) -> str:
    for link in entry.get("links", []):
        if link.get("rel", "alternate") == "alternate" and link.get("href"):
            return str(link["href"])
    return str(entry.get("link", ""))


def _arxiv_id(entry: Any, link: str) -> tuple[str | None, str]:
    """(arXiv id with version, canonical https abs URL without version) when it is arXiv.

    The API gives the versioned id in the abs URL of `<id>`; a listing feed in its `guid`
    (`oai:arXiv.org:2411.17700v1`), with an unversioned link.
    """
    for candidate in (str(entry.get("id", "")), link):
        candidate = candidate.strip()
        m = _ARXIV_OAI.match(candidate) or _ARXIV_ABS.match(candidate)
        if m:
            bare = _VERSION.sub("", m.group(1))
            return m.group(1), f"https://arxiv.org/abs/{bare}"
    # An entry without a web link (an Atom id such as urn:…) links to a title search.
    return None, link if link.startswith(("http://", "https://")) else ""


def first_version_month(arxiv_id: str) -> str | None:
    """`2411.17700v3` -> "2024-11" (the month of its first version); old ids the same way."""
    m = _FIRST_MONTH.match(arxiv_id)
    if not m:
        return None
    yy, mm = int(m.group(1)), int(m.group(2))
    return f"{(1900 if yy >= 91 else 2000) + yy:04d}-{mm:02d}"


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


def _check_arxiv_error_feed(parsed: Any) -> None:
    """arXiv answers a bad listing query (`rss/astroph`) with an item-less error feed."""
    channel = parsed.get("feed", {})
    title = " ".join(str(channel.get("title", "")).split())
    if title.lower().startswith("feed error for query"):
        message = _one_line(str(channel.get("subtitle", "") or channel.get("description", "")))
        raise RecordError(f"arXiv listing feed error: {message or title}")


def _authors(entry: Any, arxiv_listing: bool) -> list[str]:
    names = [str(a.get("name", "")) for a in entry.get("authors", []) if a.get("name")]
    if not names and entry.get("author"):
        names = [str(entry["author"])]
    if arxiv_listing:  # "A, B, C" in one dc:creator; a name never holds a comma there
        names = [part for name in names for part in _AUTHOR_SPLIT.split(name) if part.strip()]
    return [" ".join(html_to_text(n).split()) for n in names]


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _first_doi(entry: Any) -> str | None:
    """arXiv separates several DOIs by spaces, the article's own first."""
    parts = str(entry.get("arxiv_doi") or "").split()
    return parts[0] if parts else None


def _journal_ref(entry: Any) -> str:
    """`arxiv:journal_reference` in listing feeds, `arxiv:journal_ref` in API answers."""
    value = entry.get("arxiv_journal_reference") or entry.get("arxiv_journal_ref") or ""
    return _one_line(str(value))


def _title_key(title: str, identity: str) -> str:
    """A de-duplication key for one of several different items sharing a title."""
    digest = hashlib.sha1(identity.encode("utf-8")).hexdigest()[:12]  # noqa: S324 - a key, not security
    return f"{normalize_title(title)[: MAX_TITLE - 14]} #{digest}"


def read_feed(data: bytes) -> FeedRecords:
    """The feed's paper records; items that cannot be papers are left out and named."""
    parsed = feedparser.parse(data, sanitize_html=True, resolve_relative_uris=False)
    _check_parse(parsed)
    _check_arxiv_error_feed(parsed)
    if not parsed.get("version") and not parsed.get("entries"):
        raise RecordError("is not an Atom or RSS feed")
    channel_date = _parsed_date(parsed.get("feed", {}))
    records: list[dict[str, Any]] = []
    notes: list[str] = []
    seen: dict[str, int] = {}
    new_versions = 0
    for number, entry in enumerate(parsed.entries, start=1):
        entry_id = str(entry.get("id", ""))
        if "arxiv.org/api/errors" in entry_id:  # the arXiv API reports bad queries as an entry
            raise RecordError(f"arXiv API error: {entry.get('summary', '').strip()}", record=number)
        title = _one_line(_plain(str(entry.get("title", "")), entry.get("title_detail")))
        link = _entry_link(entry)
        arxiv_id, url = _arxiv_id(entry, link)
        text = _one_line(_entry_text(entry))
        preamble = _PREAMBLE.match(text)
        announce = str(entry.get("arxiv_announce_type", "")).strip().lower()
        if preamble:
            text = text[preamble.end() :]
            announce = announce or preamble.group("type").lower()
            arxiv_id = arxiv_id or preamble.group("id")
        published = _parsed_date(entry) or channel_date
        missing = (
            "no title"
            if not normalize_title(title)
            else "no date (neither the item nor the feed has one)"
            if published is None
            else "no link and no text"
            if not url and not text
            else None
        )
        if missing:
            notes.append(f"record {number}: {missing}, skipped")
            continue
        assert published is not None
        if announce in REPLACE_ANNOUNCE_TYPES and arxiv_id:
            first = first_version_month(arxiv_id)
            if first != f"{published.year:04d}-{published.month:02d}":
                new_versions += 1
                continue
        identity = entry_id or link
        if identity and identity in seen:
            notes.append(f"record {number}: the same item as record {seen[identity]}, skipped")
            continue
        if identity:
            seen[identity] = number
        text = cut_at_sentence(text, MAX_ABSTRACT)
        records.append(
            {
                "title": cut_at_sentence(title, MAX_TITLE),
                "summary": text,
                "abstract": text,
                "published": published,
                "url": url,
                "authors": _authors(entry, arxiv_listing=bool(announce)),
                "arxiv_id": arxiv_id,
                "doi": _first_doi(entry),
                "journal_ref": _journal_ref(entry),
                "categories": [t.get("term", "") for t in entry.get("tags", []) if t.get("term")],
                "record_number": number,
                "identity": identity,
            }
        )
    _keep_same_title_posts_apart(records)
    if new_versions:
        notes.append(
            f"{new_versions} new version{'s' if new_versions != 1 else ''} of earlier papers "
            "skipped"
        )
    return FeedRecords(records, notes)


def _keep_same_title_posts_apart(records: list[dict[str, Any]]) -> None:
    """Items of one feed with one title but different guids/links are different posts: each
    gets a title key of its own, so the title rule does not merge them."""
    by_title: dict[str, set[str]] = {}
    for record in records:
        by_title.setdefault(normalize_title(record["title"]), set()).add(record["identity"])
    for record in records:
        if not record["identity"] or record["arxiv_id"]:
            continue
        # Every item also carries its own key, so a post stored under it is found again when
        # a later fetch lists it alone (the feed rolled past its namesake).
        record["item_key"] = _title_key(record["title"], record["identity"])
        if len(by_title[normalize_title(record["title"])]) > 1:
            record["title_key"] = record["item_key"]
