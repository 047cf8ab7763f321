"""A local mail viewer over the outbox directory, so a person trying the service can follow
the confirm, preferences and unsubscribe links of the emails it "sent".

`create_app` mounts these routes only with the outbox transport, a loopback base URL and a
loopback bind (`newsletter serve --host 0.0.0.0` would publish every confirm and
unsubscribe link to the network); anywhere else they do not exist (404). Message ids are
file names, checked against a strict pattern and looked up inside the outbox directory only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesHeaderParser, BytesParser
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from newsletter.settings import Settings
from newsletter.web.pages import error_page, render_page
from newsletter.web.security import EMAIL_FRAME_HEADERS

router = APIRouter()
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
URL_RE = re.compile(r"https?://[^\s<>\"')\]]+")
MAX_LISTED = 200


def outbox_enabled(settings: Settings) -> bool:
    return settings.mail_backend == "outbox" and settings.base_url_is_loopback


@dataclass(frozen=True)
class OutboxEntry:
    id: str
    to: str
    subject: str
    date: str


def _directory(request: Request) -> Path:
    return Path(request.app.state.settings.outbox_dir)


def _parse(path: Path) -> EmailMessage:
    with path.open("rb") as fh:
        return BytesParser(policy=policy.default).parse(fh)  # type: ignore[return-value]


def _headers(path: Path) -> EmailMessage:
    """Only the header block: searching thousands of mails must not parse their bodies."""
    with path.open("rb") as fh:
        return BytesHeaderParser(policy=policy.default).parse(fh)  # type: ignore[return-value]


def list_outbox(
    directory: Path, limit: int = MAX_LISTED, *, query: str = "", offset: int = 0
) -> tuple[list[OutboxEntry], int]:
    """A page of mails, newest first, whose recipient or subject contains `query` (any
    case), and how many match. Newest: by modification time, then by name (one-off mails are
    named by UTC time, which orders those written within one tick of the file system's
    clock)."""
    if not directory.is_dir():
        return [], 0
    files = []
    for path in directory.glob("*.eml"):
        try:
            files.append((path.stat().st_mtime_ns, path.name, path))
        except FileNotFoundError:
            continue
    files.sort(reverse=True)
    needle = query.strip().casefold()
    entries = []
    matched = 0
    for _, _, path in files:
        if not needle and not offset <= matched < offset + limit:
            matched += 1  # no search: the page's mails only are read
            continue
        try:
            msg = _headers(path)
        except (OSError, ValueError):
            continue
        entry = OutboxEntry(
            id=path.stem,
            to=str(msg.get("To", "")),
            subject=str(msg.get("Subject", "")),
            date=str(msg.get("Date", "")),
        )
        if needle and needle not in f"{entry.to}\n{entry.subject}".casefold():
            continue
        if offset <= matched < offset + limit:
            entries.append(entry)
        matched += 1
    return entries, matched


def _message(request: Request, message_id: str) -> EmailMessage | None:
    if not ID_RE.match(message_id):
        return None
    path = _directory(request) / f"{message_id}.eml"
    try:
        return _parse(path)
    except (OSError, ValueError):
        return None


def _part(msg: EmailMessage, subtype: str) -> str:
    body = msg.get_body(preferencelist=(subtype,))
    return body.get_content() if body is not None else ""  # type: ignore[union-attr]


@router.get("/outbox", response_class=HTMLResponse)
def outbox(request: Request) -> HTMLResponse:
    """Every mail, a page of 200 at a time, searchable by recipient and subject."""
    query = request.query_params.get("q", "")[:200]
    raw_page = request.query_params.get("page", "1")
    page = int(raw_page) if raw_page.isdigit() and int(raw_page) > 0 else 1
    entries, total = list_outbox(_directory(request), query=query, offset=(page - 1) * MAX_LISTED)
    return render_page(
        request,
        "outbox_list.html",
        entries=entries,
        total=total,
        query=query,
        page=page,
        pages=max(1, -(-total // MAX_LISTED)),
    )


@router.get("/outbox/{message_id}", response_class=HTMLResponse)
def outbox_message(request: Request, message_id: str) -> HTMLResponse:
    msg = _message(request, message_id)
    if msg is None:
        return error_page(request, 404, "No such email", "That email is not in the outbox.")
    text = _part(msg, "plain")
    links = list(dict.fromkeys(URL_RE.findall(text)))
    return render_page(
        request,
        "outbox_message.html",
        message_id=message_id,
        subject=str(msg.get("Subject", "")),
        mail_headers=[(name, str(value)) for name, value in msg.items()],
        text=text,
        links=links,
    )


@router.get("/outbox/{message_id}/html")
def outbox_html(request: Request, message_id: str) -> Response:
    msg = _message(request, message_id)
    if msg is None:
        return error_page(request, 404, "No such email", "That email is not in the outbox.")
    return HTMLResponse(_part(msg, "html"), headers=EMAIL_FRAME_HEADERS)
