"""CSV import and export of subscribers: columns `email` (required), `topics` (`;`-separated
slugs) and `name`.

Import is all-or-nothing for bad rows: every row is checked (syntax, then against the
database) before anything is written, and the first problems are reported by row number
(the header is row 1) and column name. Rows are then written in bulk statements, a couple
of thousand per short transaction, so a 100k-row import neither holds the write lock
for minutes nor slows down row by row. Writing is idempotent: should the process die half
way, running the same import again finishes it.
"""

from __future__ import annotations

import csv
import io
import secrets
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, TextIO

from sqlalchemy import Row, bindparam, case, delete, func, update
from sqlmodel import Session, select

from subscribers import bulk, lifecycle
from subscribers.models import (
    ConsentRecord,
    Subscriber,
    SubscriberStatus,
    SubscriberTopic,
    new_public_id,
    utcnow,
)

IMPORT_COLUMNS = ("email", "topics", "name")
EXPORT_COLUMNS = ("email", "topics", "name", "status", "created_at", "confirmed_at")
MAX_ERRORS_SHOWN = 5


class CsvImportError(ValueError):
    """The file cannot be imported; the message names rows and columns."""


@dataclass(frozen=True)
class ImportRow:
    row: int
    email: str
    topics: tuple[str, ...]
    name: str


def parse_import(text: str, known_topics: Collection[str]) -> list[ImportRow]:
    """Check every row; raise CsvImportError listing the first problems, or return the rows."""
    if text.startswith("\ufeff"):
        text = text[1:]
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    if "email" not in header:
        raise CsvImportError("row 1: the header needs an 'email' column")
    unknown = [h for h in header if h and h not in EXPORT_COLUMNS]
    if unknown:
        raise CsvImportError(
            f"row 1, column {unknown[0]!r}: unknown column (use {', '.join(IMPORT_COLUMNS)})"
        )
    reader.fieldnames = header
    errors: list[str] = []
    rows: list[ImportRow] = []
    seen: dict[str, int] = {}
    try:
        records = list(reader)
    except csv.Error as exc:
        raise CsvImportError(f"row {reader.line_num}: malformed CSV ({exc})") from None
    for number, record in enumerate(records, start=2):
        if None in record:
            errors.append(f"row {number}: more values than columns")
            continue
        raw_email = _unquote((record.get("email") or "").strip())
        if not raw_email and not any((v or "").strip() for v in record.values()):
            continue  # a blank line
        try:
            email = lifecycle.normalize_email(raw_email)
        except lifecycle.InvalidEmail as exc:
            errors.append(f"row {number}, column 'email': {exc}")
            continue
        if email in seen:
            errors.append(f"row {number}, column 'email': {email} repeats row {seen[email]}")
            continue
        seen[email] = number
        try:
            topics = lifecycle.clean_topics(
                lifecycle.split_topics([record.get("topics") or ""], ";"), known_topics
            )
        except lifecycle.UnknownTopics as exc:
            errors.append(f"row {number}, column 'topics': {exc}")
            continue
        name = _unquote((record.get("name") or "").strip())
        if len(name) > 200 or any(ch in name for ch in lifecycle.LINE_BREAKS):
            errors.append(f"row {number}, column 'name': too long or contains a line break")
            continue
        rows.append(ImportRow(number, email, tuple(topics), name))
    if errors:
        more = len(errors) - MAX_ERRORS_SHOWN
        shown = "; ".join(errors[:MAX_ERRORS_SHOWN]) + (f"; and {more} more" if more > 0 else "")
        raise CsvImportError(f"nothing imported: {shown}")
    return rows


CHUNK_ROWS = 2000  # rows per write transaction (~0.1 s): short, so other writers get turns


def check_against_database(
    session: Session, rows: list[ImportRow], *, confirmed: bool, suppression_key: bytes
) -> set[str]:
    """The second validation pass, before anything is written.

    A vouched (`confirmed`) import refuses suppressed addresses, also those of people who
    were erased after a bounce or complaint (raises CsvImportError naming the rows). A
    double opt-in import mails nobody suppressed: returns those addresses, to be skipped.
    """
    errors: list[str] = []
    skipped: set[str] = set()
    for start in range(0, len(rows), 1000):
        chunk = rows[start : start + 1000]
        emails = [r.email for r in chunk]
        known = dict(
            session.exec(
                select(Subscriber.email, Subscriber.status).where(
                    bulk.one_of(session, Subscriber.email, emails)
                )
            ).all()
        )
        blocked = {e for e, status in known.items() if status == SubscriberStatus.SUPPRESSED}
        blocked |= lifecycle.erased_suppressed(
            session, suppression_key, [e for e in emails if e not in known]
        )
        for row in chunk:
            if row.email in blocked:
                skipped.add(row.email)
                message = "suppressed (it bounced or complained before)"
                errors.append(f"row {row.row}, column 'email': {row.email} is {message}")
    if confirmed and errors:
        more = len(errors) - MAX_ERRORS_SHOWN
        shown = "; ".join(errors[:MAX_ERRORS_SHOWN]) + (f"; and {more} more" if more > 0 else "")
        raise CsvImportError(f"nothing imported: {shown}")
    return skipped


