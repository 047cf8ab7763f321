"""JSON, YAML and CSV paper files: a list of objects (or `{"papers": [...]}`), or CSV rows."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import yaml

from newsletter.papers import bounded_yaml
from newsletter.papers.validation import RecordError

CSV_REQUIRED = ("title", "summary", "published")
NESTING_HINT = "a list of papers (a paper is one level of fields)"


def decode_utf8(data: bytes) -> str:
    """Strict UTF-8 (a BOM is allowed): a wrong encoding is named, never silently mangled."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise RecordError(
            f"is not valid UTF-8 (byte 0x{data[exc.start]:02x} on line {line}); "
            "save the file as UTF-8"
        ) from None


def _paper_list(doc: Any, kind: str) -> list[Any]:
    if isinstance(doc, dict) and "papers" in doc:
        doc = doc["papers"]
    if doc is None:
        return []
    if not isinstance(doc, list):
        raise RecordError(f"{kind} must hold a list of papers or {{papers: [...]}}")
    return doc


def read_json(data: bytes) -> list[Any]:
    text = decode_utf8(data)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordError(
            f"is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        ) from None
    except RecursionError:
        raise RecordError(f"is nested too deeply to be {NESTING_HINT}") from None
    return _paper_list(doc, "JSON")


def read_yaml(data: bytes) -> list[Any]:
    text = decode_utf8(data)
    try:
        doc = bounded_yaml.safe_load(text)
    except bounded_yaml.TooManyAliases as exc:
        raise RecordError(str(exc)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise RecordError(f"is not valid YAML ({problem}{where})") from None
    except RecursionError:
        raise RecordError(f"is nested too deeply to be {NESTING_HINT}") from None
    return _paper_list(doc, "YAML")


def read_csv(data: bytes) -> list[Any]:
    """Rows as dicts; lists (authors, topics, categories) stay strings and are split later."""
    text = decode_utf8(data)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    missing = [c for c in CSV_REQUIRED if c not in header]
    if missing:
        raise RecordError(
            f"CSV header lacks column(s) {', '.join(missing)} (has: {', '.join(header) or 'none'})",
            field=missing[0],
        )
    reader.fieldnames = header
    rows: list[Any] = []
    try:
        for number, row in enumerate(reader, start=1):
            if None in row:  # more cells than header columns
                raise RecordError(
                    f"has {len(header) + len(row[None])} cells but the header has {len(header)}",
                    record=number,
                )
            if any(v is None for v in row.values()):
                short = [k for k, v in row.items() if v is None]
                raise RecordError("row is missing cells", record=number, field=short[0])
            rows.append(row)
    except csv.Error as exc:
        raise RecordError(f"is not valid CSV ({exc})", record=len(rows) + 1) from None
    return rows
