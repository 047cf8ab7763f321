"""Turning one raw record from any source into a checked `PaperRecord`, or saying exactly why not.

Every source (JSON, YAML, CSV, feeds, the listing text) yields plain dicts; this module is the
single place that knows the rules, so a file fails the same way whatever its format.
"""

from __future__ import annotations

import re
import reprlib
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from urllib.parse import urlsplit

from newsletter.errors import NewsletterError

MAX_TITLE = 500
MAX_SUMMARY = 5_000
MAX_ABSTRACT = 10_000
MAX_URL = 2_000
MAX_AUTHOR = 200
MAX_AUTHORS = 100  # beyond this (large collaborations) the list ends with "+N more"
MAX_DOI = 255
MAX_JOURNAL_REF = 1_000

_MONTHS = {
    name: i
    for i, names in enumerate(
        [
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ],
        start=1,
    )
    for name in names
}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ARXIV_NEW = re.compile(r"^(\d{4}\.\d{4,5})(v\d+)?$")
_ARXIV_OLD = re.compile(r"^([a-z-]+(?:\.[a-z]{2})?/\d{7})(v\d+)?$", re.IGNORECASE)
_ARXIV_PREFIX = re.compile(r"^(?:arxiv:|https?://(?:www\.|export\.)?arxiv\.org/(?:abs|pdf)/)", re.I)
_DOI_PREFIX = re.compile(r"^(?:doi:|https?://(?:dx\.)?doi\.org/)", re.IGNORECASE)


class RecordError(NewsletterError):
    """A record (or the file holding it) is not acceptable; names file, record and field."""

    def __init__(
        self,
        message: str,
        *,
        record: int | None = None,
        field: str | None = None,
        file: str | None = None,
    ) -> None:
        self.message = message
        self.record = record
        self.field = field
        self.file = file
        super().__init__(self.describe())

    def describe(self) -> str:
        where = [part for part in (self.file,) if part]
        if self.record is not None:
            where.append(f"record {self.record}")
        if self.field:
            where.append(f"field {self.field!r}")
        return ": ".join([", ".join(where), self.message]) if where else self.message

    def located(self, *, file: str | None = None, record: int | None = None) -> RecordError:
        return RecordError(
            self.message,
            record=self.record if record is None else record,
            field=self.field,
            file=file or self.file,
        )

    def __str__(self) -> str:
        return self.describe()


@dataclass
class PaperRecord:
    """One valid paper as a source described it, before it meets the database."""

    title: str
    summary: str
    published: date
    url: str = ""
    authors: list[str] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)  # explicit topics; empty means "tag me"
    arxiv_id: str | None = None
    doi: str | None = None
    abstract: str = ""
    categories: list[str] = field(default_factory=list)  # arXiv categories, used for tagging
    # A month-only date ("Jun 2026") never overrides a precise date of the same month.
    day_precision: bool = True
    # Feeds have no plain-language summary: their abstract stands in for one on a new paper
    # but never replaces a summary a person wrote.
    summary_is_abstract: bool = False
    journal_ref: str = ""  # "Phys. Rev. D 110 (2024) 012345", as arXiv gives it
    # Two different posts of one feed sharing a title each get a key of their own.
    title_key: str | None = None
    item_key: str | None = None  # a feed item's own key (title and guid), see feeds.py
    _normalized: tuple[str, str] | None = field(default=None, repr=False, compare=False)

    @property
    def month(self) -> str:
        return f"{self.published.year:04d}-{self.published.month:02d}"

    @property
    def normalized_title(self) -> str:
        if self.title_key:
            return self.title_key
        if self._normalized is None or self._normalized[0] != self.title:
            self._normalized = (self.title, normalize_title(self.title))
        return self._normalized[1]


_NON_WORD = re.compile(r"[\W_]+")


_SHOWN = reprlib.Repr()
_SHOWN.maxstring = _SHOWN.maxother = 60
_SHOWN.maxlist = _SHOWN.maxtuple = _SHOWN.maxdict = 3
_SHOWN.maxlevel = 2


def shown(value: Any) -> str:
    """A bounded repr for error messages: input may be huge (or a YAML alias bomb)."""
    return _SHOWN.repr(value)


def normalize_title(title: str) -> str:
    """Case, accents, punctuation and spacing removed: the de-duplication key for titles."""
    text = title
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text)
        text = "".join(c for c in text if not unicodedata.combining(c))
    return _NON_WORD.sub(" ", text.casefold()).strip()[:MAX_TITLE]


def normalize_arxiv_id(value: str) -> str:
    """`arXiv:2604.01234v2`, abs/pdf URLs and bare ids all become `2604.01234`."""
    text = _ARXIV_PREFIX.sub("", value.strip()).removesuffix(".pdf").strip("/")
    for pattern in (_ARXIV_NEW, _ARXIV_OLD):
        m = pattern.match(text)
        if m:
            return m.group(1)
    raise ValueError(
        f"is not an arXiv id such as 2604.01234 or hep-th/9901001 (got {shown(value)})"
    )


def normalize_doi(value: str) -> str:
    text = _DOI_PREFIX.sub("", value.strip()).lower()
    if not re.match(r"^10\.\d{4,9}/\S+$", text) or len(text) > MAX_DOI:
        raise ValueError(f"is not a DOI such as 10.1234/abc (got {shown(value)})")
    return text


