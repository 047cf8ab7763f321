"""Fetching a month from every source of the sources file, and importing what each brings.

Each source imports like a file does (`papers import`): the same validation, de-duplication
and tagging, all or nothing (a directory: all or nothing per file). A source that fails
keeps nothing and says why; the others still import. `fetch_with_retries` is what the
monthly job runs: failing sources again, with back-off, until a deadline.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from newsletter.months import LATE_WINDOW_MONTHS, shift_month
from newsletter.papers.arxiv import fetch_month_pages
from newsletter.papers.http_fetch import MAX_FEED_BYTES, http_get
from newsletter.papers.sources import read_raw_records
from newsletter.papers.sources.feeds import read_feed
from newsletter.papers.sources_file import (
    ArxivSource,
    DirectorySource,
    FeedSource,
    Filters,
    Source,
    SourcesFile,
)
from newsletter.papers.store import (
    FEED_FORMATS,
    FileImportReport,
    SessionFactory,
    import_in_transaction,
    import_records,
    validate_records,
)
from newsletter.papers.tagging import Tagger
from newsletter.papers.validation import PaperRecord, RecordError
from newsletter.settings import Settings


@dataclass
class SourceReport:
    """What fetching one source did; `error` set means that source (or file) kept nothing."""

    name: str
    kind: str
    added: int = 0
    updated: int = 0
    skipped: int = 0  # unchanged
    filtered: int = 0  # dropped by the source's include/exclude keywords or month
    files: int = 0  # directory: files imported and moved aside
    untagged: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # feed items left out, and why
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def summary(self) -> str:
        counts = f"{self.added} added, {self.updated} updated, {self.skipped} unchanged"
        if self.error is not None:
            kept = f" (its other files: {counts})" if self.files else " (nothing kept from it)"
            return f"{self.name} ({self.kind}): failed: {self.error}{kept}"
        extra = [f"{self.files} file(s) moved aside"] if self.kind == "directory" else []
        if self.filtered:
            extra.append(f"{self.filtered} left out by its keywords or dates")
        extra += self.notes
        return f"{self.name} ({self.kind}): {counts}" + "".join(f", {e}" for e in extra)


@dataclass(frozen=True)
class FetchOptions:
    """What the settings decide about fetching; tests shorten the waits."""

    arxiv_api_url: str
    arxiv_delay: float
    sleep: Callable[[float], None] = time.sleep
    max_feed_bytes: int = MAX_FEED_BYTES

    @classmethod
    def from_settings(cls, settings: Settings) -> FetchOptions:
        return cls(
            arxiv_api_url=settings.arxiv_api_url,
            arxiv_delay=settings.arxiv_delay,
            max_feed_bytes=settings.max_feed_bytes,
        )


def _loader(
    label: str,
    fmt: str,
    raw: Sequence[Any],
    keep: Callable[[PaperRecord], bool],
    dropped: list[int],
) -> Callable[[Session, Tagger], FileImportReport]:
    def load(session: Session, tagger: Tagger) -> FileImportReport:
        notes = list(getattr(raw, "notes", []))  # what a feed left out, and why
        try:
            records = validate_records(
                raw, tagger.slugs, from_feed=fmt in FEED_FORMATS, skipped=notes
            )
            kept = [r for r in records if keep(r)]
            dropped.append(len(records) - len(kept))
            counts = import_records(session, kept, tagger)
        except RecordError as exc:
            raise exc.located(file=label) from None
        report = FileImportReport(file=Path(label), format=fmt)
        report.added, report.updated, report.skipped = counts.added, counts.updated, counts.skipped
        report.untagged = counts.untagged
        report.notes = notes
        return report

    return load


def _import_one(
    make_session: SessionFactory,
    report: SourceReport,
    label: str,
    fmt: str,
    raw: Sequence[Any],
    tagger: Tagger,
    keep: Callable[[PaperRecord], bool],
) -> str | None:
    """Import one batch of raw records into `report`'s counts; the error, if any."""
    dropped: list[int] = []
    imported = import_in_transaction(
        make_session, label, _loader(label, fmt, raw, keep, dropped), tagger
    )
    if imported.error is not None:
        return str(imported.error)
    report.added += imported.added
    report.updated += imported.updated
    report.skipped += imported.skipped
    report.untagged += imported.untagged
    report.notes += imported.notes
    report.filtered += sum(dropped[-1:])  # the attempt that committed
    return None


def _in_window(month: str) -> Callable[[PaperRecord], bool]:
    """A feed lists recent items: keep the month and its late-arrival window, nothing newer."""
    first = shift_month(month, -LATE_WINDOW_MONTHS)
    return lambda record: first <= record.month <= month


