"""Reading paper files: each source turns bytes into raw records (plain dicts) for validation.

`read_raw_records` picks the reader from `--format`, or for `auto` from the file's extension
and, failing that, its first bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from newsletter.papers.sources import feeds, files, listing
from newsletter.papers.validation import RecordError

FORMATS = ("auto", "json", "yaml", "csv", "feed", "listing")
RawRecord = dict[str, Any]

_READERS: dict[str, Callable[[bytes], list[Any]]] = {
    "json": files.read_json,
    "yaml": files.read_yaml,
    "csv": files.read_csv,
    "feed": feeds.read_feed,
    "listing": listing.read_listing,
}
_EXTENSIONS = {
    ".json": "json",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".csv": "csv",
    ".xml": "feed",
    ".atom": "feed",
    ".rss": "feed",
    ".txt": "listing",
}


def detect_format(path: Path, data: bytes) -> str:
    """The format of a file, from its extension or else from how it starts."""
    by_extension = _EXTENSIONS.get(path.suffix.lower())
    if by_extension:
        return by_extension
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:2048]
    if head.startswith(b"<"):
        return "feed"
    if head[:1] in (b"[", b"{"):
        return "json"
    if listing.looks_like_listing(head.decode("utf-8", "replace")):
        return "listing"
    first_line = head.split(b"\n", 1)[0].lower()
    if b"," in first_line and b"title" in first_line:
        return "csv"
    if head.startswith((b"- ", b"papers:", b"---")):
        return "yaml"
    raise RecordError(
        "cannot tell the format from the name or content; pass --format json|yaml|csv|feed|listing"
    )


def read_raw_records(path: Path, fmt: str = "auto") -> tuple[str, list[Any]]:
    """(format used, raw records) of one file; raises `RecordError` naming the file."""
    if fmt not in FORMATS:
        raise RecordError(
            f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}", file=str(path)
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RecordError(f"cannot read the file ({exc.strerror})", file=str(path)) from None
    try:
        used = detect_format(path, data) if fmt == "auto" else fmt
        records = _READERS[used](data)
    except RecordError as exc:
        raise exc.located(file=str(path)) from None
    if not records:
        raise RecordError(f"holds no papers (read as {used})", file=str(path))
    return used, records