@dataclass(frozen=True)
class ConfirmationOwed:
    subscriber: Subscriber  # detached, with the fields a confirmation link needs
    topics: list[str]


def write_chunk(
    session: Session,
    rows: list[ImportRow],
    *,
    confirmed: bool,
    consent_text_version: str,
    source: str = "import",
    skip: Collection[str] = (),
) -> list[ConfirmationOwed]:
    """Write checked rows in a few bulk statements, in the caller's transaction.

    The same outcome as `lifecycle.add_confirmed` (vouched) or `lifecycle.subscribe`
    (double opt-in) row by row; returns the confirmation emails now owed.
    """
    table = Subscriber.__table__  # type: ignore[attr-defined]
    now = utcnow()
    today = now.date().isoformat()
    rows = [r for r in rows if r.email not in skip]
    if not rows:
        return []
    existing = {
        r.email: r
        for r in session.execute(
            select(
                table.c.id,
                table.c.email,
                table.c.status,
                table.c.public_id,
                table.c.token_version,
                table.c.confirmations_sent_on,
                table.c.confirmations_sent_count,
            ).where(bulk.one_of(session, table.c.email, [r.email for r in rows]))
        ).all()
    }
    fresh = [r for r in rows if r.email not in existing]
    ids: dict[str, int] = {}
    if fresh:
        bulk.insert_rows(
            session,
            table,
            [
                {
                    "email": r.email,
                    "public_id": new_public_id(),
                    "name": r.name[:200],
                    "status": SubscriberStatus.ACTIVE if confirmed else SubscriberStatus.PENDING,
                    "created_at": now,
                    "confirmed_at": now if confirmed else None,
                    "suppressed_reason": "",
                    "token_version": secrets.randbelow(2**30) + 1,
                    # claimed only as the mail goes out (claim_confirmations)
                    "confirmations_sent_on": "",
                    "confirmations_sent_count": 0,
                }
                for r in fresh
            ],
        )
        inserted = session.execute(
            select(table.c.id, table.c.email).where(
                bulk.one_of(session, table.c.email, [r.email for r in fresh])
            )
        ).all()
        ids.update({email: sid for sid, email in inserted})
    owed_ids: list[int] = []
    updates: list[dict[str, object]] = []
    keep_topics: set[int] = set()  # active/paused people asked again keep their topics
    unchanged: set[int] = set()  # consent already on record: no second record
    for r in rows:
        old = existing.get(r.email)
        if old is None:
            if not confirmed:
                owed_ids.append(ids[r.email])
            continue
        ids[r.email] = old.id
        if old.status == SubscriberStatus.SUPPRESSED:
            continue
        if confirmed:
            if old.status == SubscriberStatus.ACTIVE:
                unchanged.add(old.id)  # e.g. a re-run of an interrupted import
            updates.append({"b_id": old.id, "b_name": r.name[:200]})
            continue
        if old.status in (SubscriberStatus.ACTIVE, SubscriberStatus.PAUSED):
            keep_topics.add(old.id)
        # An import mails a person at most once a day: a re-run after a kill mails only
        # those whose confirmation had not gone out yet.
        if old.confirmations_sent_on == today and old.confirmations_sent_count > 0:
            unchanged.add(old.id)
            continue
        updates.append(
            {
                "b_id": old.id,
                "b_status": old.status if old.id in keep_topics else SubscriberStatus.PENDING,
            }
        )
        owed_ids.append(old.id)
    not_suppressed = table.c.status != SubscriberStatus.SUPPRESSED
    if updates and confirmed:
        session.execute(
            update(table)
            .where(table.c.id == bindparam("b_id"), not_suppressed)
            .values(
                status=SubscriberStatus.ACTIVE,
                unsubscribed_at=None,
                confirmed_at=func.coalesce(table.c.confirmed_at, now),
                name=case((bindparam("b_name") != "", bindparam("b_name")), else_=table.c.name),
            ),
            updates,
        )
    elif updates:
        session.execute(
            update(table)
            .where(table.c.id == bindparam("b_id"), not_suppressed)
            .values(status=bindparam("b_status")),
            updates,
        )
    written = [r for r in rows if r.email in ids and _writable(existing.get(r.email))]
    topic_table = SubscriberTopic.__table__  # type: ignore[attr-defined]
    replace = [ids[r.email] for r in written if ids[r.email] not in keep_topics]
    if replace:
        session.execute(
            delete(topic_table).where(bulk.one_of(session, topic_table.c.subscriber_id, replace))
        )
    topic_rows = [
        {"subscriber_id": ids[r.email], "topic_slug": slug}
        for r in written
        if ids[r.email] not in keep_topics
        for slug in r.topics
    ]
    bulk.insert_rows(session, topic_table, topic_rows)
    consent_table = ConsentRecord.__table__  # type: ignore[attr-defined]
    bulk.insert_rows(
        session,
        consent_table,
        [
            {
                "subscriber_id": ids[r.email],
                "action": "vouched" if confirmed else "subscribe",
                "at": now,
                "client_address": "",
                "consent_text_version": consent_text_version[:32],
                "source": source[:64],
            }
            for r in written
            if ids[r.email] not in unchanged
        ],
    )
    return _owed(session, owed_ids, {ids[r.email]: list(r.topics) for r in written}, keep_topics)


