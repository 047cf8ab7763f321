"""Month arithmetic on `YYYY-MM` strings (and stored times as UTC): what papers, issues,
sources, releases and the clock share.

A neutral module at the bottom of the import graph, so papers can count months back without
importing the composing of issues (and issues can tag papers without a cycle).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from newsletter.errors import NewsletterError

MONTH_RE = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
# Papers published this many months before an issue's month still count as late arrivals.
LATE_WINDOW_MONTHS = 3
_MONTH_NAMES = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def parse_month(month: str) -> str:
    """Check `YYYY-MM`; returns it unchanged or raises `NewsletterError` saying what is wrong."""
    if not isinstance(month, str) or not MONTH_RE.match(month.strip()):
        raise NewsletterError(f"month must look like 2026-04 (YYYY-MM), got {month!r}")
    return month.strip()


def month_label(month: str) -> str:
    """`2026-04` -> `April 2026` (locale-independent)."""
    m = MONTH_RE.match(parse_month(month))
    assert m is not None
    return f"{_MONTH_NAMES[int(m.group(2)) - 1]} {m.group(1)}"


def shift_month(month: str, delta: int) -> str:
    year, number = (int(part) for part in parse_month(month).split("-"))
    index = year * 12 + (number - 1) + delta
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def previous_month(moment: datetime) -> str:
    """The calendar month before `moment` (UTC), as YYYY-MM: what a run on the 1st sends."""
    first = moment.astimezone(UTC).replace(day=1)
    return (first - timedelta(days=1)).strftime("%Y-%m")


def as_utc(moment: datetime) -> datetime:
    """A stored time as UTC: SQLite hands back naive datetimes, PostgreSQL aware ones."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
