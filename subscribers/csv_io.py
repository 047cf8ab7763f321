"""CSV import and export of subscribers: columns `email` (required), `topics` (`;`-separated
slugs) and `name`.

Import is all-or-nothing: every row is checked before anything is written, and the first
problems are reported by row number (the header is row 1) and column name.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import TextIO

from sqlmodel import Session

from subscribers import lifecycle
from subscribers.models import Subscriber

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
        raw_email = (record.get("email") or "").strip()
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
            topics = lifecycle.clean_topics((record.get("topics") or "").split(";"), known_topics)
        except lifecycle.UnknownTopics as exc:
            errors.append(f"row {number}, column 'topics': {exc}")
            continue
        name = (record.get("name") or "").strip()
        if len(name) > 200 or any(ch in name for ch in "\r\n"):
            errors.append(f"row {number}, column 'name': too long or contains a line break")
            continue
        rows.append(ImportRow(number, email, tuple(topics), name))
    if errors:
        more = len(errors) - MAX_ERRORS_SHOWN
        shown = "; ".join(errors[:MAX_ERRORS_SHOWN]) + (f"; and {more} more" if more > 0 else "")
        raise CsvImportError(f"nothing imported: {shown}")
    return rows


def import_rows(
    session: Session,
    rows: Iterable[ImportRow],
    *,
    known_topics: Collection[str],
    confirmed: bool,
    consent_text_version: str,
    source: str = "import",
) -> list[lifecycle.SubscribeResult]:
    """Write checked rows in the caller's transaction.

    With `confirmed` the operator vouches for consent (active at once); otherwise each row
    goes through double opt-in and the results say whom to send a confirmation.
    """
    results = []
    for row in rows:
        try:
            if confirmed:
                sub = lifecycle.add_confirmed(
                    session,
                    row.email,
                    row.topics,
                    known_topics=known_topics,
                    consent_text_version=consent_text_version,
                    source=source,
                    name=row.name,
                )
                results.append(lifecycle.SubscribeResult(sub, False, "vouched"))
            else:
                results.append(
                    lifecycle.subscribe(
                        session,
                        row.email,
                        row.topics,
                        known_topics=known_topics,
                        consent_text_version=consent_text_version,
                        source=source,
                        name=row.name,
                    )
                )
        except lifecycle.SubscriberError as exc:
            message = f"nothing imported: row {row.row}, column 'email': {exc}"
            raise CsvImportError(message) from None
    return results


def write_export(session: Session, out: TextIO) -> int:
    """Write every subscriber as CSV; returns the number of rows."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    count = 0
    for sub, topics in lifecycle.list_subscribers(session):
        writer.writerow(_export_row(sub, topics))
        count += 1
    return count


def _export_row(sub: Subscriber, topics: list[str]) -> list[str]:
    return [
        sub.email,
        ";".join(topics),
        sub.name,
        sub.status,
        sub.created_at.isoformat() if sub.created_at else "",
        sub.confirmed_at.isoformat() if sub.confirmed_at else "",
    ]