def parse_published(value: Any) -> tuple[date, bool]:
    """`YYYY-MM`, `YYYY-MM-DD`, `Jun 2026` / `June 2026` (or a date) -> (date, day precision)."""
    if isinstance(value, datetime):
        return value.date(), True
    if isinstance(value, date):
        return value, True
    if not isinstance(value, str):
        raise ValueError(f"must be YYYY-MM, YYYY-MM-DD or 'Jun 2026' (got {shown(value)})")
    text = value.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return date.fromisoformat(text), True
        if re.fullmatch(r"\d{4}-\d{2}", text):
            return date.fromisoformat(text + "-01"), False
        m = re.fullmatch(r"([A-Za-z]+)\.?\s+(\d{4})", text)
        if m and m.group(1).lower() in _MONTHS:
            return date(int(m.group(2)), _MONTHS[m.group(1).lower()], 1), False
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}[T ][\d:.]+(Z|[+-]\d{2}:?\d{2})?", text):
            return datetime.fromisoformat(text.replace("Z", "+00:00")).date(), True
    except ValueError:
        pass
    raise ValueError(f"must be YYYY-MM, YYYY-MM-DD or 'Jun 2026' (got {shown(value)})")


def clean_text(value: Any, *, limit: int, one_line: bool) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        if isinstance(value, int | float):
            value = str(value)
        else:
            raise ValueError(f"must be text (got {type(value).__name__})")
    text = _CONTROL.sub("", value.replace("\r\n", "\n").replace("\r", "\n"))
    text = " ".join(text.split()) if one_line else text.strip()
    if len(text) > limit:
        raise ValueError(f"is {len(text):,} characters long; the limit is {limit:,}")
    return text


def _check_url(value: Any) -> str:
    text = clean_text(value, limit=MAX_URL, one_line=True)
    if not text:
        return ""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or " " in text:
        raise ValueError(f"must be an http(s) URL (got {text[:80]!r})")
    return text


def _split_list(value: Any, seps: str) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [part.strip() for part in re.split(f"[{seps}]", value) if part.strip()]
    if isinstance(value, list | tuple):
        out = []
        for item in value:
            if isinstance(item, dict) and "name" in item:
                item = item["name"]
            if not isinstance(item, str):
                raise ValueError(f"must be a list of text (got an item {shown(item)})")
            if item.strip():
                out.append(item.strip())
        return out
    raise ValueError(f"must be a list or a comma-separated string (got {type(value).__name__})")


def _authors(value: Any) -> list[str]:
    names = [" ".join(n.split()) for n in _split_list(value, ",")]
    for name in names:
        if len(name) > MAX_AUTHOR:
            raise ValueError(f"has a name of {len(name):,} characters; the limit is {MAX_AUTHOR}")
    if len(names) > MAX_AUTHORS:
        names = names[: MAX_AUTHORS - 1] + [f"+{len(names) - MAX_AUTHORS + 1} more"]
    return names


def validate_record(
    raw: Any, known_topics: frozenset[str], *, from_feed: bool = False
) -> PaperRecord:
    """Check one raw record; raises `RecordError` naming the field (the caller adds where).

    `from_feed`: the summary is the feed's abstract (longer limit; never replaces a summary
    a person wrote). Only the source decides this, never a field of the file.
    """
    if not isinstance(raw, dict):
        raise RecordError(f"must be an object with title, summary, ... (got {type(raw).__name__})")
    current = "record"

    def text_field(name: str, limit: int, *, one_line: bool, required: bool) -> str:
        nonlocal current
        current = name
        value = clean_text(raw.get(name), limit=limit, one_line=one_line)
        if required and not value:
            raise ValueError("is required and missing or empty")
        return value

    try:
        title = text_field("title", MAX_TITLE, one_line=True, required=True)
        summary_limit = MAX_ABSTRACT if from_feed else MAX_SUMMARY
        # A feed item may be only a title and a link; a person's file needs a summary.
        summary = text_field("summary", summary_limit, one_line=False, required=not from_feed)
        abstract = text_field("abstract", MAX_ABSTRACT, one_line=False, required=False)
        current = "published"
        if raw.get("published") in (None, ""):
            raise ValueError("is required and missing or empty")
        published, precise = parse_published(raw["published"])
        if not 1900 <= published.year <= 2200:
            raise ValueError(f"year {published.year} is out of range")
        current = "url"
        url = _check_url(raw.get("url"))
        current = "authors"
        authors = _authors(raw.get("authors"))
        current = "topics"
        topics = _split_list(raw.get("topics"), ",;")
        unknown = [t for t in topics if t not in known_topics]
        if unknown:
            known = ", ".join(sorted(known_topics))
            raise ValueError(f"unknown topic slug(s) {', '.join(unknown)}; known: {known}")
        current = "arxiv_id"
        arxiv_raw = clean_text(raw.get("arxiv_id"), limit=200, one_line=True)
        arxiv_id = normalize_arxiv_id(arxiv_raw) if arxiv_raw else None
        current = "doi"
        doi_raw = clean_text(raw.get("doi"), limit=400, one_line=True)
        doi = normalize_doi(doi_raw) if doi_raw else None
        current = "categories"
        categories = _split_list(raw.get("categories"), ",; ")
        journal_ref = text_field("journal_ref", MAX_JOURNAL_REF, one_line=True, required=False)
        title_key = raw.get("title_key") if from_feed else None
        item_key = raw.get("item_key") if from_feed else None
    except ValueError as exc:
        raise RecordError(str(exc), field=current) from None
    if not normalize_title(title):
        raise RecordError("has no letters or digits", field="title")
    return PaperRecord(
        title=title,
        summary=summary,
        published=published,
        url=url,
        authors=authors,
        topics=list(dict.fromkeys(topics)),
        arxiv_id=arxiv_id,
        doi=doi,
        abstract=abstract,
        categories=categories,
        day_precision=precise,
        summary_is_abstract=from_feed,
        journal_ref=journal_ref,
        title_key=str(title_key)[:MAX_TITLE] if title_key else None,
        item_key=str(item_key)[:MAX_TITLE] if item_key else None,
    )