def fetch_source(
    make_session: SessionFactory,
    source: Source,
    month: str,
    tagger: Tagger,
    options: FetchOptions,
) -> SourceReport:
    """Fetch and import one source; any failure is in the report, never raised."""
    report = SourceReport(name=source.name, kind=source.type)
    filters = Filters.of(source)
    tagger = tagger.with_fallback(source.topics) if source.topics else tagger
    label = f"source {source.name!r}"
    try:
        if isinstance(source, ArxivSource):
            pages = fetch_month_pages(
                month,
                source.categories,
                query=source.query,
                api_url=options.arxiv_api_url,
                page_size=source.page_size,
                max_results=source.max_results,
                delay=options.arxiv_delay,
                timeout=source.timeout,
                sleep=options.sleep,
            )
            raw: list[Any] = []
            for number, page in enumerate(pages, start=1):
                try:
                    raw.extend(read_feed(page))
                except RecordError as exc:
                    raise RecordError(f"answer page {number}: {exc.describe()}") from None
            # Each page numbers its entries from 1; across pages the position is the number.
            for position, record in enumerate(raw, start=1):
                record["record_number"] = position
            report.error = _import_one(
                make_session, report, label, "arxiv", raw, tagger, filters.keeps
            )
        elif isinstance(source, FeedSource):
            body = http_get(
                source.url,
                timeout=source.timeout,
                service=f"feed {source.name!r}",
                max_bytes=options.max_feed_bytes,
            )
            raw = read_feed(body)
            window = _in_window(month)
            report.error = _import_one(
                make_session,
                report,
                label,
                "feed",
                raw,
                tagger,
                lambda r: window(r) and filters.keeps(r),
            )
        elif isinstance(source, DirectorySource):
            _fetch_directory(make_session, source, report, tagger, filters)
    except RecordError as exc:
        report.error = exc.describe()
    return report


def _new_files(source: DirectorySource) -> list[Path]:
    if not source.path.is_dir():
        raise RecordError(f"directory {source.path} does not exist")
    done = source.move_to.resolve() if source.move_to else None
    return sorted(
        p
        for p in source.path.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.resolve().parent != done
    )


def _move_aside(path: Path, folder: Path) -> Path:
    """Move an imported file into `folder`, never overwriting an earlier file of that name."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    if target.exists():
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        target = folder / f"{path.stem}.{stamp}{path.suffix}"
    return Path(shutil.move(str(path), str(target)))


def _fetch_directory(
    make_session: SessionFactory,
    source: DirectorySource,
    report: SourceReport,
    tagger: Tagger,
    filters: Filters,
) -> None:
    """Each new file imports on its own; an imported file moves aside, a bad one stays put
    (so the next run tries it again once it is fixed) and fails the source, naming it."""
    errors: list[str] = []
    for path in _new_files(source):
        try:
            fmt, raw = read_raw_records(path)
        except RecordError as exc:
            errors.append(exc.describe())
            continue
        error = _import_one(make_session, report, str(path), fmt, raw, tagger, filters.keeps)
        if error is None:
            report.files += 1
            _move_aside(path, source.move_to or source.path / "imported")
        else:
            errors.append(error)
    if errors:
        report.error = "; ".join(errors) + " (left in place; fix and fetch again)"


def fetch_sources(
    target: Engine | SessionFactory,
    sources_file: SourcesFile,
    month: str,
    options: FetchOptions,
    *,
    only: Sequence[str] | None = None,
) -> list[SourceReport]:
    """Fetch every source (or those named in `only`) for `month`, one after another."""
    make_session: SessionFactory = (
        (lambda: Session(target, expire_on_commit=False)) if isinstance(target, Engine) else target
    )
    with make_session() as session:
        tagger = Tagger.from_session(session)
    sources_file.check_topics(tagger.slugs)
    return [
        fetch_source(make_session, source, month, tagger, options)
        for source in sources_file.sources
        if only is None or source.name in only
    ]


@dataclass(frozen=True)
class FetchAttempt:
    number: int
    reports: list[SourceReport]
    retry_in: float | None  # seconds until the next attempt; None: no more attempts


def fetch_with_retries(
    target: Engine | SessionFactory,
    sources_file: SourcesFile,
    month: str,
    options: FetchOptions,
    *,
    retries: int,
    first_delay: float,
    deadline: datetime,
    now: datetime,
    on_attempt: Callable[[FetchAttempt], None],
    stop: threading.Event | None = None,
) -> list[SourceReport]:
    """Fetch all sources, then only the failing ones again after 1, 2, 4 … × `first_delay`
    seconds, at most `retries` times and never past `deadline` (the send cutoff). Every
    attempt is passed to `on_attempt` (the job records it). Returns each source's last report.
    """
    started = time.monotonic()
    latest: dict[str, SourceReport] = {}
    failing: list[str] | None = None
    delay = first_delay
    for number in range(1, retries + 2):
        reports = fetch_sources(target, sources_file, month, options, only=failing)
        latest.update((r.name, r) for r in reports)
        failing = [r.name for r in reports if not r.ok]
        retry_in: float | None = delay
        current = now + timedelta(seconds=time.monotonic() - started)
        if not failing or number > retries or current + timedelta(seconds=delay) > deadline:
            retry_in = None
        on_attempt(FetchAttempt(number, reports, retry_in))
        if retry_in is None:
            break
        if stop is not None:
            if stop.wait(retry_in):
                break
        else:
            time.sleep(retry_in)
        delay *= 2
    return [latest[s.name] for s in sources_file.sources if s.name in latest]