def claim_confirmations(session: Session, subscriber_ids: list[int], today: str) -> None:
    """Count one confirmation email for `today` for each of these people, just before their
    mails go out: a kill between the claim and the sending loses those mails (the person
    can ask again), it never sends one twice."""
    table = Subscriber.__table__  # type: ignore[attr-defined]
    session.execute(
        update(table)
        .where(bulk.one_of(session, table.c.id, subscriber_ids))
        .values(
            confirmations_sent_count=case(
                (table.c.confirmations_sent_on == today, table.c.confirmations_sent_count + 1),
                else_=1,
            ),
            confirmations_sent_on=today,
        )
        .execution_options(synchronize_session=False)
    )


def _writable(old: Row[Any] | None) -> bool:
    return old is None or old.status != SubscriberStatus.SUPPRESSED


def _owed(
    session: Session, owed_ids: list[int], topics: dict[int, list[str]], kept: set[int]
) -> list[ConfirmationOwed]:
    if not owed_ids:
        return []
    table = Subscriber.__table__  # type: ignore[attr-defined]
    kept_topics: dict[int, list[str]] = {}
    if kept:
        for sid, slug in session.execute(
            select(SubscriberTopic.subscriber_id, SubscriberTopic.topic_slug).where(
                bulk.one_of(session, SubscriberTopic.subscriber_id, kept)
            )
        ).all():
            kept_topics.setdefault(sid, []).append(slug)
    people = session.execute(
        select(
            table.c.id, table.c.email, table.c.status, table.c.public_id, table.c.token_version
        ).where(bulk.one_of(session, table.c.id, owed_ids))
    ).all()
    return [
        ConfirmationOwed(
            Subscriber(
                id=p.id,
                email=p.email,
                status=p.status,
                public_id=p.public_id,
                token_version=p.token_version,
            ),
            sorted(kept_topics.get(p.id, [])) if p.id in kept else sorted(topics.get(p.id, [])),
        )
        for p in people
    ]


def write_export(session: Session, out: TextIO) -> int:
    """Write every subscriber as CSV; returns the number of rows."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    count = 0
    for sub, topics in lifecycle.list_subscribers(session):
        writer.writerow(_export_row(sub, topics))
        count += 1
    return count


FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: str) -> str:
    """A cell a spreadsheet shows as text, never runs as a formula (OWASP CSV injection):
    one that would start like a formula gets a leading `'`, which import strips again."""
    return "'" + value if value.startswith(FORMULA_PREFIXES) else value


def _unquote(value: str) -> str:
    return value[1:] if value.startswith("'") and value[1:].startswith(FORMULA_PREFIXES) else value


def _export_row(sub: Subscriber, topics: list[str]) -> list[str]:
    return [
        spreadsheet_safe(sub.email),
        ";".join(topics),
        spreadsheet_safe(sub.name),
        sub.status,
        sub.created_at.isoformat() if sub.created_at else "",
        sub.confirmed_at.isoformat() if sub.confirmed_at else "",
    ]
