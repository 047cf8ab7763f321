"""Set-based statements for bulk work (imports), fast on both databases.

psycopg re-parses a long statement every time and runs `executemany` as one statement per
row, so on PostgreSQL lists travel as arrays: `= ANY(:array)` instead of `IN (…)`, and
`INSERT … SELECT * FROM unnest(:col1, :col2, …)` instead of one INSERT per row. SQLite keeps
the plain forms, which it runs quickly in-process.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sqlalchemy import DateTime, Integer, String, Table, any_, bindparam, insert, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Session


def _postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def one_of(session: Session, column: Any, values: Collection[Any]) -> Any:
    """`column IN values`, as one short statement whatever the number of values."""
    if _postgres(session):
        item = Integer() if isinstance(column.type, Integer) else String()
        return column == any_(bindparam(None, list(values), type_=ARRAY(item)))
    return column.in_(list(values))


def _pg_array_type(column: Any) -> str:
    if isinstance(column.type, Integer):
        return "integer[]"
    if isinstance(column.type, DateTime):
        return "timestamptz[]" if column.type.timezone else "timestamp[]"
    return "text[]"


def insert_rows(session: Session, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert many rows (all with the same keys) in one statement."""
    if not rows:
        return
    if not _postgres(session):
        session.execute(insert(table), list(rows))
        return
    names = list(rows[0])  # column defaults do not apply here: give every column a value
    arrays = ", ".join(f"CAST(:{n} AS {_pg_array_type(table.c[n])})" for n in names)
    statement = text(
        f"INSERT INTO {table.name} ({', '.join(names)}) SELECT * FROM unnest({arrays})"
    )
    session.execute(statement, {n: [row[n] for row in rows] for n in names})
