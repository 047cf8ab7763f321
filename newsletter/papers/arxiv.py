"""Fetching a month of papers from the arXiv API, politely, and importing them as one source.

arXiv asks API clients for at most one request every 3 seconds and modest page sizes; this
pages with `start`/`max_results` and waits `delay` seconds between requests. The answers are
Atom feeds, read by the same feed source as an imported file, and the whole month imports in
one transaction (all or nothing). Tests replay recorded answers from a local server.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import feedparser
from sqlalchemy.engine import Engine
from sqlmodel import Session

from newsletter.months import parse_month, shift_month
from newsletter.papers.http_fetch import http_get
from newsletter.papers.sources.feeds import read_feed
from newsletter.papers.store import (
    FileImportReport,
    SessionFactory,
    import_in_transaction,
    import_raw_records,
)
from newsletter.papers.tagging import Tagger
from newsletter.papers.validation import RecordError

ARXIV_API = "https://export.arxiv.org/api/query"
ARXIV_DELAY = 3.0  # seconds between requests, as arXiv's API terms ask


def month_query(month: str, categories: Sequence[str], query: str = "") -> str:
    """`(cat:cs.LG OR cat:stat.ML) AND submittedDate:[202604010000 TO 202605010000]`,
    with `AND (query)` before the date range when a search query narrows it."""
    if not categories:
        raise RecordError("give at least one arXiv category, e.g. --category cs.LG")
    start = parse_month(month).replace("-", "") + "010000"
    end = shift_month(month, 1).replace("-", "") + "010000"
    cats = " OR ".join(f"cat:{c}" for c in categories)
    narrowed = f" AND ({query.strip()})" if query.strip() else ""
    return f"({cats}){narrowed} AND submittedDate:[{start} TO {end}]"


def fetch_month_pages(
    month: str,
    categories: Sequence[str],
    *,
    query: str = "",
    api_url: str = ARXIV_API,
    page_size: int = 100,
    max_results: int = 2000,
    delay: float = ARXIV_DELAY,
    timeout: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> list[bytes]:
    """Every answer page of the month's query, at most `max_results` entries in all."""
    search = month_query(month, categories, query)
    pages: list[bytes] = []
    start = 0
    while start < max_results:
        if pages:
            sleep(delay)
        params = {
            "search_query": search,
            "start": start,
            "max_results": min(page_size, max_results - start),
            "sortBy": "submittedDate",
            "sortOrder": "ascending",
        }
        page = http_get(f"{api_url}?{urlencode(params)}", timeout=timeout, service="the arXiv API")
        pages.append(page)
        parsed: Any = feedparser.parse(page)
        got = len(parsed.entries)
        total = int(parsed.feed.get("opensearch_totalresults", 0) or 0)
        start += got
        if got == 0 or start >= total:
            break
    return pages


def import_arxiv_month(
    target: Engine | SessionFactory,
    month: str,
    categories: Sequence[str],
    **fetch_options: Any,
) -> FileImportReport:
    """Fetch the month's papers in the categories and import them in one transaction."""
    source = f"arXiv {month} ({', '.join(categories)})"
    try:
        pages = fetch_month_pages(month, categories, **fetch_options)
    except RecordError as exc:
        return FileImportReport(file=Path(source), error=exc.located(file=source))

    def load(session: Session, tagger: Tagger) -> FileImportReport:
        raw: list[Any] = []
        for number, page in enumerate(pages, start=1):
            try:
                raw.extend(read_feed(page))
            except RecordError as exc:
                raise RecordError(f"answer page {number}: {exc.message}", field=exc.field) from None
        for position, record in enumerate(raw, start=1):  # pages each number from 1
            record["record_number"] = position
        if not raw:
            raise RecordError("the arXiv API found no papers for this month and these categories")
        return import_raw_records(session, source, "arxiv", raw, tagger)

    return import_in_transaction(target, source, load)


# `2405.01234`, `2405.01234v2`, `arXiv:2405.01234`, old style `math.OC/0601001`, in an abs or
# pdf link, or in arXiv's own DOI `10.48550/arXiv.2405.01234`.
_NEW_ID = r"\d{4}\.\d{4,5}"
_OLD_ID = r"[a-z][a-z-]*(?:\.[A-Z]{2})?/\d{7}"
ARXIV_REFERENCE = re.compile(
    rf"^(?:arxiv:|https?://(?:www\.|export\.)?arxiv\.org/(?:abs|pdf)/"
    rf"|https?://(?:dx\.)?doi\.org/10\.48550/arxiv\.|10\.48550/arxiv\.)?"
    rf"(?P<id>{_NEW_ID}|{_OLD_ID})(?:v\d+)?(?:\.pdf)?/?$",
    re.IGNORECASE,
)


def parse_arxiv_reference(text: str) -> str:
    """The arXiv id (without version) an editor pasted, or RecordError saying what works."""
    value = text.strip()
    match = ARXIV_REFERENCE.match(value)
    if match is None:
        shown = value if len(value) <= 80 else value[:79] + "…"
        raise RecordError(
            f"{shown!r} is not an arXiv id or link: paste something like 2405.01234, "
            "https://arxiv.org/abs/2405.01234v2 or https://doi.org/10.48550/arXiv.2405.01234"
        )
    found = match.group("id")
    return found if "/" in found else found.lower()


def import_arxiv_ids(
    target: Engine | SessionFactory,
    ids: Sequence[str],
    *,
    api_url: str = ARXIV_API,
    timeout: float = 30.0,
) -> FileImportReport:
    """Fetch these papers by id (one request) and import them like any arXiv answer."""
    source = f"arXiv {', '.join(ids)}"
    try:
        page = http_get(
            f"{api_url}?{urlencode({'id_list': ','.join(ids), 'max_results': len(ids)})}",
            timeout=timeout,
            service="the arXiv API",
        )
    except RecordError as exc:
        return FileImportReport(file=Path(source), error=exc.located(file=source))

    def load(session: Session, tagger: Tagger) -> FileImportReport:
        raw = read_feed(page)
        # arXiv answers an unknown id with one entry titled "Error" (or with none at all).
        raw = [r for r in raw if str(r.get("title", "")).strip().lower() != "error"]
        if not raw:
            raise RecordError(f"arXiv has no paper {', '.join(ids)}")
        for position, record in enumerate(raw, start=1):
            record["record_number"] = position
        return import_raw_records(session, source, "arxiv", raw, tagger)

    return import_in_transaction(target, source, load)
