"""Papers into the database: de-duplicated, tagged, all-or-nothing per file, in bulk.

A record is the same paper as a stored one when its arXiv id (version stripped), DOI or
normalised title matches, tried in that order. Re-importing a file changes nothing; a changed
field (summary, URL arriving later for a listing paper, ...) updates the paper. Lookups and
writes go in batches, so 10,000 records cost a few dozen queries, not 10,000.

Why this module is long: matching a record to a stored paper, deciding what it changes
(fields, topics, the tagger's confidence) and writing the batch are one all-or-nothing step
whose rules refer to each other; split apart, each piece would need the others' details.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from newsletter.models import Paper, PaperTopic, Topic, utcnow
from newsletter.papers.sources import read_raw_records
from newsletter.papers.tagging import Tagger
from newsletter.papers.validation import PaperRecord, RecordError, validate_record
from newsletter.topics import GENERAL_TOPIC

CONCURRENT_RETRIES = 2
CHUNK = 500  # keys per IN (...) query: well under SQLite's and PostgreSQL's parameter limits


@dataclass
class ImportCounts:
    added: int = 0
    updated: int = 0
    skipped: int = 0  # already stored exactly so (or repeated within the file)
    untagged: list[str] = field(default_factory=list)  # titles that fell back to `general`


@dataclass
class FileImportReport:
    """What importing one file did; `error` set means nothing of that file was kept."""

    file: Path
    format: str = ""
    added: int = 0
    updated: int = 0
    skipped: int = 0
    untagged: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # feed items left out, and why
    error: RecordError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated)


FEED_FORMATS = frozenset({"feed", "arxiv"})


def validate_records(
    raw_records: Sequence[Any],
    known_topics: frozenset[str],
    *,
    from_feed: bool = False,
    skipped: list[str] | None = None,
) -> list[PaperRecord]:
    """Validate every record; the first bad one fails them all, named by its 1-based number.

    A feed's records (`from_feed`, with a `skipped` list) are published by programs, not
    written by people: a bad one is left out and named in `skipped`, the others import.
    """
    records = []
    for number, raw in enumerate(raw_records, start=1):
        if from_feed and isinstance(raw, dict):  # feeds skip items: keep the feed's numbering
            number = raw.get("record_number", number)
        try:
            records.append(validate_record(raw, known_topics, from_feed=from_feed))
        except RecordError as exc:
            if from_feed and skipped is not None:
                skipped.append(f"{exc.located(record=number).describe()}, skipped")
                continue
            raise exc.located(record=number) from None
    return records


def _keys(record: PaperRecord) -> list[tuple[str, str]]:
    keys = [("arxiv", record.arxiv_id), ("doi", record.doi)]
    if record.item_key and record.item_key != record.normalized_title:
        keys.append(("title", record.item_key))  # a feed post stored apart from its namesake
    keys.append(("title", record.normalized_title))
    return [(kind, value) for kind, value in keys if value]


_FILLABLE = ("url", "authors", "topics", "arxiv_id", "doi", "abstract", "categories", "journal_ref")


def _merge(earlier: PaperRecord, later: PaperRecord) -> PaperRecord:
    """The same paper twice in one file: the later record wins, the earlier fills its gaps."""
    gaps = {name: getattr(earlier, name) for name in _FILLABLE if not getattr(later, name)}
    return replace(later, **gaps)


def _dedupe(records: list[PaperRecord]) -> tuple[list[tuple[int, PaperRecord]], int]:
    """Records collapsed by key, each with the number of its last occurrence; plus repeats."""
    unique: list[tuple[int, PaperRecord]] = []
    index: dict[tuple[str, str], int] = {}
    repeats = 0
    for number, record in enumerate(records, start=1):
        hits = {index[k] for k in _keys(record) if k in index}
        if len(hits) > 1:
            raise RecordError(
                "matches two different earlier records of this file (by arXiv id, DOI or title)",
                record=number,
            )
        if hits:
            slot = hits.pop()
            record = _merge(unique[slot][1], record)
            unique[slot] = (number, record)
            repeats += 1
        else:
            slot = len(unique)
            unique.append((number, record))
        for key in _keys(record):
            index[key] = slot
    return unique, repeats


def _chunks(values: list[Any]) -> Iterable[list[Any]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


def _existing(session: Session, records: Iterable[PaperRecord]) -> dict[tuple[str, str], Paper]:
    wanted: dict[str, set[str]] = {"arxiv": set(), "doi": set(), "title": set()}
    for record in records:
        for kind, value in _keys(record):
            wanted[kind].add(value)
    columns = {"arxiv": Paper.arxiv_id, "doi": Paper.doi, "title": Paper.normalized_title}
    found: dict[tuple[str, str], Paper] = {}
    for kind, values in wanted.items():
        for chunk in _chunks(sorted(values)):
            for paper in session.exec(select(Paper).where(columns[kind].in_(chunk))).all():
                for k, v in _keys_of_paper(paper):
                    found[(k, v)] = paper
    return found


def _keys_of_paper(paper: Paper) -> list[tuple[str, str]]:
    keys = [("arxiv", paper.arxiv_id), ("doi", paper.doi), ("title", paper.normalized_title)]
    return [(kind, value) for kind, value in keys if value]


def _topics_of(session: Session, paper_ids: list[int]) -> dict[int, list[str]]:
    topics: dict[int, list[str]] = {pid: [] for pid in paper_ids}
    for chunk in _chunks(paper_ids):
        for pt in session.exec(select(PaperTopic).where(PaperTopic.paper_id.in_(chunk))).all():
            topics[pt.paper_id].append(pt.topic_slug)
    return topics


def _match(record: PaperRecord, number: int, known: dict[tuple[str, str], Paper]) -> Paper | None:
    """The stored paper this record is, refusing records whose keys point at two papers."""
    hits = [(kind, known[(kind, value)]) for kind, value in _keys(record) if (kind, value) in known]
    if not hits:
        return None
    kind, paper = hits[0]
    for other_kind, other in hits[1:]:
        if other.id != paper.id and not other_kind == kind == "title":  # item key first
            raise RecordError(
                f"its {kind} matches stored paper #{paper.id} but its {other_kind} matches "
                f"stored paper #{other.id}; fix the record",
                record=number,
                field={"arxiv": "arxiv_id", "doi": "doi", "title": "title"}[other_kind],
            )
    for name, theirs in (("arxiv_id", paper.arxiv_id), ("doi", paper.doi)):
        ours = getattr(record, name)
        if ours and theirs and ours != theirs:
            raise RecordError(
                f"{ours!r} differs from {theirs!r} of stored paper #{paper.id} "
                f"{paper.title!r}, which it matches by {kind}",
                record=number,
                field=name,
            )
    return paper


def _changes(paper: Paper, record: PaperRecord) -> dict[str, Any]:
    """Field values the record would change on the stored paper (empty: nothing to do)."""
    new: dict[str, Any] = {}
    # Same title up to case and punctuation: keep the stored spelling, so two sources that
    # disagree only there never flip it back and forth on each re-import.
    if record.normalized_title != paper.normalized_title != record.item_key:
        new["title"] = record.title
        new["normalized_title"] = record.normalized_title
    if not record.summary_is_abstract and record.summary != paper.summary:
        new["summary"] = record.summary
    if record.abstract and record.abstract != paper.abstract:
        new["abstract"] = record.abstract
    if record.url and record.url != paper.url:
        new["url"] = record.url
    abbreviated = bool(record.authors) and record.authors[-1].endswith(" more")
    if abbreviated and paper.authors and not paper.authors[-1].endswith(" more"):
        pass  # a listing's "A, B +2" never replaces a complete author list
    elif record.authors and record.authors != paper.authors:
        new["authors"] = record.authors
    # A month-only date ("Jun 2026") keeps a precise stored date of the same month.
    moved = record.published != paper.published if record.day_precision else None
    if moved or (moved is None and record.month != paper.month):
        new["published"], new["month"] = record.published, record.month
    if record.arxiv_id and not paper.arxiv_id:
        new["arxiv_id"] = record.arxiv_id
    if record.doi and not paper.doi:
        new["doi"] = record.doi
    if record.journal_ref and record.journal_ref != paper.journal_ref:
        new["journal_ref"] = record.journal_ref
    return new


def _new_paper(record: PaperRecord, now: datetime) -> dict[str, Any]:
    return {
        "title": record.title,
        "normalized_title": record.normalized_title,
        "summary": record.summary,
        "url": record.url,
        "authors": record.authors,
        "published": record.published,
        "month": record.month,
        "arxiv_id": record.arxiv_id,
        "doi": record.doi,
        "abstract": record.abstract,
        "journal_ref": record.journal_ref,
        "created_at": now,
        "updated_at": now,
    }


def import_records(session: Session, records: list[PaperRecord], tagger: Tagger) -> ImportCounts:
    """Add or update papers and their topics in the session (flushed, not committed).

    Topics: explicit topics replace the stored ones. Without them a new paper is tagged from
    keywords and categories; a stored paper keeps its topics unless it only had `general`.
    """
    unique, repeats = _dedupe(records)
    counts = ImportCounts(skipped=repeats)
    known = _existing(session, (r for _, r in unique))
    matched = {paper.id for paper in known.values()}
    current_topics = _topics_of(session, sorted(pid for pid in matched if pid is not None))
    claimed: dict[int, int] = {}  # stored paper id -> the record of this file that matched it
    new_papers: list[tuple[dict[str, Any], list[str]]] = []
    retopic: dict[int, list[str]] = {}
    now = utcnow()
    for number, record in unique:
        paper = _match(record, number, known)
        if paper is not None:
            owner = claimed.setdefault(paper.id, number)  # type: ignore[arg-type]
            if owner != number:
                raise RecordError(
                    f"is the same stored paper #{paper.id} as record {owner} of this file "
                    "(matched by a different arXiv id, DOI or title)",
                    record=number,
                )
        if paper is None:
            topics, fell_back, confidence = tagger.tag_with_confidence(record)
            new_papers.append((_new_paper(record, now) | {"topic_confidence": confidence}, topics))
            counts.added += 1
            if fell_back:
                counts.untagged.append(record.title)
            continue
        changes = _changes(paper, record)
        if "normalized_title" in changes:
            owner_paper = known.get(("title", changes["normalized_title"]))
            if owner_paper is not None and owner_paper.id != paper.id:
                raise RecordError(
                    f"renaming stored paper #{paper.id} would clash with paper #{owner_paper.id}",
                    record=number,
                    field="title",
                )
        stored = sorted(current_topics.get(paper.id, []))  # type: ignore[arg-type]
        topics = stored
        confidence = paper.topic_confidence
        if record.topics:
            topics, confidence = tagger.sort(record.topics), None
        elif not stored or stored == [GENERAL_TOPIC]:
            merged = replace(
                record,
                title=changes.get("title", paper.title),
                summary=changes.get("summary", paper.summary),
                abstract=changes.get("abstract", paper.abstract),
            )
            topics, fell_back, confidence = tagger.tag_with_confidence(merged)
            if fell_back:
                counts.untagged.append(paper.title)
        if confidence != paper.topic_confidence:
            changes["topic_confidence"] = confidence
        if sorted(topics) != stored:
            retopic[paper.id] = topics  # type: ignore[index]
        if changes:
            for name, value in changes.items():
                setattr(paper, name, value)
            paper.updated_at = now
        if changes or paper.id in retopic:
            counts.updated += 1
        else:
            counts.skipped += 1
    session.flush()  # updates of stored papers
    new_ids: list[int] = []
    if new_papers:  # one multi-row INSERT ... RETURNING per batch, no ORM object per paper
        result = session.execute(
            insert(Paper).returning(Paper.id, sort_by_parameter_order=True),
            [values for values, _ in new_papers],
        )
        new_ids = list(result.scalars())
    if retopic:
        ids = list(retopic)
        for chunk in _chunks(ids):
            session.execute(delete(PaperTopic).where(PaperTopic.paper_id.in_(chunk)))
    rows = [
        {"paper_id": pid, "topic_slug": slug}
        for pid, (_, topics) in zip(new_ids, new_papers, strict=True)
        for slug in topics
    ]
    rows += [{"paper_id": pid, "topic_slug": s} for pid, topics in retopic.items() for s in topics]
    if rows:  # executemany: measured fastest on both SQLite and psycopg (pipelined)
        session.execute(insert(PaperTopic), rows)
    session.flush()
    return counts


SessionFactory = Callable[[], Session]


def _session_factory(target: Engine | SessionFactory) -> SessionFactory:
    if isinstance(target, Engine):
        return lambda: Session(target, expire_on_commit=False)
    return target


def import_raw_records(
    session: Session, source: str, fmt: str, raw: Sequence[Any], tagger: Tagger
) -> FileImportReport:
    """Validate and import records read from `source`; raises `RecordError` naming it."""
    report = FileImportReport(file=Path(source), format=fmt)
    report.notes = list(getattr(raw, "notes", []))  # a feed's FeedRecords names what it left out
    try:
        records = validate_records(
            raw, tagger.slugs, from_feed=fmt in FEED_FORMATS, skipped=report.notes
        )
        counts = import_records(session, records, tagger)
    except RecordError as exc:
        raise exc.located(file=source) from None
    report.added, report.updated, report.skipped = counts.added, counts.updated, counts.skipped
    report.untagged = counts.untagged
    return report


def import_in_transaction(
    target: Engine | SessionFactory,
    source: str,
    load: Callable[[Session, Tagger], FileImportReport],
    tagger: Tagger | None = None,
) -> FileImportReport:
    """Run one source's import in its own transaction; any failure keeps nothing of it.

    When a concurrent import stores one of the same papers first (a unique key clash at
    commit), the import runs once more: it then finds those papers and updates or skips them.
    """
    make_session = _session_factory(target)
    for attempt in range(1, CONCURRENT_RETRIES + 2):
        with make_session() as session:
            try:
                report = load(session, tagger or Tagger.from_session(session))
                session.commit()
                return report
            except RecordError as exc:
                session.rollback()
                return FileImportReport(file=Path(source), error=exc.located(file=source))
            except IntegrityError:
                session.rollback()
                if attempt <= CONCURRENT_RETRIES:
                    continue
    message = "other imports kept storing the same papers at the same time; run it again"
    return FileImportReport(file=Path(source), error=RecordError(message, file=source))


def import_paths(
    target: Engine | SessionFactory, paths: Sequence[Path], fmt: str = "auto"
) -> list[FileImportReport]:
    """Import each file in its own transaction: a bad file keeps nothing, others still import."""
    make_session = _session_factory(target)
    with make_session() as session:
        tagger = Tagger.from_session(session)

    def load_file(path: Path) -> Callable[[Session, Tagger], FileImportReport]:
        def load(session: Session, tagger: Tagger) -> FileImportReport:
            used, raw = read_raw_records(path, fmt)
            return import_raw_records(session, str(path), used, raw, tagger)

        return load

    return [
        import_in_transaction(make_session, str(path), load_file(Path(path)), tagger)
        for path in paths
    ]


def list_papers(session: Session, month: str | None = None) -> list[tuple[Paper, list[str]]]:
    """Papers (newest first) with their topics in taxonomy order, optionally of one month."""

    query = select(Paper).order_by(Paper.published.desc(), Paper.normalized_title)
    if month is not None:
        query = query.where(Paper.month == month)
    papers = session.exec(query).all()
    order = {t.slug: t.position for t in session.exec(select(Topic)).all()}
    topics = _topics_of(session, [p.id for p in papers if p.id is not None])
    return [
        (p, sorted(topics.get(p.id, []), key=lambda s: order.get(s, len(order))))  # type: ignore[arg-type]
        for p in papers
    ]
